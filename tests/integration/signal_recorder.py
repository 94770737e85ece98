"""Imported by the test worker (--include): records every poller signal in Redis, in order.

One receiver raises for jobs named ``explode-*``, to show that a failing receiver neither
breaks tracking nor stops the other receivers.

The receivers are connected when a worker starts (``worker_init``), not on import: the test
modules that import this one for its names and tasks run in pytest's processes, where the fast
tier's signals must reach only the receivers its own tests connect (these would build the
process's runtime from the environment, for every signal of every test that imported them).
"""

from __future__ import annotations

import json
from typing import Any

from celery.signals import worker_init

from poller import runtime, signals
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


@worker_init.connect(weak=False)
def _connect_receivers(**_: Any) -> None:
    """In a worker (its main process, and so its forked pool and events processes): record."""
    for signal in signals.SIGNALS.values():
        signal.connect(_explode, weak=False)
        signal.connect(_record, weak=False)


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
