"""Call functions at given wall-clock times, from one thread: a timer heap.

A thread per timer would cost a thread per simulated job or delayed event; one `WakeUps` thread
serves any number of them. A callback may return a time to be called again at.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

WakeUp = Callable[[], float | None]
"""A callback: returns the epoch time at which to call it again, or None for never."""


class WakeUps:
    """Runs callbacks at their epoch times on one daemon thread, started on first use."""

    def __init__(self, name: str, *, clock: Callable[[], float] = time.time) -> None:
        self._name = name
        self._clock = clock
        self._cond = threading.Condition()
        # (when, sequence, callback): the sequence keeps equal times first come first served
        # and spares comparing callbacks.
        self._heap: list[tuple[float, int, WakeUp]] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def at(self, when: float, callback: WakeUp) -> None:
        """Call `callback` at epoch time `when` (at once if it is past)."""
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (when, next(self._sequence), callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        """Drop every pending call and end the thread."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _next_due(self) -> WakeUp | None:
        """Wait for the earliest callback to be due and pop it; None once stopped."""
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0][0] - self._clock()
                if delay <= 0:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(delay)
            return None

    def _run(self) -> None:
        while (callback := self._next_due()) is not None:
            try:
                again = callback()
            except Exception:  # one failing callback must not stop the others
                logger.exception("%s: a scheduled call failed", self._name)
                continue
            if again is not None:
                self.at(again, callback)
