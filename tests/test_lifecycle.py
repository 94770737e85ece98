"""The lifecycle's protocol, in process: a real Redis, AWS Batch faked in memory (FakeBatch).

Crash and duplicate branches that the integration tier can only reach with real workers and
seconds of waiting run here in milliseconds: a lost SubmitJob answer, a held lease, a cancel
racing SubmitJob, duplicate and stale check deliveries, a result claimed twice.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from poller import admission, signals
from poller.core import lifecycle, tracking
from poller.core.lifecycle import Drop, Produce, Reschedule
from poller.errors import (
    BatchMisconfigured,
    BatchThrottled,
    BatchUnavailable,
    DuplicateSubmission,
    SubmitInProgress,
    SubmitRejected,
)
from poller.models import JobRecord, JobStatus, utcnow
from poller.runtime import ProcessRuntime
from poller.store import Change
from poller.testing import FakeBatch
from tests.fakes import admitted, ended_unclaimed, running, settings

# --- admission ------------------------------------------------------------------------------


def test_a_used_idempotency_key_is_answered_with_its_owner(rt: ProcessRuntime) -> None:
    admitted(rt, "first", key="nightly-2026-11-26")
    with pytest.raises(DuplicateSubmission) as caught:
        admitted(rt, "second", key="nightly-2026-11-26")
    assert caught.value.owner == "first"
    # And admitting the owner again (a redelivered message) is a no-op
    again = admitted(rt, "first", key="nightly-2026-11-26")
    assert again == rt.store.get("first") and again.version == 0


# --- submit ---------------------------------------------------------------------------------


def test_submit_creates_one_batch_job_and_signals_it(
    rt: ProcessRuntime, batch: FakeBatch, sent: list[tuple[str, str]]
) -> None:
    record = lifecycle.submit(rt, admitted(rt))
    assert record.status is JobStatus.SUBMITTED and record.job_id in batch.jobs
    assert batch.calls["SubmitJob"] == 1
    assert sent == [("job_submitted", "t1"), ("job_status_changed", "t1")]


def test_a_lost_submit_answer_never_creates_a_second_job(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a SubmitJob that created the job but whose answer was lost
    batch.lose_next_answer("SubmitJob")
    with pytest.raises(BatchUnavailable):
        lifecycle.submit(rt, admitted(rt))
    # When the submission is retried
    record = lifecycle.submit(rt, rt.store.get("t1"))
    # Then it finds that job by its tracking-id tag instead of submitting again
    assert batch.calls["SubmitJob"] == 1 and batch.calls["ListJobs"] == 1
    assert list(batch.jobs) == [record.job_id]


def test_a_throttled_submit_created_nothing_so_the_retry_does_not_look(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    batch.fail_next("SubmitJob", BatchThrottled("TooManyRequestsException"))
    with pytest.raises(BatchThrottled):
        lifecycle.submit(rt, admitted(rt))
    lifecycle.submit(rt, rt.store.get("t1"))
    assert batch.calls["ListJobs"] == 0 and len(batch.jobs) == 1


def test_a_delivery_finding_the_lease_held_does_not_call_submit(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given another attempt holding the SubmitJob lease, its job not visible in Batch yet
    admitted(rt)
    rt.store.update("t1", lambda r: tracking.submitting(r, utcnow(), timedelta(seconds=60)))
    # When a second delivery runs, it looks for the job, then waits for the lease
    with pytest.raises(SubmitInProgress):
        lifecycle.submit(rt, rt.store.get("t1"))
    assert batch.calls["ListJobs"] == 1 and batch.calls["SubmitJob"] == 0


def test_a_delivery_during_submit_adopts_the_job_it_finds(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a second delivery running while the first is inside SubmitJob, the job visible
    seen: list[JobRecord] = []
    batch.on_submit = lambda job: seen.append(lifecycle.submit(rt, rt.store.get("t1")))
    # When the first one's SubmitJob answers
    first = lifecycle.submit(rt, admitted(rt))
    # Then both recorded the same job, created once
    assert seen[0].job_id == first.job_id and len(batch.jobs) == 1
    assert batch.calls["SubmitJob"] == 1


def test_a_cancel_racing_submit_terminates_the_job_it_created(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a user cancelling while SubmitJob is under way
    batch.on_submit = lambda job: lifecycle.cancel(rt, "t1", "not needed")
    # When SubmitJob answers
    record = lifecycle.submit(rt, admitted(rt))
    # Then the record stays cancelled and the Batch job it created is terminated
    assert record.status is JobStatus.FAILED and record.job_id is None
    (job,) = batch.jobs.values()
    assert job.status is JobStatus.FAILED and batch.calls["TerminateJob"] == 1
    # And the submit task's delivery produces the result, once
    assert isinstance(lifecycle.claim_result(rt.store, record), Produce)
    assert isinstance(lifecycle.claim_result(rt.store, record), Drop)


def test_a_refused_submit_ends_rejected_with_one_result(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    spec, policy, _, _ = admission.validate(rt.settings, ("nightly", "no-such-queue", "def"), {})
    lifecycle.admit(rt.store, "t1", spec, policy, None)
    with pytest.raises(SubmitRejected):
        lifecycle.submit(rt, rt.store.get("t1"))
    first, second = lifecycle.reject(rt, "t1", "refused"), lifecycle.reject(rt, "t1", "again")
    assert isinstance(first, Produce) and first.record.status is JobStatus.REJECTED
    assert isinstance(second, Drop) and rt.store.get("t1").status_reason == "refused"


# --- check ----------------------------------------------------------------------------------


def test_a_check_reschedules_then_produces_the_result_once(
    rt: ProcessRuntime, batch: FakeBatch, sent: list[tuple[str, str]]
) -> None:
    record = running(rt, batch)
    first = lifecycle.check(rt, "t1", 0)
    assert isinstance(first, Reschedule) and first.record.status is JobStatus.RUNNING
    assert first.delay == 2  # initial 1 s x factor 2 for the second check
    batch.set_status(str(record.job_id), JobStatus.SUCCEEDED)
    done = lifecycle.check(rt, "t1", 1)
    assert isinstance(done, Produce) and done.record.status is JobStatus.SUCCEEDED
    # A duplicate of that delivery, and a late copy of an earlier check, produce nothing
    assert isinstance(lifecycle.check(rt, "t1", 1), Drop)
    assert isinstance(lifecycle.check(rt, "t1", 0), Drop)
    assert [name for name, _ in sent].count("job_succeeded") == 1


def test_a_stale_check_number_is_dropped_without_calling_aws(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    running(rt, batch)
    assert isinstance(lifecycle.check(rt, "t1", 0), Reschedule)
    calls = batch.calls["DescribeJobs"]
    dropped = lifecycle.check(rt, "t1", 0)  # redelivered after it was applied
    assert isinstance(dropped, Drop) and batch.calls["DescribeJobs"] == calls


def test_one_call_describes_other_due_jobs_and_records_their_ends(
    rt: ProcessRuntime, batch: FakeBatch, sent: list[tuple[str, str]]
) -> None:
    # Given two running jobs due now, the second already finished on Batch
    running(rt, batch, "a")
    other = running(rt, batch, "b")
    batch.set_status(str(other.job_id), JobStatus.FAILED, reason="exit 3", exit_code=3)
    # When the first job's check runs
    assert isinstance(lifecycle.check(rt, "a", 0), Reschedule)
    # Then one DescribeJobs call also recorded the second job's end, signalled once
    assert batch.calls["DescribeJobs"] == 1
    assert rt.store.get("b").status is JobStatus.FAILED
    assert ("job_failed", "b") in sent
    # And the second job's own pending check produces its result without calling AWS
    produced = lifecycle.check(rt, "b", 0)
    assert isinstance(produced, Produce) and produced.record.batch.exit_code == 3
    assert batch.calls["DescribeJobs"] == 1
    assert [s for s in sent if s == ("job_failed", "b")] == [("job_failed", "b")]


def test_a_job_batch_forgot_ends_failed_after_the_grace(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    rt.settings = settings(not_found_grace=60)
    record = running(rt, batch)
    batch.forget(str(record.job_id))
    assert isinstance(lifecycle.check(rt, "t1", 0), Reschedule)  # first miss starts the grace
    past_the_grace = utcnow() - timedelta(seconds=61)  # the grace is 60 s
    rt.store.update(
        "t1", lambda r: Change(r.with_parts(schedule={"missing_since": past_the_grace}))
    )
    ended = lifecycle.check(rt, "t1", 1)  # the next miss ends it
    assert isinstance(ended, Produce) and ended.record.status is JobStatus.FAILED
    assert "no longer knows" in str(ended.record.status_reason)


def test_max_checks_gives_up_and_terminates_when_asked(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    record = running(rt, batch, max_checks=1, terminate_on_give_up=True)
    assert isinstance(lifecycle.check(rt, "t1", 0), Reschedule)
    gave_up = lifecycle.check(rt, "t1", 1)
    assert isinstance(gave_up, Produce) and gave_up.record.status is JobStatus.TIMED_OUT
    assert batch.jobs[str(record.job_id)].status is JobStatus.FAILED
    assert isinstance(lifecycle.give_up(rt, gave_up.record, "again"), Drop)


def test_aws_refusing_the_configuration_waits_out_its_grace(rt: ProcessRuntime) -> None:
    admitted(rt)
    err = BatchMisconfigured("AccessDeniedException: not allowed")
    record, reason = lifecycle.refused(rt, "t1", err)
    assert reason is None and record.schedule.waiting_reason == str(err)
    rt.settings = settings(aws_config_grace=0.5)
    a_second_ago = utcnow() - timedelta(seconds=1)
    rt.store.update("t1", lambda r: Change(r.with_parts(schedule={"waiting_since": a_second_ago})))
    _, reason = lifecycle.refused(rt, "t1", err)
    assert reason is not None and "AccessDeniedException" in reason


def test_cancel_before_submission_leaves_the_result_to_the_submit_task(rt: ProcessRuntime) -> None:
    admitted(rt)
    record = lifecycle.cancel(rt, "t1", "not needed")
    assert record.status is JobStatus.FAILED and not record.celery.resolved
    assert record.status_reason == "cancelled before submission: not needed"
    assert rt.store.active(queued=True) == ["t1"]  # until a delivery produces the result
    assert isinstance(lifecycle.claim_result(rt.store, record), Produce)
    assert rt.store.active(queued=True) == []


def test_a_job_ended_by_a_delivery_that_died_before_claiming_is_produced_by_the_next(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a check that stored the job's end, then died before claiming its result
    ended_unclaimed(rt, batch, JobStatus.SUCCEEDED)
    # When its message is delivered again
    redelivered = lifecycle.check(rt, "t1", 0)
    # Then that delivery produces the result
    assert isinstance(redelivered, Produce) and redelivered.record.celery.resolved


def test_signals_are_sent_after_their_change_is_stored(
    rt: ProcessRuntime, batch: FakeBatch, sent: list[tuple[str, str]]
) -> None:
    stored_when_sent: list[JobStatus] = []

    def receiver(sender: str, record: JobRecord, **_: Any) -> None:
        stored_when_sent.append(rt.store.get(record.tracking_id).status)

    signals.job_submitted.connect(receiver, weak=False)
    try:
        lifecycle.submit(rt, admitted(rt))
    finally:
        signals.job_submitted.disconnect(receiver)
    assert stored_when_sent == [JobStatus.SUBMITTED]


def test_an_abandoned_submission_ends_claimed_and_sends_no_signal(
    rt: ProcessRuntime, sent: list[tuple[str, str]]
) -> None:
    admitted(rt)
    lifecycle.abandon(rt.store, "t1", "could not be enqueued: broker down")
    record = rt.store.get("t1")
    assert record.status is JobStatus.REJECTED and record.celery.resolved
    assert sent == [] and rt.store.active(queued=True) == []


def test_a_submission_whose_record_was_lost_finds_its_batch_job_instead_of_submitting_again(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a job submitted, then its record lost (a failover to a replica without it)
    first = lifecycle.submit(rt, admitted(rt))
    rt.store.redis.delete(rt.store.key("job", "t1"))
    # When the redelivered submission makes the record again and submits, looking first
    again = lifecycle.submit(rt, admitted(rt), look_first=True)
    # Then it found the Batch job the first attempt created: one SubmitJob in all
    assert batch.calls["SubmitJob"] == 1 and batch.calls["ListJobs"] == 1
    assert again.job_id == first.job_id and again.status is JobStatus.SUBMITTED


def test_an_attempt_paused_past_its_lease_does_not_call_submitjob(
    rt: ProcessRuntime, batch: FakeBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a process paused (a frozen host) between taking the lease and calling SubmitJob:
    # each look at the clock finds a minute gone, past the lease
    record = admitted(rt)
    minutes = itertools.count()
    t0 = utcnow()
    monkeypatch.setattr(lifecycle, "utcnow", lambda: t0 + timedelta(minutes=next(minutes)))
    # Then it does not call SubmitJob (another attempt may hold the lease by now)
    with pytest.raises(SubmitInProgress, match="lease ran out"):
        lifecycle.submit(rt, record)
    assert batch.calls["SubmitJob"] == 0
