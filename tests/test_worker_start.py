"""``celery -A poller worker`` refuses to start, naming the fix, when it could track nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from poller.worker.worker_start import EX_CONFIG

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
