"""A stack of its own for the fault suite: real Redis (append-only), the local Batch endpoint
(simulated runtime) and worker processes the tests start, kill and restart.

Settings are tight so that recovery is quick: a short broker visibility timeout brings back the
messages of a killed worker, and the reconciler runs every second with a 3 s grace.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

from poller import JobHandle, submit_job
from poller.models import JobRecord
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.stack import stack_env
from poller.testing.worker import Worker
from tests.conftest import configured_for, eventually
from tests.integration.signal_recorder import RECORD_KEY

FAULT_SETTINGS = {
    "POLLER_VISIBILITY_TIMEOUT": "8",
    "POLLER_RECONCILE_INTERVAL": "1",
    "POLLER_RECONCILE_GRACE": "3",
    "POLLER_AWS_RETRY_DELAY": "0.2",
    "POLLER_SUBMIT_LEASE": "15",  # above the 10 s crash window of the mid-submit test
}


@dataclass
class FaultStack:
    """The servers of one fault test, and the workers it started."""

    redis: EmbeddedRedis
    batch: LocalBatch
    env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, **env: str) -> Worker:
        worker = Worker(
            {**self.env, **env}, includes=["tests.integration.signal_recorder"], concurrency=8
        )
        self.workers.append(worker)
        worker.start()
        return worker

    @property
    def records_db(self) -> redis.Redis:
        return redis.Redis.from_url(self.env["POLLER_REDIS_URL"], decode_responses=True)

    def submit(
        self, count: int, prefix: str, seconds: tuple[float, float] = (1.0, 4.0), **kwargs: Any
    ) -> list[str]:
        """Submit ``count`` simulated jobs with random durations; return their tracking ids."""
        rng = random.Random(count)
        ids = []
        for i in range(count):
            duration = f"{rng.uniform(*seconds):.2f}"
            params = {"sim_seconds": duration, "seconds": duration}
            ids.append(
                submit_job.delay(
                    f"{prefix}-{i}", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=params, **kwargs
                ).id
            )
        return ids

    def records(self, ids: list[str]) -> list[JobRecord]:
        return [JobHandle(i).record for i in ids]

    def wait_all_terminal(self, ids: list[str], timeout: float = 120) -> list[JobRecord]:
        def done() -> list[JobRecord] | None:
            records = self.records(ids)
            return records if all(r.is_terminal for r in records) else None

        return eventually(done, timeout=timeout, interval=0.5)

    def finished_signals(self) -> Counter[str]:
        """job_finished signals received per job, a signal sent again (same event id, as after
        a worker died between sending and noting it) counted once, as its receivers would."""
        ids = {e["event_id"]: e for e in self._signals() if e["signal"] == "job_finished"}
        return Counter(e["tracking_id"] for e in ids.values())

    def wait_finished_signals(self, ids: list[str], timeout: float = 30) -> Counter[str]:
        """finished_signals() once every job of ``ids`` has one (the one a killed worker stored
        but did not send comes from the reconciler, after its grace)."""

        def all_received() -> Counter[str] | None:
            finished = self.finished_signals()
            return finished if all(finished[i] for i in ids) else None

        return eventually(all_received, timeout=timeout, interval=0.5)

    def status_changes_stored_twice(self) -> int:
        """job_status_changed signals of distinct transitions to a status a job already had
        (a transition applied twice by two deliveries; a signal merely sent again keeps its id)."""
        changes = {e["event_id"]: e for e in self._signals() if e["signal"] == "job_status_changed"}
        counts = Counter((e["tracking_id"], e["status"]) for e in changes.values())
        return sum(count - 1 for count in counts.values())

    def signals_sent_again(self) -> int:
        """Signals received more than once with the same event id."""
        counts = Counter(e["event_id"] for e in self._signals())
        return sum(count - 1 for count in counts.values())

    def _signals(self) -> list[dict[str, str]]:
        return [json.loads(raw) for raw in self.records_db.lrange(f"poller:{RECORD_KEY}", 0, -1)]


@pytest.fixture(scope="module")
def fault_batch() -> Iterator[LocalBatch]:
    with LocalBatch(runtime="simulated", stage_seconds=0.1, sim_seconds=1.0) as batch:
        yield batch


@contextmanager
def fault_stack(batch: LocalBatch, **env: str) -> Iterator[FaultStack]:
    """A fresh Redis (append-only) with ``batch`` and the fault settings, plus ``env``; the
    workers a test starts are stopped when it ends."""
    batch.reset_stats()
    batch.set_faults(error_rate=0.0, outage=False, throttle={}, response_delay={}, deny=[])
    with EmbeddedRedis(appendonly=True) as server:
        full_env = {
            **stack_env(server, batch, initial_delay=0.5, max_delay=2.0), **FAULT_SETTINGS, **env
        }  # fmt: skip
        started = FaultStack(server, batch, full_env)
        with configured_for(full_env):
            try:
                yield started
            finally:
                for worker in started.workers:
                    worker.stop()


@pytest.fixture
def stack(fault_batch: LocalBatch) -> Iterator[FaultStack]:
    with fault_stack(fault_batch) as started:
        yield started
