"""The events publisher on its own (in process): batched deliveries, counters, stopping."""

from __future__ import annotations

import json
import threading
from typing import Any

from aws_batch_emulator.changes import JobChange
from aws_batch_emulator.events import COUNTERS, DELIVERY_BATCH, EventPublisher


def change(n: int) -> JobChange:
    job = {"jobId": f"job-{n}", "jobName": f"n{n}", "status": "RUNNING", "attempts": []}
    return JobChange("123456789012", "us-east-1", f"arn:job/{n}", "RUNNING", 0.0, json.dumps(job))


class Recorder:
    """A delivery function: records each batch; the events whose job id it is told to fail
    come back as failures."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.failing = failing
        self.release = threading.Event()

    def __call__(self, events: list[dict[str, Any]]) -> list[str]:
        self.release.wait(5)
        ids = [event["detail"]["jobId"] for event in events]
        self.batches.append(ids)
        return [
            f"{event['id']}: refused"
            for event in events
            if event["detail"]["jobId"] in self.failing
        ]


def test_changes_queued_meanwhile_go_together_in_order_and_all_before_it_stops() -> None:
    # Given a publisher whose first delivery is held, while 250 more changes queue up
    deliver = Recorder(failing=frozenset({"job-7", "job-200"}))
    publisher = EventPublisher(deliver).start()
    for n in range(251):
        publisher.job_changed(change(n))
    deliver.release.set()
    # When it is closed (the stop arrives behind the queued changes)
    publisher.close()
    # Then every change went out, in order, at most DELIVERY_BATCH at a time
    delivered = [job for batch in deliver.batches for job in batch]
    assert delivered == [f"job-{n}" for n in range(251)]
    assert all(len(batch) <= DELIVERY_BATCH for batch in deliver.batches)
    assert len(deliver.batches) < 251 / 10  # batched, not one request per change
    # And the events the endpoint refused count as failed, the others as published
    stats = publisher.stats()
    assert set(stats) == set(COUNTERS)
    assert (stats["published"], stats["failed"]) == (249, 2)


def test_a_delivery_that_raises_counts_its_events_failed_and_publishing_goes_on() -> None:
    # Given a delivery function that raises the first time
    calls: list[int] = []
    first_done = threading.Event()

    def deliver(events: list[dict[str, Any]]) -> list[str]:
        calls.append(len(events))
        if len(calls) == 1:
            first_done.set()
            raise ConnectionError("events endpoint down")
        return []

    publisher = EventPublisher(deliver).start()
    # When a change goes out and fails, then another comes
    publisher.job_changed(change(1))
    assert first_done.wait(5)
    publisher.job_changed(change(2))
    publisher.close()
    # Then the first counts failed, and the publisher went on with the second
    assert calls == [1, 1]
    assert (publisher.stats()["failed"], publisher.stats()["published"]) == (1, 1)
