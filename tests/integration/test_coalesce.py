"""Coalesced status checks against the real stack: many job-checks per DescribeJobs call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

from poller import JobHandle, JobStatus, submit_job
from poller.testing.worker import Worker
from poller.testing.worker import Worker as SessionWorker

pytestmark = pytest.mark.integration


@pytest.fixture
def second_worker(
    poller_worker: SessionWorker, poller_env: dict[str, str], poller_redis_client: redis.Redis
) -> Iterator[Worker]:
    """Another worker process next to the session's, sharing its Redis and endpoint."""
    worker = Worker(poller_env)
    worker.start()
    yield worker
    worker.stop()


def test_checks_of_jobs_due_together_share_describe_calls(
    second_worker: Worker, poller_batch: LocalBatch
) -> None:
    # Given two workers and 40 jobs submitted together
    poller_batch.reset_stats()
    results = [
        submit_job.delay(
            f"together-{i}", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters={"seconds": "1"}
        )
        for i in range(40)
    ]
    # When they are tracked to the end
    for result in results:
        JobHandle(result.id).wait(timeout=120)
    records = [JobHandle(r.id).record for r in results]
    # Then every job succeeded, and checks were answered with far fewer DescribeJobs calls
    assert {r.status for r in records} == {JobStatus.SUCCEEDED}
    checks = sum(r.schedule.checks for r in records)
    describes = poller_batch.calls("DescribeJobs")
    print(
        f"\n[coalesce] jobs=40 checks={checks} describe_calls={describes} checks_per_call={checks / describes:.1f}"
    )
    assert checks / describes >= 4
