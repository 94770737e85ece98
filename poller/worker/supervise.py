"""``poller worker``: a Celery worker that is started again when it dies.

Process managers that read a Procfile (honcho, foreman) do not restart a process that exits;
they stop the whole formation instead. A worker that dies would then leave the fleet's jobs
to the other workers' reconcilers, or to nobody. ``poller worker`` runs
``celery -A poller worker ...`` as its child and starts it again after a crash, with a
growing pause (1 s, 2 s, 4 s ... at most 30 s; back to 1 s once a worker ran for a minute).
SIGTERM and SIGINT stop the worker with a warm shutdown (SIGTERM) and end the supervisor with it,
also during the pause before a restart.

A worker that exits with :data:`EX_CONFIG` (its configuration cannot work: no AWS region, a bad
broker URL) is not restarted: starting it again would fail the same way.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from poller.core.backoff import compute_delay
from poller.worker.startup import EX_CONFIG

logger = logging.getLogger(__name__)

FIRST_PAUSE = 1.0
MAX_PAUSE = 30.0
STABLE_AFTER = 60.0  # a worker that ran this long crashed for a new reason: pause from 1 s again


def celery_worker_command(args: Sequence[str]) -> list[str]:
    """``celery -A poller worker`` with ``args``, run by this interpreter."""
    return [sys.executable, "-m", "celery", "-A", "poller", "worker", *args]


def supervise(command: Sequence[str], *, sleep: Callable[[float], object] | None = None) -> int:
    """Run ``command`` until it exits cleanly or a signal asks it to stop; return its exit code.

    ``sleep`` (the pause before a restart) is for tests; by default a stop signal cuts it short.
    """
    stop_requested = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def stop_child() -> None:
        # Always SIGTERM (a warm shutdown): Ctrl-C in a terminal already sent the child one
        # SIGINT, and a second one would make Celery's shutdown cold, cutting tasks short.
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def on_stop_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        stop_child()

    previous = {sig: signal.signal(sig, on_stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    pause_for = sleep or stop_requested.wait
    crashes = 0
    try:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(list(command))
            if stop_requested.is_set():  # the signal came while the child was being started
                stop_child()
            code = child.wait()
            if stop_requested.is_set() or code in (0, EX_CONFIG):
                return code
            crashes = 1 if time.monotonic() - started >= STABLE_AFTER else crashes + 1
            pause = compute_delay(
                crashes - 1, initial_delay=FIRST_PAUSE, max_delay=MAX_PAUSE, jitter=0
            )
            logger.error(
                "worker (pid %s) exited with code %s; starting it again in %.0fs",
                child.pid, code, pause,
            )  # fmt: skip
            pause_for(pause)
            if stop_requested.is_set():
                return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
