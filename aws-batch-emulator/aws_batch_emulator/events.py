"""AWS Batch "Batch Job State Change" events: shaped as AWS sends them, published with faults.

`EventPublisher` is the `ChangeListener` of the server's compute environments when it runs with
``--events``. Each job status change becomes the event AWS Batch puts on the default bus::

    {"version": "0", "id": "<uuid>", "detail-type": "Batch Job State Change",
     "source": "aws.batch", "account": "<account id>", "time": "2026-11-26T13:00:00Z",
     "region": "<region>", "resources": ["<job ARN>"], "detail": {<DescribeJobs item>}}

``detail`` is the job's DescribeJobs item at the moment of the change, put through the reshaping
DescribeJobs answers get (`aws_batch_emulator.wire`).

Jobs only queue their changes: one thread shapes them and delivers them in batches (up to
`DELIVERY_BATCH` changes queued meanwhile go together), so a job's state machine never waits for
EventBridge or SQS. The ``event_*`` faults of `FaultConfig` drop, duplicate or delay some events;
delayed ones wait on a timer thread. A delivery that fails is logged and counted.

This module does not import moto: the delivery function is given (the events endpoint's,
`aws_batch_emulator.events_server`).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_batch_emulator import resources
from aws_batch_emulator.changes import JobChange
from aws_batch_emulator.faults import FaultConfig
from aws_batch_emulator.service_model import batch_model
from aws_batch_emulator.wakeups import WakeUps
from aws_batch_emulator.wire import conform

if TYPE_CHECKING:
    from botocore.model import Shape

logger = logging.getLogger(__name__)

PUBLISHED = "published"
"""Counter: event copies handed to EventBridge (a duplicated event counts twice, a delayed one
once it goes out)."""
DUPLICATED = "duplicated"
"""Counter: events published twice by the ``event_duplicate`` fault."""
DROPPED = "dropped"
"""Counter: events never published, by the ``event_drop`` fault."""
DELAYED = "delayed"
"""Counter: events held back by the ``event_delay`` fault (counted when held back)."""
FAILED = "failed"
"""Counter: event copies whose delivery raised (logged; the job is not affected)."""
COUNTERS = (PUBLISHED, DUPLICATED, DROPPED, DELAYED, FAILED)
"""Every counter of ``GET /_poller/stats``'s ``"events"`` object."""
DELIVERY_BATCH = 100
"""Changes delivered together at most (one request to the events endpoint)."""

Event = dict[str, Any]
"""An event as EventBridge delivers it to a target (the JSON object)."""


@cache
def _describe_jobs_output() -> Shape:
    shape = batch_model().operation_model("DescribeJobs").output_shape
    assert shape is not None
    return shape


def job_state_change_event(change: JobChange, event_id: str | None = None) -> Event:
    """The event AWS Batch publishes for `change`, its detail reshaped as DescribeJobs answers."""
    # The very reshaping DescribeJobs applies to its answer, on a one-job answer.
    answer = conform({"jobs": [json.loads(change.description)]}, _describe_jobs_output())
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": resources.EVENT_DETAIL_TYPE,
        "source": resources.EVENT_SOURCE,
        "account": change.account_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(change.at)),
        "region": change.region,
        "resources": [change.job_arn],
        "detail": answer["jobs"][0],
    }


class EventPublisher:
    """Turns job changes into events and delivers them, applying the ``event_*`` faults.

    A `ChangeListener` (jobs call `job_changed`) and a `StatsSection` of the fault middleware
    (``"events"`` in ``/_poller/stats``, following ``POST /_poller/faults``).
    """

    def __init__(
        self, deliver: Callable[[list[Event]], list[str]], config: FaultConfig | None = None
    ) -> None:
        self._deliver = deliver
        self._lock = threading.Lock()
        self._config = FaultConfig()
        # A generator of its own, seeded like the middleware's: event traffic must not shift
        # which Batch calls error_rate fails.
        self._random = random.Random()
        self._counts: Counter[str] = Counter()
        self._changes: queue.SimpleQueue[JobChange | None] = queue.SimpleQueue()
        self._later = WakeUps("batch-events-delayed")
        self._thread: threading.Thread | None = None
        self.configure(config or FaultConfig())

    def start(self) -> EventPublisher:
        """Start the delivering thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="batch-events", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Deliver the changes queued so far, then stop; delayed events still waiting are lost."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._changes.put(None)
            thread.join(timeout)
        self._later.stop()

    def job_changed(self, change: JobChange) -> None:
        """Queue a change (called by jobs, under their backend's lock: it only enqueues)."""
        self._changes.put(change)

    def configure(self, config: FaultConfig) -> None:
        """Follow a new fault configuration; reseed when it brings a new seed."""
        with self._lock:
            if config.seed is not None and config.seed != self._config.seed:
                self._random.seed(config.seed)
            self._config = config

    def stats(self) -> dict[str, int]:
        """Counters: published, duplicated, dropped, delayed, failed (see `COUNTERS`)."""
        with self._lock:
            return {name: self._counts[name] for name in COUNTERS}

    def reset_stats(self) -> None:
        """Zero the counters."""
        with self._lock:
            self._counts.clear()

    def _run(self) -> None:
        stopping = False
        while not stopping and (change := self._changes.get()) is not None:
            changes = [change]
            while len(changes) < DELIVERY_BATCH:
                try:
                    more = self._changes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                changes.append(more)
            now: list[Event] = []
            for each in changes:
                try:
                    now += self._publish(each)
                except Exception:  # a bug here must not stop later events
                    logger.exception("could not publish the event of %s", each.job_arn)
            if now:
                self._send(now)

    def _publish(self, change: JobChange) -> list[Event]:
        """The event's copies to deliver now (none when dropped or delayed: a delayed one is
        delivered by the timer thread)."""
        event = job_state_change_event(change)
        copies, delay = self._fate()
        if delay is None:
            return [event] * copies  # a duplicate is the same event (same id), as EventBridge's
        if copies:
            self._later.at(time.time() + delay, lambda: self._send([event] * copies))
        return []

    def _fate(self) -> tuple[int, float | None]:
        """(copies to publish, delay in seconds or None), drawn for one event; counted."""
        with self._lock:
            config = self._config
            if self._hit(config.event_drop):
                self._counts[DROPPED] += 1
                return 0, None
            copies = 1
            if self._hit(config.event_duplicate):
                self._counts[DUPLICATED] += 1
                copies = 2
            delay = None
            if self._hit(config.event_delay):
                self._counts[DELAYED] += 1
                delay = self._random.uniform(0.0, config.event_delay_seconds)
            return copies, delay

    def _hit(self, share: float) -> bool:
        # No draw for a fault that is off, so switching one on leaves the others' draws alone.
        return share > 0 and self._random.random() < share

    def _send(self, events: list[Event]) -> None:
        """Deliver ``events``; each is counted published or failed (those are logged)."""
        try:
            failures = self._deliver(events)
        except Exception:
            logger.exception("could not deliver %d event(s)", len(events))
            failures = [event["id"] for event in events]
        for failure in failures:
            logger.error("could not deliver the event %s", failure)
        with self._lock:
            self._counts[PUBLISHED] += len(events) - len(failures)
            self._counts[FAILED] += len(failures)
