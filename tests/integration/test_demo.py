"""`poller demo`, the README's first command, as a real subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
POLLER = str(Path(sys.executable).parent / "poller")


def clean_env() -> dict[str, str]:
    """The demo starts its own stack: it must not see the test session's variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("POLLER_", "AWS_"))}


def test_the_demo_runs_every_scenario_and_exits_0() -> None:
    result = subprocess.run(
        [POLLER, "demo", "--jobs", "2"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 of 5 jobs ended as expected" in result.stdout
    assert "Flower       http://127.0.0.1:" in result.stdout
    assert re.search(r"Metrics      http://127\.0\.0\.1:\d+/metrics", result.stdout)


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


@pytest.mark.parametrize(
    ("stop_signal", "keep", "ready_line", "exit_code"),
    [
        # --keep: the jobs have ended and a stop signal is the way out; the exit code is still
        # the jobs' verdict
        (signal.SIGINT, True, "Ctrl-C to stop", 0),
        # stopped while its jobs run: everything is stopped all the same, exit code 130
        (signal.SIGTERM, False, "Metrics      http", 130),
    ],
    ids=["ctrl-c-after-the-jobs", "sigterm-while-jobs-run"],
)
def test_ctrl_c_or_sigterm_stops_everything_the_demo_started(
    tmp_path: Path, stop_signal: signal.Signals, keep: bool, ready_line: str, exit_code: int
) -> None:
    log = tmp_path / "demo.log"
    # Started as a non-interactive shell starts a background job, with SIGINT ignored (so did
    # the CI loop that found this): the demo must honour Ctrl-C all the same.
    command = f"{POLLER} demo --jobs 1" + (" --keep" if keep else "")
    with log.open("w") as out:
        demo = subprocess.Popen(
            ["sh", "-c", f'trap "" INT; exec {command}'],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        deadline = time.monotonic() + 180
        while ready_line not in log.read_text():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        started = children_of(demo.pid)
        assert len(started) >= 4  # Redis, the Batch endpoint, the worker, Flower
        demo.send_signal(stop_signal)
        assert demo.wait(timeout=60) == exit_code, log.read_text()[-2000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
