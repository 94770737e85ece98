"""Pure decisions about a job record: every status observation goes through here.

Each function takes the current record and what was observed, and returns a :class:`Change`
(the new record and the events it causes) or None when nothing changed. They never do I/O and
take the time as an argument, so they are tested without Redis, AWS or a clock, and can be re-run
by :meth:`poller.store.JobStore.update` after a conflicting write.

Rules: a job never moves backwards (a stale observation is ignored), only a real transition
produces events, and a terminal record is never changed again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from poller.core import failures, resubmission
from poller.models import (
    BatchJobView,
    FailureKind,
    JobRecord,
    JobStatus,
    Limits,
    Submission,
    Transition,
)
from poller.models.announcement import Announcement, SignalName
from poller.store import Change

_OUTCOME_SIGNAL: dict[JobStatus, SignalName] = {
    JobStatus.SUCCEEDED: "job_succeeded",
    JobStatus.FAILED: "job_failed",
    JobStatus.REJECTED: "job_failed",
    JobStatus.TIMED_OUT: "job_timed_out",
}


def _transition(
    record: JobRecord, status: JobStatus, now: datetime, kind: FailureKind | None = None
) -> list[Announcement]:
    """Move ``record`` (already a copy) to ``status``; return the events of the move. An end
    other than SUCCEEDED gets its failure kind: ``kind`` when the path knows it, else read from
    Batch's strings."""
    previous = record.status
    record.status = status
    record.history.append(Transition(status=status, observed_at=now))
    events = [Announcement("job_status_changed", record, previous.value)]
    if status.is_terminal:
        record.failure_kind = kind or failures.classify(record)
        resubmission.close_last(record, now)
        record.finished_at = now
        # Stays indexed until its Celery result is produced; due now for the reconciler.
        record.schedule.next_check_at = now
        events += [
            Announcement(_OUTCOME_SIGNAL[status], record),
            Announcement("job_finished", record),
        ]
    return events


def _end(
    record: JobRecord, status: JobStatus, now: datetime, kind: FailureKind | None = None
) -> list[Announcement]:
    """Batch ended the job's current Batch job (or poller gave up on it in RUNNABLE): end the
    tracked job, or, when its resubmit policy names the failure's kind, ready a resubmission."""
    kind = kind or failures.classify(record, status)
    if kind is None or not resubmission.applies(record, kind):
        return _transition(record, status, now, kind)
    previous = record.status
    resubmission.prepare(record, status, kind, now)
    record.history.append(Transition(status=JobStatus.QUEUED, observed_at=now))
    return [
        Announcement("job_resubmitted", record, previous.value, status=status.value),
        Announcement("job_status_changed", record, previous.value),
    ]


def _copy(record: JobRecord) -> JobRecord:
    """A copy of ``record`` that decisions may change: its own fields, parts and history list
    (shallow copies: cheaper than a deep copy, and nothing is changed in place below them)."""
    return record.model_copy(
        update={
            "history": list(record.history),
            "batch": record.batch.model_copy(),
            "schedule": record.schedule.model_copy(),
            "submission": record.submission.model_copy(),
            "celery": record.celery.model_copy(),
        }
    )


def new_record(record: JobRecord, now: datetime) -> JobRecord:
    """Stamp a freshly built record with its first transition (QUEUED)."""
    return record.model_copy(
        update={"history": [Transition(status=record.status, observed_at=now)]}
    )


def submitted(
    record: JobRecord,
    job_id: str,
    now: datetime,
    next_check_at: datetime,
    awaits_events: bool = False,
    where: tuple[str | None, str | None] = (None, None),
) -> Change | None:
    """The Batch job was created: store its id, where (``where``: its region and account, when
    known), move to SUBMITTED and schedule the first check (``awaits_events``: without a
    countdown message, see JobRecord.schedule.awaits_events)."""
    if record.job_id is not None or record.is_terminal:
        return None  # a redelivered submit: the first one already recorded it
    new = _copy(record)
    new.job_id = job_id
    region, account = where
    new.aws_region = region or new.aws_region
    new.aws_account = account or new.aws_account
    new.submitted_at = now
    new.schedule.waiting_reason = new.schedule.waiting_since = None
    new.schedule.next_check_at = next_check_at
    new.schedule.awaits_events = awaits_events
    new.submission.resubmitting = False
    number = len(new.submissions) + 1
    memory = resubmission.memory_override(new.spec)
    new.submissions = [
        *new.submissions,
        Submission(
            number=number, job_id=job_id, job_queue=new.job_queue, memory=memory, submitted_at=now
        ),
    ]
    events = [Announcement("job_submitted", new), *_transition(new, JobStatus.SUBMITTED, now)]
    return Change(new, events)


def submitting(record: JobRecord, now: datetime, lease: timedelta) -> Change | None:
    """Take the lease to call SubmitJob; None when the job is submitted, ended, or leased.

    The note stays after the call: a later attempt (the worker died before storing the job id)
    must look for the job it may have created before submitting again.
    """
    if record.job_id is not None or record.is_terminal:
        return None
    if record.submission.lease_until is not None and now < record.submission.lease_until:
        return None
    return Change(
        record.with_parts(
            # the budget's turn is used now
            submission={"started_at": now, "lease_until": now + lease, "turn_at": None},
            schedule={"next_check_at": now},
        )
    )


def submit_turn(record: JobRecord, when: datetime) -> Change | None:
    """Note the SubmitJob turn the fleet's call budget gave the job (it waits until then)."""
    if record.job_id is not None or record.is_terminal:
        return None
    return Change(record.with_parts(submission={"turn_at": when}, schedule={"next_check_at": when}))


def submit_failed(record: JobRecord, *, created: bool | None) -> Change | None:
    """Release the submit lease after a failed call; forget the attempt if it created nothing."""
    if record.job_id is not None or record.is_terminal:
        return None
    update: dict[str, Any] = {"lease_until": None, "failures": record.submission.failures + 1}
    if created is False:
        update["started_at"] = None
    return Change(record.with_parts(submission=update))


def rescheduled(record: JobRecord, when: datetime) -> Change | None:
    """Move a job's next expected activity (a retry, a re-sent message) to ``when``; also for a
    finished job whose result is not produced yet (the reconciler re-sends its message)."""
    if record.is_terminal and record.celery.resolved:
        return None
    # a message is on its way again (a retry, a re-sent check): the reconciler waits its grace
    return Change(record.with_parts(schedule={"next_check_at": when, "awaits_events": False}))


def aws_refused(record: JobRecord, reason: str, now: datetime) -> Change | None:
    """AWS refused a call for this job over poller's configuration (credentials, access): note
    why the job waits and since when. None when that reason is already noted."""
    if record.is_terminal or record.schedule.waiting_reason == reason:
        return None
    since = record.schedule.waiting_since or now
    return Change(record.with_parts(schedule={"waiting_reason": reason, "waiting_since": since}))


def refused_too_long(record: JobRecord, now: datetime, grace: float) -> bool:
    """True once the job has waited on an AWS configuration error for ``grace`` seconds."""
    since = record.schedule.waiting_since
    return since is not None and (now - since).total_seconds() >= grace


def canvas_recorded(record: JobRecord, canvas: dict[str, Any]) -> Change | None:
    """Keep the Celery canvas links of the job's task, to re-attach them to a re-sent check."""
    if record.is_terminal or record.celery.canvas == canvas:
        return None
    return Change(record.with_parts(celery={"canvas": canvas}))


def finish(record: JobRecord, status: JobStatus, reason: str, now: datetime) -> Change | None:
    """End an active job with a status poller decides (REJECTED, TIMED_OUT, FAILED) and a reason."""
    if record.is_terminal:
        return None
    new = _copy(record)
    new.status_reason = reason
    return Change(new, _transition(new, status, now))


def resubmit_refused(record: JobRecord, why: str, now: datetime) -> Change | None:
    """AWS (or poller's checks) refused a resubmission: the job ends as its last Batch job did,
    with that job's id, kind and reason, and ``why``."""
    if not record.resubmitting:
        return None
    new = _copy(record)
    last = new.submissions[-1]
    new.job_id, new.batch.exit_code = last.job_id, last.exit_code
    ended = last.status or JobStatus.FAILED
    new.status_reason = f"{last.status_reason or ended.value}; {why}"
    return Change(new, _transition(new, ended, now, last.failure_kind))


def resolve(record: JobRecord) -> Change | None:
    """Claim the right to produce a finished job's Celery result; None when it was claimed.

    The one decision behind "a result once": whichever delivery of the job's task (or the
    caller that could not enqueue it) claims it produces the result; the others end without
    one, so canvas callbacks and chain steps run once.
    """
    if not record.is_terminal or record.celery.resolved:
        return None
    return Change(record.with_parts(celery={"resolved": True}))


def cancel_requested(record: JobRecord, reason: str) -> Change | None:
    """Note that a user asked to stop the job (the Batch status arrives with the next check)."""
    if record.is_terminal or record.celery.cancel_reason == reason:
        return None
    return Change(record.with_parts(celery={"cancel_reason": reason}))


def revoke_requested(record: JobRecord, reason: str) -> Change | None:
    """Note that the job's Celery task was revoked (a worker applies it: :func:`revoked`)."""
    if record.is_terminal or record.celery.revoked:
        return None
    return Change(record.with_parts(celery={"revoked": True, "cancel_reason": reason}))


def revoked(record: JobRecord, reason: str, now: datetime) -> Change | None:
    """End a revoked job FAILED with ``reason``. Its Celery result is REVOKED, which counts as
    produced (``resolved``): no later delivery of its task produces another."""
    if record.is_terminal:
        return None
    new = _copy(record)
    new.celery.revoked, new.celery.resolved, new.status_reason = True, True, reason
    return Change(new, _transition(new, JobStatus.FAILED, now, FailureKind.CANCELLED))


def checked(
    record: JobRecord,
    view: BatchJobView | None,
    *,
    check_no: int,
    now: datetime,
    next_check_at: datetime,
    limits: Limits,
    own: bool = True,
    awaits_events: bool = False,
) -> Change | None:
    """Apply check number ``check_no``'s observation (None: Batch did not return the job).

    Returns None for a stale check (another delivery already applied this one) or a finished job.
    The check is counted and the next one scheduled in the same change. ``own=False`` applies
    an observation another job's check made: it is not counted, so the job's pending check
    message keeps its number and finds the job finished. ``awaits_events``: the next check is
    scheduled without a countdown message (see JobRecord.schedule.awaits_events).
    """
    if record.is_terminal or record.schedule.checks != check_no or record.resubmitting:
        return None
    if view is not None and view.job_id != record.job_id:
        return None  # of a Batch job the job no longer follows (a resubmission replaced it)
    new = _copy(record)
    if own:
        new.schedule.checks += 1
        new.schedule.next_check_at = next_check_at
        new.schedule.awaits_events = awaits_events
    events: list[Announcement] = []
    if view is None:
        events += _missing(new, now, limits)
    else:
        new.schedule.missing_since = None
        new.schedule.waiting_reason = new.schedule.waiting_since = None
        _copy_details(new, view)
        if view.status.rank > new.status.rank:
            move = _end if view.status.is_terminal else _transition
            events += move(new, view.status, now)
        if not new.is_terminal and not new.resubmitting:
            events += _stuck(new, now, limits)
    return Change(new, events)


def event_observed(
    record: JobRecord, view: BatchJobView, *, now: datetime, limits: Limits
) -> Change | None:
    """Apply a Batch state-change event, as another check's observation (the job's own check
    message keeps its number). Events come at least once and in any order: one that does not
    move the job forward (a duplicate, or older than what is recorded) changes nothing."""
    if record.is_terminal or view.status.rank <= record.status.rank:
        return None
    if not from_its_target(record, view):
        return None
    return checked(
        record,
        view,
        check_no=record.schedule.checks,
        now=now,
        next_check_at=now,
        limits=limits,
        own=False,
    )


def from_its_target(record: JobRecord, view: BatchJobView) -> bool:
    """True unless the view is an event from another account or region than the job's.

    A job lives in one account and region, and AWS sends its events from there: anything else
    was forged (or mis-routed), and is never applied. A job whose target is not known yet
    accepts no event (its checks still see it).
    """
    if view.origin is None:
        return True
    return view.origin == (record.aws_account, record.aws_region)


def _copy_details(record: JobRecord, view: BatchJobView) -> None:
    record.status_reason = view.status_reason or record.status_reason
    record.batch.exit_code = view.exit_code
    record.batch.container_reason = view.container_reason
    record.batch.attempts = view.attempts
    record.batch.log_stream_name = view.log_stream_name or record.batch.log_stream_name
    record.batch.created_at = view.created_at or record.batch.created_at
    record.batch.started_at = view.started_at or record.batch.started_at
    record.batch.stopped_at = view.stopped_at or record.batch.stopped_at
    record.batch.array_status_summary = view.array_status_summary
    resubmission.note_memory(record, view.memory)
    record.batch.attempt_kinds = [failures.attempt_kind(a) for a in view.attempt_outcomes]


def _missing(record: JobRecord, now: datetime, limits: Limits) -> list[Announcement]:
    """Batch omitted the job: wait out the grace period (not visible yet), then end it."""
    if record.schedule.missing_since is None:
        record.schedule.missing_since = now
        return []
    if now - record.schedule.missing_since < timedelta(seconds=limits.not_found_grace):
        return []
    record.status_reason = (
        f"AWS Batch no longer knows job {record.job_id}: DescribeJobs did not return it for "
        f"{limits.not_found_grace:.0f}s (finished jobs are kept about 24 hours)"
    )
    return _end(record, JobStatus.FAILED, now, FailureKind.VANISHED)


def _stuck(record: JobRecord, now: datetime, limits: Limits) -> list[Announcement]:
    """A job waiting in RUNNABLE: signal it once past ``stuck_after`` (or its own limit), and
    end it past its policy's ``max_runnable``, keeping Batch's reason (TerminateJob, which the
    check calls next, overwrites it on Batch)."""
    if record.status is not JobStatus.RUNNABLE:
        return []
    waited = (now - runnable_since(record, now)).total_seconds()
    limit = max_runnable(record, limits)
    give_up = limit is not None and waited >= limit
    events: list[Announcement] = []
    if not record.schedule.stuck_notified and (waited >= limits.stuck_after or give_up):
        record.schedule.stuck_notified = True
        events.append(Announcement("job_stuck", record))
    if give_up:
        kind = failures.stuck_kind(record.status_reason)
        record.status_reason = (
            f"stuck in RUNNABLE for over {limit:.0f}s: {record.status_reason or ''}"
        ).rstrip(": ")
        events += _end(record, JobStatus.TIMED_OUT, now, kind)
    return events


def runnable_since(record: JobRecord, now: datetime) -> datetime:
    """When poller first saw the job's current Batch job in RUNNABLE (``now`` if it did not)."""
    for transition in reversed(record.history):
        if transition.status is JobStatus.RUNNABLE:
            return transition.observed_at
        if transition.status is JobStatus.QUEUED:  # a resubmission: an earlier Batch job's
            break
    return now


def max_runnable(record: JobRecord, limits: Limits) -> float | None:
    """The job's ``max_runnable``; for a record stored without one, the fleet's ``stuck_after``
    when ``give_up_when_stuck`` is set."""
    if record.poll.max_runnable is not None:
        return record.poll.max_runnable
    return limits.stuck_after if limits.give_up_when_stuck else None


def runnable_deadline(record: JobRecord, now: datetime, limits: Limits) -> datetime | None:
    """When a RUNNABLE job reaches its ``max_runnable`` (its next check is due by then)."""
    limit = max_runnable(record, limits)
    if record.status is not JobStatus.RUNNABLE or limit is None:
        return None
    return runnable_since(record, now) + timedelta(seconds=limit)


def give_up_reason(record: JobRecord, now: datetime) -> str | None:
    """Why poller should stop checking this active job now, or None to go on."""
    if record.schedule.checks >= record.poll.max_checks:
        return (
            f"gave up after {record.schedule.checks} checks (max_checks={record.poll.max_checks})"
        )
    start = record.submitted_at or now
    waited = (now - start).total_seconds()
    if waited >= record.poll.max_wait:
        return f"gave up after waiting {waited:.0f}s (max_wait={record.poll.max_wait:.0f}s)"
    return None
