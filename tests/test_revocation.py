"""A revoked job's task cancels the job, in process: a real Redis, AWS Batch faked in memory."""

from __future__ import annotations

from poller.core import lifecycle, revocation
from poller.core.revocation import Revoked
from poller.models import JobStatus
from poller.runtime import ProcessRuntime
from poller.testing import FakeBatch
from tests.fakes import admitted, running


def test_a_recorded_revocation_terminates_the_batch_job_and_ends_the_record_once(
    rt: ProcessRuntime, batch: FakeBatch, sent: list[tuple[str, str]]
) -> None:
    # Given a running job whose task was revoked (recorded by the sender or a worker)
    record = running(rt, batch)
    sent.clear()
    assert revocation.request(rt.store, ["t1", "not-a-poller-task"], "Celery task revoked") == [
        "t1"
    ]
    # When two workers apply it
    first = revocation.apply(rt, "t1")
    second = revocation.apply(rt, "t1")
    # Then the Batch job was terminated and the record ended FAILED saying it was revoked, once
    assert first is not None and second is None
    assert batch.jobs[str(record.job_id)].status is JobStatus.FAILED
    assert (first.status, first.status_reason) == (JobStatus.FAILED, "Celery task revoked")
    assert (
        first.celery.revoked and first.celery.resolved
    )  # its result is REVOKED: no delivery produces one
    assert [name for name, _ in sent].count("job_failed") == 1


def test_a_revocation_before_submission_submits_nothing(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    admitted(rt)
    revocation.request(rt.store, ["t1"], revocation.reason_for(terminate=True))
    ended = revocation.apply(rt, "t1")
    assert ended is not None and ended.status is JobStatus.FAILED
    assert ended.status_reason == "Celery task revoked (terminate)"
    assert batch.calls["SubmitJob"] == batch.calls["TerminateJob"] == 0


def test_a_check_of_a_revoked_job_applies_the_revocation(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a revocation recorded while no worker was up to apply it
    running(rt, batch)
    revocation.request(rt.store, ["t1"], "Celery task revoked")
    # When the job's next check runs (in a worker that never saw the broadcast)
    outcome = lifecycle.check(rt, "t1", 0)
    # Then it ends the job, and every later delivery is told the job was revoked
    assert isinstance(outcome, Revoked) and outcome.record.status is JobStatus.FAILED
    assert batch.calls["TerminateJob"] == 1
    again = lifecycle.check(rt, "t1", 1)
    assert isinstance(again, Revoked) and batch.calls["TerminateJob"] == 1


def test_an_ended_job_is_not_revoked(rt: ProcessRuntime, batch: FakeBatch) -> None:
    record = running(rt, batch)
    batch.set_status(str(record.job_id), JobStatus.SUCCEEDED)
    lifecycle.check(rt, "t1", 0)
    revocation.request(rt.store, ["t1"], "Celery task revoked")
    assert revocation.apply(rt, "t1") is None
    assert (
        rt.store.get("t1").status is JobStatus.SUCCEEDED and not rt.store.get("t1").celery.revoked
    )
