"""Each worker says it runs, every ``reconcile_interval``: the fleet's ``poller_workers`` gauge.

A worker counts while it said so within three intervals. It says so from a thread of its own,
apart from the reconcile pass: the leader's pass over many jobs (or against a slow Redis) can
outlast that window, and must not make a running worker look gone.
"""

from __future__ import annotations

import logging
from typing import Any

from poller.runtime import get_runtime
from poller.settings import get_settings
from poller.worker.thread_step import ThreadStep

logger = logging.getLogger(__name__)


class HeartbeatStep(ThreadStep):
    """Worker bootstep: note this worker in Redis at start, then every reconcile interval."""

    thread_name = "poller-heartbeat"
    stop_timeout = 5.0

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._hostname = str(getattr(worker, "hostname", "") or "worker")

    def _loop(self) -> None:
        interval = get_settings().reconcile_interval
        while True:
            try:
                get_runtime().store.counters.note_worker(self._hostname)
            except Exception as err:  # Redis down: the gauge (and poller_up) shows it already
                logger.debug("heartbeat not noted: %r", err)
            if self._stopping.wait(interval):
                return
