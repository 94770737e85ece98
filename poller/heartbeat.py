"""Each worker says it runs, every ``reconcile_interval``: the fleet's ``poller_workers`` gauge.

A worker counts while it said so within three intervals. It says so from a thread of its own,
apart from the reconcile pass: the leader's pass over many jobs (or against a slow Redis) can
outlast that window, and must not make a running worker look gone.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

from poller.runtime import get_runtime
from poller.settings import get_settings

logger = logging.getLogger(__name__)


class HeartbeatStep(bootsteps.StartStopStep):
    """Worker bootstep: note this worker in Redis at start, then every reconcile interval."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._hostname = str(getattr(worker, "hostname", "") or "worker")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        """Start the heartbeat thread."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="poller-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, worker: Any) -> None:
        """Stop the heartbeat thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        interval = get_settings().reconcile_interval
        while True:
            try:
                get_runtime().store.note_worker(self._hostname)
            except Exception as err:  # Redis down: the gauge (and poller_up) shows it already
                logger.debug("heartbeat not noted: %r", err)
            if self._stopping.wait(interval):
                return
