"""poller in a Django project laid out as Celery's examples/django, with every setting in
settings.py: the project's worker, poller's worker and the ``poller`` command run from the project
directory with no POLLER_* variable; a receiver imports models at module level; a chain continues
into the project's task, which writes through the ORM; ``delay_on_commit`` follows the transaction.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

from poller.testing.processes import stop_process
from poller.testing.redis_server import EmbeddedRedis
from tests.conftest import eventually

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).parent / "djangoproj"
BIN = Path(sys.executable).parent


@pytest.fixture
def site(tmp_path: Path, poller_batch: LocalBatch) -> Iterator[tuple[Path, dict[str, str]]]:
    """The project copied to a temporary directory, its database migrated; its environment."""
    root = tmp_path / "site"
    shutil.copytree(PROJECT, root)
    with EmbeddedRedis() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POLLER_", "AWS_"))}
        env |= poller_batch.environ()
        env |= {
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
            "SITE_REDIS_URL": server.url,
            "SITE_DATABASE": str(root / "db.sqlite3"),
            "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
        }
        migrate = [sys.executable, "manage.py", "migrate", "--run-syncdb", "-v", "0"]
        subprocess.run(migrate, cwd=root, env=env, check=True, timeout=60)
        yield root, env


def start(
    argv: list[str], root: Path, env: dict[str, str], name: str
) -> tuple[subprocess.Popen[bytes], Path]:
    log = root / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    eventually(
        lambda: (process.poll() is None or pytest.fail(log.read_text())) and "ready." in log.read_text(),
        timeout=60, interval=0.3,
    )  # fmt: skip
    return process, log


def rows(root: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(root / "db.sqlite3") as db:
        query = "SELECT name, status, tracking_id, written_by FROM orders_order ORDER BY id"
        return [tuple(row) for row in db.execute(query)]


def test_a_django_project_configured_in_settings_py_runs_jobs_chains_and_on_commit(
    site: tuple[Path, dict[str, str]],
) -> None:
    root, env = site
    celery = str(BIN / "celery")
    processes = []
    try:
        # Given the project's worker and poller's, started in the project with its settings only
        processes.append(start([celery, "-A", "mysite", "worker", "-P", "threads", "-c", "2",
                                "--loglevel", "INFO", "-n", "site@%h"], root, env, "site"))  # fmt: skip
        processes.append(start([celery, "-A", "poller", "worker", "-P", "threads", "-c", "4",
                                "--loglevel", "INFO", "-n", "poller@%h"], root, env, "poller"))  # fmt: skip
        # When the scenario runs in the project: a chain, a commit and a rollback
        ran = subprocess.run(
            [sys.executable, "-m", "orders.scenario", JOB_QUEUE, SLEEP_JOB_DEFINITION],
            cwd=root, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr + processes[1][1].read_text()[-3000:]
        answer = json.loads(ran.stdout.splitlines()[-1])
        # Then importing poller left the project's app current
        assert answer["app_of_shared_task"] == "mysite"
        # And the chain's project step ran after the job, in the project's worker, via the ORM
        chained = answer["chained_job"]
        assert answer["chain_result"] == chained
        # And the receiver (models imported at module level) wrote a row per succeeded job,
        # the one submitted on commit included; the rolled-back one was never submitted
        expected = {
            ("chained", "SUCCEEDED", chained, "chain-step"),
            ("chained", "SUCCEEDED", chained, "receiver"),
        }
        written = eventually(lambda: (r := rows(root)) and len(r) >= 3 and r, timeout=60)
        assert expected <= set(written)
        assert {(n, w) for n, _, _, w in written} == {
            ("chained", "chain-step"), ("chained", "receiver"), ("on-commit", "receiver"),
        }  # fmt: skip
        # And the poller command reads the same settings.py, and finds the job
        status = subprocess.run(
            [str(BIN / "poller"), "status", chained, "--json"],
            cwd=root, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["status"] == "SUCCEEDED"
        listed = subprocess.run(
            [str(BIN / "poller"), "jobs", "--json", "--limit", "100"],
            cwd=root, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        names = {job["job_name"] for job in json.loads(listed.stdout)}
        assert names == {"chained", "on-commit"}
        for _, log in processes:
            assert "unregistered" not in log.read_text().lower()
    finally:
        for process, _ in processes:
            stop_process(process, timeout=20)
