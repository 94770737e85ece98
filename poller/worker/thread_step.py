"""A worker bootstep that runs one loop in a thread of its own, started and stopped with the
worker: the reconcile pass and the heartbeat (work that must not stall the consumer's loop)."""

from __future__ import annotations

import threading
from typing import Any

from celery import bootsteps


class ThreadStep(bootsteps.StartStopStep):
    """Runs :meth:`_loop` in a daemon thread; ``_stopping`` is set when the worker stops."""

    thread_name = "poller-thread"
    stop_timeout = 10.0  # seconds the worker's stop waits for the loop to end

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        """Start the thread."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, worker: Any) -> None:
        """Ask the loop to end and wait for it (at most ``stop_timeout``)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.stop_timeout)
            self._thread = None

    def _loop(self) -> None:
        raise NotImplementedError
