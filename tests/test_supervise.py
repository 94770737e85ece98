"""``poller worker``'s supervisor: restarts a crashed worker, stops with it, gives up on bad config."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poller.worker.supervise import EX_CONFIG, supervise


def test_a_stop_signal_during_the_pause_before_a_restart_ends_it(tmp_path: Path) -> None:
    # Given a worker that keeps crashing, so the supervisor pauses (30 s at most) between starts
    script = (
        "import sys; from poller.worker.supervise import supervise; "
        "sys.exit(supervise([sys.executable, '-c', 'import sys; sys.exit(1)']))"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        assert supervisor.stderr is not None
        assert "starting it again in 1s" in supervisor.stderr.readline()
        # When SIGTERM arrives during the pause, Then the supervisor ends at once
        started = time.monotonic()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=10) == 1
        assert time.monotonic() - started < 5
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        supervisor.stderr.close()  # type: ignore[union-attr]


def exits_with(codes: list[int], runs: Path) -> list[str]:
    """A command that exits with codes[n] on its n-th run (counting runs in a file)."""
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
        f"sys.exit({codes!r}[n])"
    )
    return [sys.executable, "-c", script, str(runs)]


def test_a_crashed_worker_is_started_again_with_growing_pauses(tmp_path: Path) -> None:
    # Given a worker that crashes twice, then exits cleanly
    runs = tmp_path / "runs"
    pauses: list[float] = []
    # When it runs under the supervisor
    code = supervise(exits_with([1, 137, 0], runs), sleep=pauses.append)
    # Then it was started three times, pausing 1 s then 2 s, and its clean exit ends the supervisor
    assert len(runs.read_text()) == 3
    assert pauses == [1.0, 2.0]
    assert code == 0


def test_a_configuration_error_is_not_restarted(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    pauses: list[float] = []
    code = supervise(exits_with([EX_CONFIG, 0], runs), sleep=pauses.append)
    assert (code, pauses, len(runs.read_text())) == (EX_CONFIG, [], 1)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stop_signal_stops_the_worker_warm_and_the_supervisor(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    # Given `poller worker`-like supervision of a long-running child that says when it got SIGTERM
    marker = tmp_path / "terminated"
    child = (
        "import signal, sys, time, pathlib; "
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(marker)!r}).write_text('y'), sys.exit(0))); "
        "print('ready', flush=True); time.sleep(60)"
    )
    script = (
        "import sys; from poller.worker.supervise import supervise; "
        f"sys.exit(supervise([sys.executable, '-c', {child!r}]))"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert supervisor.stdout is not None
        assert supervisor.stdout.readline().strip() == b"ready"
        # When the supervisor (only) is sent the signal
        started = time.monotonic()
        supervisor.send_signal(stop_signal)
        # Then the child got SIGTERM (a warm shutdown for Celery), and the supervisor exited
        assert supervisor.wait(timeout=20) == 0
        assert marker.read_text() == "y"
        assert time.monotonic() - started < 20
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        supervisor.stdout.close()  # type: ignore[union-attr]
