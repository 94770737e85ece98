"""A worker bootstep that runs one loop in threads of its own, started and stopped with the
worker: the reconcile pass, the heartbeat and the events consumer (work that must not stall the
consumer's loop)."""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import bootsteps


class ThreadStep(bootsteps.StartStopStep):
    """Runs :meth:`_loop` in :meth:`thread_count` daemon threads; ``_stopping`` is set when the
    worker stops."""

    thread_name = "poller-thread"
    stop_timeout = 10.0  # seconds the worker's stop waits for the loops to end

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def thread_count(self) -> int:
        """How many threads run the loop (0: the step does nothing)."""
        return 1

    def start(self, worker: Any) -> None:
        """Start the threads."""
        self._stopping.clear()
        count = self.thread_count()
        names = (
            [self.thread_name] if count == 1 else [f"{self.thread_name}-{n}" for n in range(count)]
        )
        self._threads = [
            threading.Thread(target=self._loop, name=name, daemon=True) for name in names
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, worker: Any) -> None:
        """Ask the loops to end and wait for them (at most ``stop_timeout`` in all)."""
        self._stopping.set()
        deadline = time.monotonic() + self.stop_timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = []

    def _loop(self) -> None:
        raise NotImplementedError
