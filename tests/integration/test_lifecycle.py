"""The job lifecycle end to end: a real worker, the embedded Redis and the local Batch endpoint."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import redis
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from celery import Celery, chain, chord
from celery.result import AsyncResult

from poller import JobHandle, JobStatus, submit_job
from poller.app import app
from poller.errors import (
    DuplicateSubmission,
    InvalidJobSpec,
    JobFailed,
    JobTimedOut,
    SubmitRejected,
)
from poller.tasks import check_job
from poller.testing.worker import Worker
from tests.conftest import eventually
from tests.integration.signal_recorder import (
    ON_POLLER_QUEUE,
    RECORD_KEY,
    count_succeeded,
    note_after,
)

pytestmark = pytest.mark.integration

RESULT_TIMEOUT = 60


def sleep_job(name: str, seconds: float = 0.5, exit_code: int = 0, **kwargs: Any) -> Any:
    """Submit a job of the ready-made sleep definition."""
    parameters = {"seconds": str(seconds), "exit_code": str(exit_code)}
    return submit_job.delay(name, JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=parameters, **kwargs)


def signals_of(client: redis.Redis, tracking_id: str) -> list[dict[str, str]]:
    entries = [json.loads(raw) for raw in client.lrange(f"poller:{RECORD_KEY}", 0, -1)]
    return [entry for entry in entries if entry["tracking_id"] == tracking_id]


@pytest.fixture(autouse=True)
def _worker(poller_worker: Worker, poller_redis_client: redis.Redis) -> None:
    """Every test here runs against the session's worker, with a flushed records database."""


RESULT_FIELDS = (
    "tracking_id", "job_id", "job_name", "job_queue", "job_definition", "status",
    "status_reason", "exit_code", "attempts", "log_stream_name", "created_at", "started_at",
    "stopped_at", "submitted_at", "finished_at", "array_status_summary", "failure_kind",
    "submissions",
)  # fmt: skip


def test_a_job_that_succeeds_resolves_to_its_record(poller_redis_client: redis.Redis) -> None:
    # When a job is submitted
    result = sleep_job("ok-1", seconds=1)
    # Then the Celery result resolves to the record once the Batch job succeeded
    outcome = result.get(timeout=RESULT_TIMEOUT)
    assert outcome["status"] == "SUCCEEDED"
    assert outcome["tracking_id"] == result.id
    # And the result holds exactly the documented fields, none of poller's internal ones
    assert sorted(outcome) == sorted(RESULT_FIELDS)
    assert outcome["failure_kind"] is None  # a success has no failure kind
    assert [s["job_id"] for s in outcome["submissions"]] == [outcome["job_id"]]
    record = JobHandle(result.id).record
    assert record.job_id and record.batch.exit_code == 0 and record.batch.attempts == 1
    assert record.batch.log_stream_name and record.schedule.checks >= 1
    assert (
        record.batch.started_at
        and record.batch.stopped_at
        and record.batch.started_at <= record.batch.stopped_at
    )
    assert record.submitted_at and record.finished_at and record.submitted_at <= record.finished_at
    seen = [t.status for t in record.history]
    assert seen[0] is JobStatus.QUEUED and seen[-1] is JobStatus.SUCCEEDED
    assert [s.rank for s in seen] == sorted(s.rank for s in seen)
    assert JobStatus.RUNNING in seen
    # And the handle finds it by Batch job id too
    assert JobHandle.from_job_id(record.job_id).tracking_id == result.id


def test_signals_are_sent_once_each_and_in_order(poller_redis_client: redis.Redis) -> None:
    result = sleep_job("signals-1", seconds=1)
    result.get(timeout=RESULT_TIMEOUT)
    record = JobHandle(result.id).record
    sent = signals_of(poller_redis_client, result.id)
    names = [entry["signal"] for entry in sent]
    assert names[0] == "job_submitted"
    assert names[-2:] == ["job_succeeded", "job_finished"]
    changes = [entry for entry in sent if entry["signal"] == "job_status_changed"]
    # One job_status_changed per recorded transition (QUEUED was the record's first state)
    assert len(changes) == len(record.history) - 1
    assert names.count("job_finished") == names.count("job_succeeded") == 1


def test_a_failing_job_raises_job_failed_with_its_exit_code(
    poller_redis_client: redis.Redis,
) -> None:
    result = sleep_job("fails-1", seconds=0.2, exit_code=3)
    with pytest.raises(JobFailed) as caught:
        result.get(timeout=RESULT_TIMEOUT)
    record = JobHandle(result.id).record
    assert record.status is JobStatus.FAILED and record.batch.exit_code == 3
    message = str(caught.value)
    assert record.job_id in message and "exit code 3" in message
    assert "Essential container in task exited" in message
    assert [e["signal"] for e in signals_of(poller_redis_client, result.id)][-2:] == [
        "job_failed",
        "job_finished",
    ]


def test_an_unknown_queue_is_rejected_with_aws_message(poller_redis_client: redis.Redis) -> None:
    result = submit_job.delay("rejected-1", "no-such-queue", SLEEP_JOB_DEFINITION)
    with pytest.raises(SubmitRejected, match="no-such-queue"):
        result.get(timeout=RESULT_TIMEOUT)
    record = JobHandle(result.id).record
    assert record.status is JobStatus.REJECTED and record.job_id is None
    assert "ClientException" in (record.status_reason or "")
    assert [e["signal"] for e in signals_of(poller_redis_client, result.id)][-2:] == [
        "job_failed",
        "job_finished",
    ]


def test_giving_up_terminates_the_batch_job(poller_batch: LocalBatch) -> None:
    # Given a job longer than its poll policy allows, with terminate_on_give_up
    result = sleep_job(
        "gives-up-1", seconds=30, poll={"max_checks": 2, "terminate_on_give_up": True}
    )
    # Then poller gives up
    with pytest.raises(JobTimedOut, match="max_checks=2"):
        result.get(timeout=RESULT_TIMEOUT)
    record = JobHandle(result.id).record
    assert record.status is JobStatus.TIMED_OUT
    # And the Batch job is terminated with poller's reason
    batch = poller_batch.client()

    def batch_job_failed() -> dict[str, Any] | None:
        job = batch.describe_jobs(jobs=[record.job_id])["jobs"][0]
        return job if job["status"] == "FAILED" else None

    job = eventually(batch_job_failed)
    assert "poller" in job["statusReason"]


def test_cancel_stops_a_running_job(poller_redis_client: redis.Redis) -> None:
    result = sleep_job("cancel-1", seconds=30)
    handle = JobHandle(result.id)
    eventually(lambda: (r := handle.store.find(result.id)) and r.status is JobStatus.RUNNING)
    handle.cancel("no longer needed")
    with pytest.raises(JobFailed, match="no longer needed"):
        result.get(timeout=RESULT_TIMEOUT)
    assert handle.record.celery.cancel_reason == "no longer needed"


def revoke_through(door: str, tracking_id: str) -> None:
    """Revoke a task as each door does: poller's result (Flower, ``celery -A poller control``
    use poller's app too), with terminate, or a service that has only Celery."""
    if door == "plain-celery":
        with Celery("service", broker=os.environ["POLLER_BROKER_URL"]) as service:
            service.control.revoke(tracking_id)
    else:
        AsyncResult(tracking_id, app=app).revoke(terminate=door == "terminate")


@pytest.mark.parametrize("door", ["revoke", "terminate", "plain-celery"])
def test_revoking_a_tracking_id_cancels_its_batch_job(
    door: str, poller_redis_client: redis.Redis, poller_batch: LocalBatch
) -> None:
    # Given a running job
    result = sleep_job(f"revoked-{door}", seconds=60)
    handle = JobHandle(result.id)
    eventually(lambda: (r := handle.store.find(result.id)) and r.status is JobStatus.RUNNING)
    # When its tracking id is revoked
    revoke_through(door, result.id)
    # Then the record ends FAILED saying so, and the Celery result is REVOKED
    record = eventually(lambda: (r := handle.record).is_terminal and r)
    assert record.status is JobStatus.FAILED and record.celery.revoked
    assert "revoked" in str(record.status_reason)
    eventually(lambda: AsyncResult(result.id, app=app).state == "REVOKED")
    # And the Batch job was stopped, and job_failed fired once
    job = poller_batch.client().describe_jobs(jobs=[record.job_id])["jobs"][0]
    assert job["status"] == "FAILED" and "revoked" in job["statusReason"]
    assert [e["signal"] for e in signals_of(poller_redis_client, result.id)].count(
        "job_failed"
    ) == 1


def test_a_chain_runs_its_next_step_after_the_batch_job(poller_redis_client: redis.Redis) -> None:
    # When a chain starts with a Batch job
    result = chain(
        submit_job.s("chain-1", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters={"seconds": "1"}),
        note_after.s().set(**ON_POLLER_QUEUE),
    ).apply_async()
    note = result.get(timeout=RESULT_TIMEOUT)
    # Then the next step received the record, after the Batch job had finished
    assert note["status"] == "SUCCEEDED"
    record = JobHandle(note["tracking_id"]).record
    assert record.finished_at is not None
    assert note["ran_at"] >= record.finished_at.isoformat()


def test_a_late_duplicate_check_after_the_end_does_not_run_the_chain_again(
    poller_redis_client: redis.Redis,
) -> None:
    # Given a chain whose next step ran once after its Batch job
    result = chain(
        submit_job.s("late-dup", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters={"seconds": "0.2"}),
        note_after.s().set(**ON_POLLER_QUEUE),
    ).apply_async()
    note = result.get(timeout=RESULT_TIMEOUT)
    record = JobHandle(note["tracking_id"]).record
    # When copies of its check arrive late (as after a crash and the visibility timeout)
    for check_no in (0, record.schedule.checks, record.schedule.checks - 1):
        check_job.apply_async((record.tracking_id, check_no), task_id=record.tracking_id)
    # Then the probe below runs after them (one queue, in order) and the step ran only once
    probe = note_after.apply_async(({"tracking_id": "probe", "status": "-"},), **ON_POLLER_QUEUE)
    probe.get(timeout=RESULT_TIMEOUT)
    notes = [json.loads(n) for n in poller_redis_client.lrange("poller:test:after", 0, -1)]
    assert [n["tracking_id"] for n in notes].count(record.tracking_id) == 1


def test_a_chord_over_ten_jobs_calls_back_once_all_are_done() -> None:
    header = [
        submit_job.s(f"chord-{i}", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters={"seconds": "0.3"})
        for i in range(10)
    ]
    assert (
        chord(header)(count_succeeded.s().set(**ON_POLLER_QUEUE)).get(timeout=RESULT_TIMEOUT * 2)
        == 10
    )


def test_a_duplicated_check_sends_no_second_signal(poller_redis_client: redis.Redis) -> None:
    # Given a tracked job that has been checked at least once
    result = sleep_job("dup-1", seconds=2)
    handle = JobHandle(result.id)
    eventually(lambda: (r := handle.store.find(result.id)) and r.schedule.checks >= 1)
    current = handle.record.schedule.checks
    # When stale and current check messages are delivered again (as the broker redelivers
    # them: same task id)
    check_job.apply_async((result.id, 0), task_id=result.id)
    check_job.apply_async((result.id, current), task_id=result.id)
    # And a check is sent under another id, which must not take the job's checks over
    stray = check_job.apply_async((result.id, current))
    result.get(timeout=RESULT_TIMEOUT)
    assert not stray.ready()  # dropped without a result
    # Then each signal was still sent once
    names = [e["signal"] for e in signals_of(poller_redis_client, result.id)]
    assert names.count("job_submitted") == names.count("job_finished") == 1
    statuses = [
        e["status"]
        for e in signals_of(poller_redis_client, result.id)
        if e["signal"] == "job_status_changed"
    ]
    assert len(statuses) == len(set(statuses))


def test_invalid_spec_is_refused_in_the_callers_process() -> None:
    # When a bad spec is submitted, Then .delay raises naming the field
    with pytest.raises(InvalidJobSpec, match="parameters.seconds") as caught:
        submit_job.delay("bad-1", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters={"seconds": 5})
    assert caught.value.field == "parameters.seconds"
    with pytest.raises(InvalidJobSpec, match="job_name"):
        submit_job.delay("bad name", JOB_QUEUE, SLEEP_JOB_DEFINITION)


def test_the_worker_rejects_a_bad_message_that_bypassed_validation(
    poller_redis_client: redis.Redis,
) -> None:
    # Given a message sent without the caller-side check
    result = app.send_task("poller.submit_job", args=["bad name", JOB_QUEUE, SLEEP_JOB_DEFINITION])
    # Then the worker refuses it and records why
    with pytest.raises(InvalidJobSpec, match="job_name"):
        result.get(timeout=RESULT_TIMEOUT)
    record = JobHandle(result.id).record
    assert record.status is JobStatus.REJECTED and "job_name" in (record.status_reason or "")


def test_a_used_idempotency_key_that_bypassed_apply_async_is_a_documented_error() -> None:
    first = sleep_job("key-owner", seconds=0.2, idempotency_key="invoice-7")
    # When the same key arrives as a raw message (as from another app's send_task)
    again = app.send_task(
        "poller.submit_job",
        args=["key-again", JOB_QUEUE, SLEEP_JOB_DEFINITION],
        kwargs={"idempotency_key": "invoice-7"},
        queue="poller",
    )
    # Then it fails with DuplicateSubmission naming the owner, and the owner runs on
    with pytest.raises(DuplicateSubmission, match=f"already used by job {first.id}"):
        again.get(timeout=RESULT_TIMEOUT)
    assert first.get(timeout=RESULT_TIMEOUT)["status"] == "SUCCEEDED"


def test_a_receiver_that_raises_does_not_disturb_tracking(poller_redis_client: redis.Redis) -> None:
    result = sleep_job("explode-1", seconds=0.2)
    assert result.get(timeout=RESULT_TIMEOUT)["status"] == "SUCCEEDED"
    # The other receiver still saw every signal
    assert [e["signal"] for e in signals_of(poller_redis_client, result.id)][-1] == "job_finished"


def test_the_record_exists_as_soon_as_delay_returns() -> None:
    result = submit_job.apply_async(("queued-1", JOB_QUEUE, SLEEP_JOB_DEFINITION), countdown=30)
    assert JobHandle(result.id).status is JobStatus.QUEUED
    result.revoke()


def test_a_second_submission_with_the_same_key_returns_the_first_job() -> None:
    first = sleep_job("idem-1", seconds=0.2, idempotency_key="order-42")
    second = sleep_job("idem-1", seconds=0.2, idempotency_key="order-42")
    assert second.id == first.id
    assert first.get(timeout=RESULT_TIMEOUT)["status"] == "SUCCEEDED"


def test_wait_wakes_on_the_event_and_returns_the_same_result_as_get() -> None:
    result = sleep_job("wait-1", seconds=1)
    waited = JobHandle(result.id).wait(timeout=RESULT_TIMEOUT)
    assert waited["status"] == "SUCCEEDED"
    assert waited == result.get(timeout=RESULT_TIMEOUT)


def test_an_array_job_records_its_children_summary() -> None:
    result = sleep_job("array-1", seconds=0.3, array_properties={"size": 3})
    outcome = result.get(timeout=RESULT_TIMEOUT)
    assert outcome["array_status_summary"]["SUCCEEDED"] == 3
