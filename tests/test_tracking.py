"""The pure decisions every status observation goes through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from poller.aws.batch import BatchJobView
from poller.core import tracking
from poller.models import JobRecord, JobStatus, PollPolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = tracking.Limits(not_found_grace=60, stuck_after=600, give_up_when_stuck=False)
POLICY = PollPolicy(
    initial_delay=1, max_delay=10, factor=2, jitter=0, max_checks=5, max_wait=3600,
    terminate_on_give_up=False,
)  # fmt: skip


def submitted_record() -> JobRecord:
    record = tracking.new_record(
        JobRecord(tracking_id="t1", job_name="n", job_queue="q", job_definition="d", poll=POLICY),
        T0,
    )
    change = tracking.submitted(record, "job-1", T0, T0 + timedelta(seconds=1))
    assert change is not None
    return change.record


def check(
    record: JobRecord, view: BatchJobView | None, at: float, limits: tracking.Limits = LIMITS
):
    now = T0 + timedelta(seconds=at)
    return tracking.checked(
        record, view, check_no=record.schedule.checks, now=now, next_check_at=now, limits=limits
    )


def test_submission_records_the_job_id_and_events_in_order() -> None:
    record = tracking.new_record(
        JobRecord(tracking_id="t1", job_name="n", job_queue="q", job_definition="d", poll=POLICY),
        T0,
    )
    change = tracking.submitted(record, "job-1", T0, T0)
    assert change is not None
    assert [e.name for e in change.events] == ["job_submitted", "job_status_changed"]
    assert change.record.status is JobStatus.SUBMITTED
    # A redelivered submit changes nothing
    assert tracking.submitted(change.record, "job-2", T0, T0) is None


def test_a_transition_is_stored_once_and_a_repeat_observation_sends_nothing() -> None:
    # Given a submitted job
    record = submitted_record()
    # When it is seen RUNNING twice
    first = check(record, BatchJobView("job-1", JobStatus.RUNNING), 1)
    assert first is not None
    second = check(first.record, BatchJobView("job-1", JobStatus.RUNNING), 2)
    # Then only the first observation is a transition
    assert [e.name for e in first.events] == ["job_status_changed"]
    assert second is not None and second.events == []
    assert second.record.schedule.checks == 2


def test_a_job_never_moves_backwards() -> None:
    record = check(submitted_record(), BatchJobView("job-1", JobStatus.RUNNING), 1).record
    stale = check(record, BatchJobView("job-1", JobStatus.RUNNABLE), 2)
    assert stale is not None and stale.record.status is JobStatus.RUNNING and stale.events == []


def test_the_same_check_number_applies_only_once() -> None:
    record = submitted_record()
    view = BatchJobView("job-1", JobStatus.SUCCEEDED)
    first = tracking.checked(record, view, check_no=0, now=T0, next_check_at=T0, limits=LIMITS)
    assert first is not None
    # A duplicate delivery of check 0 finds check 0 already applied
    assert (
        tracking.checked(first.record, view, check_no=0, now=T0, next_check_at=T0, limits=LIMITS)
        is None
    )


def test_failure_keeps_exit_code_reason_and_sends_outcome_signals() -> None:
    view = BatchJobView(
        "job-1", JobStatus.FAILED, status_reason="Essential container in task exited",
        exit_code=3, container_reason=None, attempts=2, log_stream_name="d/default/x",
    )  # fmt: skip
    change = check(submitted_record(), view, 5)
    assert change is not None
    assert [e.name for e in change.events] == ["job_status_changed", "job_failed", "job_finished"]
    record = change.record
    assert (record.batch.exit_code, record.batch.attempts, record.batch.log_stream_name) == (
        3,
        2,
        "d/default/x",
    )
    assert record.finished_at == T0 + timedelta(seconds=5)
    assert "exit code 3" in record.describe_failure() and "job-1" in record.describe_failure()
    # A finished record is never changed again
    assert check(record, view, 6) is None


def test_a_missing_job_waits_out_the_grace_period_then_fails_saying_why() -> None:
    record = submitted_record()
    first = check(record, None, 1)
    assert first is not None and first.record.status is JobStatus.SUBMITTED
    within = check(first.record, None, 30)
    assert within is not None and within.record.status is JobStatus.SUBMITTED
    after = check(within.record, None, 62)
    assert after is not None and after.record.status is JobStatus.FAILED
    assert "no longer knows job job-1" in (after.record.status_reason or "")


def test_a_job_seen_again_clears_missing_since() -> None:
    missing = check(submitted_record(), None, 1).record
    back = check(missing, BatchJobView("job-1", JobStatus.PENDING), 2)
    assert back is not None and back.record.schedule.missing_since is None


def test_stuck_in_runnable_is_signalled_once() -> None:
    record = check(submitted_record(), BatchJobView("job-1", JobStatus.RUNNABLE), 1).record
    early = check(record, BatchJobView("job-1", JobStatus.RUNNABLE), 300)
    assert early is not None and early.events == []
    stuck = check(early.record, BatchJobView("job-1", JobStatus.RUNNABLE), 700)
    assert stuck is not None and [e.name for e in stuck.events] == ["job_stuck"]
    again = check(stuck.record, BatchJobView("job-1", JobStatus.RUNNABLE), 900)
    assert again is not None and again.events == []


def test_stuck_may_give_up() -> None:
    limits = tracking.Limits(not_found_grace=60, stuck_after=10, give_up_when_stuck=True)
    view = BatchJobView("job-1", JobStatus.RUNNABLE, status_reason="no capacity")
    record = check(submitted_record(), view, 1, limits).record
    change = check(record, view, 20, limits)
    assert change is not None and change.record.status is JobStatus.TIMED_OUT
    assert "no capacity" in (change.record.status_reason or "")
    assert [e.name for e in change.events][-2:] == ["job_timed_out", "job_finished"]


def test_give_up_on_checks_and_on_wait() -> None:
    record = submitted_record()
    assert tracking.give_up_reason(record, T0) is None
    assert "max_checks=5" in (
        tracking.give_up_reason(record.with_parts(schedule={"checks": 5}), T0) or ""
    )
    assert "max_wait" in (tracking.give_up_reason(record, T0 + timedelta(hours=2)) or "")


def test_array_summary_is_recorded_on_every_check() -> None:
    record = check(
        submitted_record(),
        BatchJobView("job-1", JobStatus.PENDING, array_status_summary={"RUNNING": 2}),
        1,
    ).record
    again = check(
        record, BatchJobView("job-1", JobStatus.PENDING, array_status_summary={"SUCCEEDED": 2}), 2
    )
    assert again is not None and again.record.batch.array_status_summary == {"SUCCEEDED": 2}


def test_finish_and_cancel_requested() -> None:
    record = submitted_record()
    cancelled = tracking.cancel_requested(record, "user asked")
    assert cancelled is not None and cancelled.events == []
    assert tracking.cancel_requested(cancelled.record, "user asked") is None
    done = tracking.finish(record, JobStatus.REJECTED, "bad", T0)
    assert done is not None and [e.name for e in done.events] == [
        "job_status_changed",
        "job_failed",
        "job_finished",
    ]
    assert tracking.finish(done.record, JobStatus.TIMED_OUT, "x", T0) is None


def test_a_finished_job_produces_its_result_once() -> None:
    record = submitted_record()
    # Seen finished by another job's coalesced check: not counted, result not yet produced
    seen = tracking.checked(
        record, BatchJobView("job-1", JobStatus.SUCCEEDED), check_no=0, now=T0, next_check_at=T0,
        limits=LIMITS, own=False,
    )  # fmt: skip
    assert seen is not None
    assert seen.record.schedule.checks == 0
    assert not seen.record.celery.resolved
    # The job's own check claims the result once; every later delivery is refused
    claimed = tracking.resolve(seen.record)
    assert claimed is not None
    assert tracking.resolve(claimed.record) is None
    # A job's own check that sees the end does not claim it either: the lifecycle claims it
    # (lifecycle.claim_result), as on every path that ends a job
    own = check(submitted_record(), BatchJobView("job-1", JobStatus.FAILED), 1)
    assert own is not None
    assert not own.record.celery.resolved
