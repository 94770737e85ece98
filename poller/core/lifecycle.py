"""The job lifecycle as plain functions: admit, submit, check, cancel. No Celery here.

:mod:`poller.core.steps` runs the submit and check paths on these and ends each in one step for
:mod:`poller.tasks` to carry out. The protocol that makes at-least-once delivery harmless reads
here:

- **Admission** (:func:`admit`): one path, in the caller before the message is sent (or in the
  worker, for a message sent by name); a used idempotency key is answered with
  :class:`DuplicateSubmission`.
- **A transition, then its signals** (:func:`_apply`): every change that causes signals goes
  through the store's optimistic transaction (which publishes its announcements), then the
  runtime's announcer sends them: signals follow stored facts, once. Changes without signals
  (leases, notes) go to the store directly.
- **A check ends one of four ways**: :class:`Reschedule`, :class:`Produce` (this delivery
  produces the job's Celery result), :class:`Drop` (a stale or duplicate delivery) or
  :class:`~poller.core.revocation.Revoked`; AWS's transient errors and a concurrent delivery
  are raised (``BatchUnavailable``, ``CallDeferred``, ``ObservationPending``, ...), and
  :mod:`poller.core.steps` decides what each means.
- **A result once** (:func:`claim_result`): the only place that decides which delivery
  produces a finished job's result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from poller.core import budget, coalesce, outbox, resubmission, revocation, tracking
from poller.core.ports import Batch, Runtime
from poller.core.schedule import next_check
from poller.errors import (
    BatchMisconfigured,
    BatchThrottled,
    BatchUnavailable,
    DuplicateSubmission,
    InvalidJobSpec,
    JobFailed,
    JobTimedOut,
    PollerError,
    SubmitInProgress,
    SubmitRejected,
)
from poller.models import (
    POSITIONAL,
    TRACKING_TAG,
    BatchJobView,
    JobRecord,
    JobResult,
    JobSpec,
    JobStatus,
    Limits,
    PollPolicy,
    ResubmitPolicy,
    utcnow,
)
from poller.store import Change, JobStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reschedule:
    """The job is still running: check again in ``delay`` seconds."""

    record: JobRecord
    delay: float


@dataclass(frozen=True)
class Produce:
    """The job ended and this delivery produces its Celery result: :func:`outcome`, or
    ``error`` when the refusal that ended it says more than the record."""

    record: JobRecord
    error: PollerError | None = None


@dataclass(frozen=True)
class Drop:
    """A stale or duplicate delivery: end it without a result (another one produces it)."""

    record: JobRecord
    why: str


CheckOutcome = Reschedule | Produce | Drop | revocation.Revoked


def _apply(
    rt: Runtime, tracking_id: str, decide: Callable[[JobRecord], Change | None]
) -> Change | None:
    """Store ``decide``'s change to the job, then send its signals: a transition's one way from
    decision to receiver, in the worker. None when nothing changed (no signal)."""
    change = rt.store.update(tracking_id, decide)
    outbox.deliver(rt, change)
    return change


def _current(rt: Runtime, tracking_id: str, change: Change | None) -> JobRecord:
    return change.record if change is not None else rt.store.get(tracking_id)


def admit(
    store: JobStore,
    tracking_id: str,
    spec: JobSpec,
    policy: PollPolicy,
    key: str | None,
    canvas: dict[str, Any] | None = None,
    due: datetime | None = None,
    resubmit: ResubmitPolicy | None = None,
) -> JobRecord:
    """Admit a submission: create its QUEUED record, or return the one a redelivery finds.

    The one admission path: run in the caller's process before the message is sent (so a
    tracking id can be read at once) and again by the worker (a no-op then, unless the message
    bypassed ``apply_async``). Raises DuplicateSubmission, naming the owner, when the
    idempotency key belongs to another job.
    """
    record = JobRecord(
        tracking_id=tracking_id,
        job_name=spec.job_name,
        job_queue=spec.job_queue,
        job_definition=spec.job_definition,
        spec=spec.model_dump(exclude_none=True),
        aws_profile=spec.aws_profile,
        aws_region=spec.aws_region,
        poll=policy,
        resubmit=resubmit,
        idempotency_key=key,
        canvas=canvas,
        # Indexed as due (now, or at its countdown): if its message is lost, the reconciler
        # re-sends it after the grace.
        next_check_at=due or utcnow(),
    )
    stored = store.create(tracking.new_record(record, utcnow()), idempotency_key=key)
    if stored.tracking_id != tracking_id:
        message = f"idempotency key {key!r} already used by job {stored.tracking_id}"
        raise DuplicateSubmission(message, owner=stored.tracking_id)
    return stored


def abandon(store: JobStore, tracking_id: str, reason: str) -> None:
    """End a submission whose message could not be sent, in the caller's process (which raises
    the error itself, so it claims the result; no signal: those are sent in workers)."""
    now = utcnow()
    change = store.update(
        tracking_id, lambda r: tracking.finish(r, JobStatus.REJECTED, reason, now)
    )
    if change is not None:
        outbox.forget(store, change)
        claim_result(store, change.record)


def reject(rt: Runtime, tracking_id: str, reason: str) -> Produce | Drop:
    """End a job REJECTED (validation or AWS refused it)."""
    now = utcnow()
    _apply(rt, tracking_id, lambda r: tracking.finish(r, JobStatus.REJECTED, reason, now))
    return claim_result(rt.store, rt.store.get(tracking_id))


def reject_unstored(
    rt: Runtime, tracking_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str
) -> Produce | Drop:
    """Record a message that failed validation in the worker, so the refusal is visible."""
    given = {**dict(zip(POSITIONAL, args, strict=False)), **kwargs}
    record = JobRecord(
        tracking_id=tracking_id,
        **{name: str(given.get(name, "")) for name in POSITIONAL},
        poll=rt.settings.poll_policy,
    )
    rt.store.create(tracking.new_record(record, utcnow()))
    return reject(rt, tracking_id, reason)


def submit(rt: Runtime, record: JobRecord, look_first: bool = False) -> JobRecord:
    """Submit the record's job to Batch and record it SUBMITTED, exactly once.

    The attempt takes a lease in the record before SubmitJob, so concurrent deliveries never
    call it together (the loser gets SubmitInProgress). An attempt that finds an earlier
    attempt's note (it died, or its answer was lost, after SubmitJob may have acted), or is told
    to ``look_first`` (a redelivered message, or a record the worker had to make again: a
    failover may have lost the note), first looks for the job by name and tracking-id tag, and
    submits only if there is none. Raises BatchUnavailable to retry; returns the current record
    (maybe ended: cancelled meanwhile).
    """
    tracking_id = record.tracking_id
    batch = rt.batch_for(record)
    ended = resubmission.replaced(record)
    if ended is not None and ended.status is JobStatus.TIMED_OUT:  # given up in RUNNABLE: stop it
        replaced = record.model_copy(update={"job_id": ended.job_id})
        _terminate_quietly(rt, replaced, f"poller: {ended.status_reason}")
    if record.submission.started_at is not None or look_first:
        earlier = {submission.job_id for submission in record.submissions}
        found = batch.find_tagged(
            record.job_queue, record.job_name, TRACKING_TAG, tracking_id, exclude=earlier
        )
        if found is not None:
            logger.warning(
                "job %s: found Batch job %s from an interrupted submit", tracking_id, found
            )
            return _record_submitted(rt, record, found, batch)
    target = budget.target_of(rt, record)
    budget.take_submit_turn(rt, record, target)  # CallDeferred: not now (before the lease)
    started = utcnow()
    lease = timedelta(seconds=rt.settings.submit_lease)
    if rt.store.update(tracking_id, lambda r: tracking.submitting(r, started, lease)) is None:
        current = rt.store.get(tracking_id)
        if current.is_terminal or current.job_id is not None:
            return current
        raise SubmitInProgress(f"job {tracking_id}: another attempt is calling SubmitJob")
    # The lease (and the note that an attempt started) is what stops a redelivery submitting
    # the job again: it must outlive a failover, so a replica should hold it before SubmitJob.
    wait = rt.settings.lease_replication_timeout
    if not rt.store.confirm_replicated(wait):
        logger.warning(
            "job %s: no replica confirmed its SubmitJob lease within %.1fs; submitting anyway "
            "(a failover now could let a redelivery submit it again)", tracking_id, wait,
        )  # fmt: skip
    # A process paused since it took the lease (a frozen host) must not call SubmitJob once the
    # lease is over: another attempt may be submitting the job by now.
    if utcnow() >= started + lease:
        raise SubmitInProgress(f"job {tracking_id}: its SubmitJob lease ran out before the call")
    try:
        job_id = batch.submit(
            JobSpec.model_validate(record.spec), extra_tags={TRACKING_TAG: tracking_id}
        )
    except PollerError as err:
        if isinstance(err, BatchThrottled):
            budget.throttled(rt, "SubmitJob", target)
        # Throttled or refused: nothing was created. 5xx or no answer: maybe it was.
        created = None if type(err) is BatchUnavailable else False
        rt.store.update(tracking_id, lambda r: tracking.submit_failed(r, created=created))
        raise
    return _record_submitted(rt, record, job_id, batch)


def _record_submitted(rt: Runtime, record: JobRecord, job_id: str, batch: Batch) -> JobRecord:
    now = utcnow()
    # Where SubmitJob put it: its client's region and the account its ARN named
    where = (
        getattr(batch, "region", None) or rt.region_for(record),
        getattr(batch, "account", None),
    )
    delay, by_events = next_check(rt, record, where=where)
    first_check = now + timedelta(seconds=delay)
    logger.info("job %s: submitted as Batch job %s", record.tracking_id, job_id)
    change = _apply(
        rt,
        record.tracking_id,
        lambda r: tracking.submitted(
            r, job_id, now, first_check, awaits_events=by_events, where=where
        ),
    )
    current = _current(rt, record.tracking_id, change)
    if change is None and current.is_terminal and current.job_id != job_id:
        # Cancelled while SubmitJob was under way: do not leave that Batch job running.
        _terminate_quietly(
            rt, current.model_copy(update={"job_id": job_id}), "cancelled before submission"
        )
    elif change is None and current.job_id not in (None, job_id):
        # Another attempt submitted the job meanwhile (this one was paused past its lease, in
        # the call): the record follows that one; this Batch job is a duplicate, stopped now.
        logger.warning(
            "job %s: Batch job %s duplicates %s (its attempt outlived its lease); terminating it",
            record.tracking_id, job_id, current.job_id,
        )  # fmt: skip
        duplicate = current.model_copy(update={"job_id": job_id})
        _terminate_quietly(rt, duplicate, "poller: a duplicate submission of the same job")
    return current


def check(rt: Runtime, tracking_id: str, check_no: int) -> CheckOutcome:
    """Run check number ``check_no``: describe the job, store what changed, decide what is next.

    Raises BatchUnavailable when AWS could not answer (the check is then retried as it is),
    ObservationPending when another check is describing the job right now.
    """
    record = rt.store.get(tracking_id)
    if record.celery.revoked:
        return revocation.Revoked(revocation.apply(rt, tracking_id) or record)
    if record.is_terminal:
        return claim_result(rt.store, record)
    if record.resubmitting:  # any delivery may submit it: the lease lets one through
        return resubmit(rt, record)
    if record.schedule.checks != check_no:
        return Drop(record, f"check {check_no} was already done")
    reason = tracking.give_up_reason(record, utcnow())
    if reason is not None:
        return give_up(rt, record, reason)
    assert record.job_id is not None, "a job is checked only after it was submitted"
    observed = coalesce.observe(rt, record)
    for other, view in observed.others_ended:
        _apply_observation(rt, other, view)
    # this check is number record.schedule.checks
    delay, by_events = next_check(rt, record, record.schedule.checks + 1)
    now = utcnow()
    change = _apply(
        rt,
        tracking_id,
        lambda r: tracking.checked(
            r,
            observed.view,
            check_no=check_no,
            now=now,
            next_check_at=now + timedelta(seconds=delay),
            limits=rt.limits,
            awaits_events=by_events,
        ),
    )
    record = _current(rt, tracking_id, change)
    if change is None and record.resubmitting:  # another check's call saw it end meanwhile
        return resubmit(rt, record)
    if change is None and not record.is_terminal:  # another delivery of it got there first
        return Drop(record, f"check {check_no} was already done")
    if change is not None and record.status is JobStatus.TIMED_OUT:
        _terminate_quietly(rt, record, record.status_reason or "poller gave up")
    if record.is_terminal:
        if change is not None:
            logger.info(
                "job %s: Batch job %s ended %s", tracking_id, record.job_id, record.status.value
            )
        return claim_result(rt.store, record)
    if record.resubmitting:
        return resubmit(rt, record)
    delay = _until_next(record, now, delay, rt.limits)
    logger.debug("job %s: %s, next check in %.1fs", tracking_id, record.status.value, delay)
    return Reschedule(record, delay)


def _until_next(record: JobRecord, now: datetime, delay: float, limits: Limits) -> float:
    """The delay to the next check, brought forward to a RUNNABLE job's ``max_runnable``."""
    deadline = tracking.runnable_deadline(record, now, limits)
    return delay if deadline is None else max(0.5, min(delay, (deadline - now).total_seconds()))


def resubmit(rt: Runtime, record: JobRecord) -> CheckOutcome:
    """Submit the new Batch job of a job being resubmitted (:mod:`poller.core.resubmission`);
    Reschedule its first check. Raises like :func:`submit` (the check is then retried)."""
    ended = record.submissions[-1]
    try:
        current = submit(rt, record)
    except (SubmitRejected, InvalidJobSpec, BatchMisconfigured) as err:
        now = utcnow()
        why = f"resubmission refused: {err}"
        change = _apply(rt, record.tracking_id, lambda r: tracking.resubmit_refused(r, why, now))
        return claim_result(rt.store, _current(rt, record.tracking_id, change))
    if current.is_terminal:  # cancelled meanwhile
        return claim_result(rt.store, current)
    kind = ended.failure_kind.value if ended.failure_kind else "?"
    logger.warning(
        "job %s: Batch job %s ended (%s); resubmitted as Batch job %s on %s",
        record.tracking_id, ended.job_id, kind, current.job_id, current.job_queue,
    )  # fmt: skip
    due = current.schedule.next_check_at or utcnow()
    return Reschedule(current, max(0.0, (due - utcnow()).total_seconds()))


def _apply_observation(rt: Runtime, record: JobRecord, view: BatchJobView) -> None:
    """Apply another job's observation made by a coalesced check, as that job's check would
    (not counted: that job's own check message keeps its number)."""
    now = utcnow()
    _apply(
        rt,
        record.tracking_id,
        lambda r: tracking.checked(
            r,
            view,
            check_no=r.schedule.checks,
            now=now,
            next_check_at=now,
            limits=rt.limits,
            own=False,
        ),
    )


def claim_result(store: JobStore, record: JobRecord) -> Produce | Drop:
    """For a finished job: Produce if this delivery is the one to produce its Celery result
    (it claims that in the record), else Drop. The only place a result is claimed: every path
    that produces one comes here (a job that ends without it, seen finished by another job's
    check or cancelled before submission, is claimed by its own task's delivery)."""
    change = store.update(record.tracking_id, tracking.resolve)
    if change is None:
        return Drop(record, "its result was produced already")
    return Produce(change.record)


def refused(rt: Runtime, tracking_id: str, err: BatchMisconfigured) -> tuple[JobRecord, str | None]:
    """Record that AWS refused poller's configuration for this job (logged once per job).

    Returns the record, and the reason to end the job with once it has waited
    ``aws_config_grace`` on such errors, else None (retry later: it may be fixed meanwhile).
    """
    now = utcnow()
    change = rt.store.update(tracking_id, lambda r: tracking.aws_refused(r, str(err), now))
    record = _current(rt, tracking_id, change)
    if change is not None and record.schedule.waiting_since == now:
        logger.error(
            "job %s: AWS refused poller's configuration, retrying for up to %.0fs: %s",
            tracking_id, rt.settings.aws_config_grace, err,
        )  # fmt: skip
    if not tracking.refused_too_long(record, now, rt.settings.aws_config_grace):
        return record, None
    grace = rt.settings.aws_config_grace
    return record, f"AWS refused poller's configuration for {grace:.0f}s: {err}"


def reschedule(rt: Runtime, tracking_id: str, delay: float) -> None:
    """Note when a retried message (after a transient AWS error) is due, for the reconciler."""
    when = utcnow() + timedelta(seconds=delay)
    rt.store.update(tracking_id, lambda r: tracking.rescheduled(r, when))


def remember_canvas(rt: Runtime, tracking_id: str, canvas: dict[str, Any]) -> None:
    """Store the job task's canvas links, so that a re-sent check keeps the chain going."""
    rt.store.update(tracking_id, lambda r: tracking.canvas_recorded(r, canvas))


def give_up(rt: Runtime, record: JobRecord, reason: str) -> Produce | Drop:
    """End an active job TIMED_OUT; terminate the Batch job when its policy says so."""
    now = utcnow()
    change = _apply(
        rt, record.tracking_id, lambda r: tracking.finish(r, JobStatus.TIMED_OUT, reason, now)
    )
    record = _current(rt, record.tracking_id, change)
    if change is not None:
        logger.warning("job %s: %s", record.tracking_id, reason)
        if record.poll.terminate_on_give_up:
            _terminate_quietly(rt, record, f"poller: {reason}")
    return claim_result(rt.store, record)


def _terminate_quietly(rt: Runtime, record: JobRecord, reason: str) -> None:
    if record.job_id is None:
        return
    try:
        budget.take(rt, "TerminateJob", budget.target_of(rt, record), mode="force")
        rt.batch_for(record).terminate(record.job_id, reason[:1000])
    except PollerError as err:  # the record already says why poller stopped; log and go on
        logger.error(
            "job %s: could not terminate Batch job %s: %s", record.tracking_id, record.job_id, err
        )


def cancel(rt: Runtime, tracking_id: str, reason: str) -> JobRecord:
    """Stop a job: terminate its Batch job (the next check records FAILED with the reason).

    A job not yet submitted ends FAILED at once, and its submit task will not submit it (that
    task, still queued, produces the result).
    """
    record = rt.store.get(tracking_id)
    if record.is_terminal:
        return record
    if record.job_id is None:
        why = f"cancelled before submission: {reason}"
        now = utcnow()
        change = _apply(rt, tracking_id, lambda r: tracking.finish(r, JobStatus.FAILED, why, now))
        return _current(rt, tracking_id, change)
    budget.take(rt, "TerminateJob", budget.target_of(rt, record), mode="force")
    rt.batch_for(record).terminate(record.job_id, reason)
    logger.info("job %s: Batch job %s terminated: %s", tracking_id, record.job_id, reason)
    change = _apply(rt, tracking_id, lambda r: tracking.cancel_requested(r, reason))
    return _current(rt, tracking_id, change)


def outcome(record: JobRecord) -> JobResult:
    """The Celery result of a finished job: its JobResult for SUCCEEDED, else the matching
    error, carrying the job's ids, status, reason, exit code and failure kind."""
    if record.status is JobStatus.SUCCEEDED:
        return record.result()
    error = {
        JobStatus.TIMED_OUT: JobTimedOut,
        JobStatus.REJECTED: SubmitRejected,
    }.get(record.status, JobFailed)
    raise error(
        f"job {record.tracking_id}: {record.describe_failure()}",
        tracking_id=record.tracking_id,
        job_id=record.job_id,
        status=record.status.value,
        status_reason=record.status_reason,
        exit_code=record.batch.exit_code,
        failure_kind=record.failure_kind.value if record.failure_kind is not None else None,
    )


def stamp(when: datetime | None) -> str:
    """A short human form of a timestamp for logs and Flower."""
    return when.isoformat(timespec="seconds") if when else "-"
