"""The Procfile's topology runs for real under honcho, and a job submitted by the CLI succeeds."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from poller.testing.processes import free_port
from tests.conftest import eventually

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parent.parent.parent
BIN = Path(sys.executable).parent


def worker_pid(env: dict[str, str]) -> int | None:
    """The pid of the one worker answering ``celery inspect stats`` on env's broker, or None."""
    answer = subprocess.run(
        [str(BIN / "celery"), "-A", "poller", "inspect", "stats", "--json", "--timeout", "1"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if answer.returncode != 0:
        return None
    pids = [int(stats["pid"]) for stats in json.loads(answer.stdout).values()]
    return pids[0] if len(pids) == 1 else None


def test_procfile_runs_a_job_end_to_end(tmp_path: Path) -> None:
    # Given the Procfile started with honcho on free ports
    redis_port, batch_port, flower_port = free_port(), free_port(), free_port()
    metrics_port = free_port()
    env_file = tmp_path / "procfile.env"
    values = (ROOT / "config" / "local.env").read_text()
    values = values.replace("6379", str(redis_port)).replace("4566", str(batch_port))
    values = values.replace("FLOWER_PORT=5555", f"FLOWER_PORT={flower_port}")
    values = values.replace("METRICS_PORT=9808", f"METRICS_PORT={metrics_port}")
    env_file.write_text(
        values
        + "FLOWER_BASIC_AUTH=admin:test-only\nPOLLER_POLL_INITIAL_DELAY=0.5\nPOLLER_POLL_MAX_DELAY=1\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POLLER_", "AWS_"))},
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    log = tmp_path / "honcho.log"
    with log.open("wb") as out:
        honcho = subprocess.Popen(
            [str(BIN / "honcho"), "-f", "Procfile", "-e", str(env_file), "start"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # When every service answers
        def healthy() -> bool:
            check = subprocess.run(
                [str(BIN / "poller"), "check"], env=env, capture_output=True, cwd=tmp_path
            )
            assert honcho.poll() is None, log.read_text()
            return check.returncode == 0

        eventually(healthy, timeout=60, interval=0.5)
        # And a job is submitted through the CLI and awaited
        submitted = subprocess.run(
            [str(BIN / "poller"), "submit", "procfile-job", "-q", "poller-local", "-d", "poller-sleep",
             "-p", "seconds=2", "--wait", "--timeout", "60", "--json"],
            env=env, capture_output=True, text=True, cwd=tmp_path, timeout=90,
        )  # fmt: skip
        # Then it succeeded
        assert submitted.returncode == 0, submitted.stderr + log.read_text()[-3000:]
        assert '"status": "SUCCEEDED"' in submitted.stdout
        # And Flower, behind basic auth, shows the job's task (submit, then its checks, under
        # the tracking id) from task events
        request = urllib.request.Request(f"http://127.0.0.1:{flower_port}/api/tasks")
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(b"admin:test-only").decode()
        )
        with urllib.request.urlopen(request, timeout=5) as page:
            tasks = json.loads(page.read())
        tracking_id = json.loads(submitted.stdout)["tracking_id"]
        job_id = json.loads(submitted.stdout)["job_id"]
        assert tasks[tracking_id]["name"] == f"poller: procfile-job {job_id}"
        assert tasks[tracking_id]["state"] == "SUCCESS"
        # And the metrics process counts the job, for the whole fleet
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as page:
            scraped = page.read().decode()
        assert (
            'poller_jobs_finished_total{job_queue="poller-local",region="us-east-1",'
            'status="SUCCEEDED"} 1.0' in scraped
        )
        # And each rescheduled check said the Batch status and the next check's time
        assert re.search(r"CheckScheduled\('Batch job \S+ is [A-Z]+; check \d+ in", log.read_text())
        # When the worker is killed -9 (its pid as Celery reports it)
        first_pid = worker_pid(env)
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        # Then `poller worker` starts a new one, honcho keeps the rest running, and jobs still run
        eventually(lambda: worker_pid(env) not in (None, first_pid), timeout=60, interval=0.5)
        assert honcho.poll() is None, log.read_text()
        again = subprocess.run(
            [str(BIN / "poller"), "submit", "after-crash", "-q", "poller-local", "-d", "poller-sleep",
             "-p", "seconds=1", "--wait", "--timeout", "60"],
            env=env, capture_output=True, text=True, cwd=tmp_path, timeout=90,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr + log.read_text()[-3000:]
        assert "starting it again" in log.read_text()
    finally:
        honcho.send_signal(signal.SIGTERM)
        try:
            honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            honcho.kill()
            raise
    # Then honcho stopped every process on its SIGTERM, none had to be killed, and said why it
    # ended (143: SIGTERM received)
    output = log.read_text()
    assert honcho.returncode == 143, output[-3000:]
    for name in ("redis", "batch", "worker", "flower", "metrics"):
        assert re.search(rf"\| {name}\.1 stopped \(rc=", output), output[-3000:]
    assert "SIGKILL" not in output, output[-3000:]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", redis_port), timeout=1)
