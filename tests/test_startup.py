"""``celery -A poller worker`` refuses to start, naming the fix, when it could track nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poller.worker.startup import EX_CONFIG, import_app_modules
from tests.fakes import settings

# No AWS settings from this machine, no instance metadata lookups, a broker never reached.
ISOLATED = {
    "PATH": os.environ["PATH"],
    "HOME": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
    "POLLER_BROKER_URL": "redis://127.0.0.1:1/0",
}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def start_worker(**env: str) -> tuple[int, str, float]:
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "poller", "worker", "-P", "threads"],
        env={**ISOLATED, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return process.returncode, process.stderr, time.monotonic() - started


@pytest.mark.parametrize(
    ("env", "says"),
    [
        # AWS_REGION is what people try first; boto3 does not read it
        ({"AWS_REGION": "us-east-1", **CREDENTIALS}, "no AWS region: set AWS_DEFAULT_REGION"),
        ({"AWS_DEFAULT_REGION": "us-east-1"}, "no AWS credentials: set AWS_PROFILE"),
        (
            {"AWS_DEFAULT_REGION": "us-east-1", **CREDENTIALS, "POLLER_IMPORTS": "shop.nowhere"},
            "POLLER_IMPORTS: cannot import 'shop.nowhere'",
        ),
    ],
    ids=["no-region", "no-credentials", "bad-import"],
)
def test_the_worker_refuses_to_start_naming_the_fix(env: dict[str, str], says: str) -> None:
    code, stderr, seconds = start_worker(**env)
    assert code == EX_CONFIG, stderr
    assert f"error: poller worker cannot start: {says}" in stderr
    assert seconds < 30


def test_app_modules_are_found_from_the_directory_the_worker_runs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The `celery` script's own directory (the venv's bin), not the project's, is on sys.path
    (tmp_path / "shop_receivers_here.py").write_text("LOADED = True\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    import_app_modules(settings(imports=["shop_receivers_here"]))
    assert sys.modules["shop_receivers_here"].LOADED
