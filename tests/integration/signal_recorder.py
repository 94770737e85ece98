"""Imported by the test worker (--include): records every poller signal in Redis, in order.

One receiver raises for jobs named ``explode-*``, to show that a failing receiver neither
breaks tracking nor stops the other receivers.
"""

from __future__ import annotations

import json
from typing import Any

from poller import signals
from poller.core import runtime
from poller.models import JobRecord

RECORD_KEY = "test:signals"


def _record(
    sender: str, record: JobRecord, event_id: str, status: str, previous: str | None = None,
    **_: Any,
) -> None:  # fmt: skip
    store = runtime.get_runtime().store
    entry = {
        "signal": sender, "tracking_id": record.tracking_id, "status": status, "event_id": event_id
    }  # fmt: skip
    if previous is not None:
        entry["previous"] = previous
    store.redis.rpush(store.key(RECORD_KEY), json.dumps(entry))


def _explode(sender: str, record: JobRecord, **_: Any) -> None:
    if record.job_name.startswith("explode-"):
        raise RuntimeError("a receiver that raises")


for _signal in signals.SIGNALS.values():
    _signal.connect(_explode, weak=False)
    _signal.connect(_record, weak=False)


# Tasks for canvas tests: they run in the session's worker (which consumes poller's queue only)
# after the Batch job they follow, so the tests send them there with ON_POLLER_QUEUE;
# tests/integration/shop is a project with an app and a worker of its own.
from poller.app import app  # noqa: E402
from poller.settings import get_settings  # noqa: E402

ON_POLLER_QUEUE = {"queue": get_settings().queue}


@app.task(name="tests.note_after", shared=False)
def note_after(record: dict[str, Any]) -> dict[str, Any]:
    """A chain's next step: note when it ran and what it received."""
    from poller.models import utcnow

    store = runtime.get_runtime().store
    note = {
        "tracking_id": record["tracking_id"],
        "status": record["status"],
        "ran_at": utcnow().isoformat(),
    }
    store.redis.rpush(store.key("test:after"), json.dumps(note))
    return note


@app.task(name="tests.count_succeeded", shared=False)
def count_succeeded(records: list[dict[str, Any]]) -> int:
    """A chord body: how many of the header's jobs succeeded."""
    return sum(1 for record in records if record["status"] == "SUCCEEDED")
