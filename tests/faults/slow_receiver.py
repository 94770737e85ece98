"""Imported by one test worker: its receivers hold the thread that sends a ``slow-*`` job's
status change, so that worker can be killed while its event consumer holds received messages."""

from __future__ import annotations

import time
from typing import Any

from poller import runtime, signals
from poller.models import JobRecord

ENTERED_KEY = "test:slow-entered"


def _hold(sender: str, record: JobRecord, **_: Any) -> None:
    if record.job_name.startswith("slow-"):
        store = runtime.get_runtime().store
        store.redis.set(store.key(ENTERED_KEY), record.tracking_id)
        time.sleep(300)  # until the test kills this worker


signals.job_status_changed.connect(_hold, weak=False)
