"""The job lifecycle as plain functions: accept, submit, check, cancel. No Celery here.

The Celery tasks in :mod:`poller.tasks` call these and turn their results into Celery actions
(replace, retry, return, raise). Each function stores its change through the store's optimistic
transaction, then sends the change's signals, so signals follow stored facts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from poller import coalesce, signals, tracking
from poller.backoff import compute_delay
from poller.batch import BatchClient, BatchJobView, check_request
from poller.errors import (
    BatchMisconfigured,
    BatchUnavailable,
    InvalidJobSpec,
    JobFailed,
    JobTimedOut,
    PollerError,
    SubmitInProgress,
    SubmitRejected,
)
from poller.models import (
    JobRecord,
    JobResult,
    JobSpec,
    JobStatus,
    PollPolicy,
    utcnow,
    validate_poll,
    validate_spec,
)
from poller.settings import Settings, get_settings
from poller.store import Change, JobStore

logger = logging.getLogger(__name__)

TRACKING_TAG = "poller:tracking-id"  # tag on every Batch job poller submits, to find it again
POSITIONAL = ("job_name", "job_queue", "job_definition")  # submit_job's positional arguments


@dataclass
class Runtime:
    """What the lifecycle needs: settings, the job store and a Batch client."""

    settings: Settings
    store: JobStore
    batch: BatchClient

    @property
    def limits(self) -> tracking.Limits:
        """The check's time limits, from settings."""
        return tracking.Limits(
            not_found_grace=self.settings.not_found_grace,
            stuck_after=self.settings.stuck_after,
            give_up_when_stuck=self.settings.give_up_when_stuck,
        )


def store_from_settings(settings: Settings) -> JobStore:
    """A JobStore on the configured Redis."""
    return JobStore.from_url(
        settings.effective_redis_url, prefix=settings.key_prefix, record_ttl=settings.record_ttl
    )


@lru_cache(maxsize=1)
def get_store() -> JobStore:
    """This process's job store, created on first use (after a worker forks, never before)."""
    return store_from_settings(get_settings())


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    """This process's runtime, created on first use (after a worker forks, never before)."""
    settings = get_settings()
    return Runtime(
        settings=settings,
        store=get_store(),
        batch=BatchClient.create(
            max_attempts=settings.aws_max_attempts, read_timeout=settings.submit_lease - 5
        ),
    )


def default_poll(settings: Settings) -> dict[str, Any]:
    """The poll policy fields from settings, as PollPolicy keyword arguments."""
    return {
        "initial_delay": settings.poll_initial_delay,
        "max_delay": settings.poll_max_delay,
        "factor": settings.poll_factor,
        "jitter": settings.poll_jitter,
        "max_checks": settings.poll_max_checks,
        "max_wait": settings.poll_max_wait,
        "terminate_on_give_up": settings.poll_terminate_on_give_up,
    }


def validate(
    settings: Settings, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[JobSpec, PollPolicy, str | None]:
    """Validate submit_job's arguments; InvalidJobSpec names the first bad field."""
    fields = dict(kwargs)
    poll = fields.pop("poll", None)
    idempotency_key = fields.pop("idempotency_key", None)
    positional = dict(zip(POSITIONAL, args, strict=False))
    if len(args) > len(POSITIONAL):
        positional["extra positional arguments"] = args[len(POSITIONAL) :]
    spec = validate_spec(**{**positional, **fields})
    check_request(spec)  # nested AWS values against botocore's model of SubmitJob
    policy = validate_poll(poll, default_poll(settings), settings.visibility_timeout)
    if idempotency_key is not None and not isinstance(idempotency_key, str):
        raise InvalidJobSpec(
            "invalid job spec: idempotency_key: must be a string", "idempotency_key"
        )
    return spec, policy, idempotency_key


def next_delay(record: JobRecord, check_number: int | None = None) -> float:
    """Seconds until check number ``check_number`` (default: the next, ``record.checks``)."""
    poll = record.poll
    return compute_delay(
        record.checks if check_number is None else check_number,
        initial_delay=poll.initial_delay,
        max_delay=poll.max_delay,
        factor=poll.factor,
        jitter=poll.jitter,
    )


def _commit(rt: Runtime, tracking_id: str, change: Change | None) -> JobRecord:
    """Send the signals of a stored change and return the current record."""
    if change is None:
        return rt.store.get(tracking_id)
    signals.send(change.events)
    return change.record


def accept(
    store: JobStore,
    tracking_id: str,
    spec: JobSpec,
    policy: PollPolicy,
    key: str | None,
    canvas: dict[str, Any] | None = None,
    due: datetime | None = None,
) -> JobRecord:
    """Create the job's QUEUED record (or return the record a redelivery or the key already has).

    Called in the caller's process before the message is sent, so a tracking id can be read
    at once, and again by the worker (a no-op then, unless the message bypassed apply_async).
    """
    record = JobRecord(
        tracking_id=tracking_id,
        job_name=spec.job_name,
        job_queue=spec.job_queue,
        job_definition=spec.job_definition,
        spec=spec.model_dump(exclude_none=True),
        poll=policy,
        idempotency_key=key,
        canvas=canvas,
        # Indexed as due (now, or at its countdown): if its message is lost, the reconciler
        # re-sends it after the grace.
        next_check_at=due or utcnow(),
    )
    return store.create(tracking.new_record(record, utcnow()), idempotency_key=key)


def abandon(store: JobStore, tracking_id: str, reason: str) -> None:
    """End a submission whose message could not be sent (the caller sees the error)."""
    store.update(
        tracking_id,
        lambda r: tracking.finish(r, JobStatus.REJECTED, reason, utcnow(), resolve=True),
    )


def reject(rt: Runtime, tracking_id: str, reason: str) -> JobRecord:
    """End a job REJECTED (validation or AWS refused it) and send its signals."""
    change = rt.store.update(
        tracking_id,
        lambda r: tracking.finish(r, JobStatus.REJECTED, reason, utcnow(), resolve=True),
    )
    return _commit(rt, tracking_id, change)


def reject_unstored(
    rt: Runtime, tracking_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str
) -> None:
    """Record a message that failed validation in the worker, so the refusal is visible."""
    given = {**dict(zip(POSITIONAL, args, strict=False)), **kwargs}
    record = JobRecord(
        tracking_id=tracking_id,
        **{name: str(given.get(name, "")) for name in POSITIONAL},
        poll=PollPolicy(**default_poll(rt.settings)),
    )
    rt.store.create(tracking.new_record(record, utcnow()))
    reject(rt, tracking_id, reason)


def submit(rt: Runtime, record: JobRecord) -> JobRecord:
    """Submit the record's job to Batch and record it SUBMITTED, exactly once.

    The attempt takes a lease in the record before SubmitJob, so concurrent deliveries never
    call it together (the loser gets SubmitInProgress). An attempt that finds an earlier
    attempt's note (it died, or its answer was lost, after SubmitJob may have acted) first looks
    for the job by name and tracking-id tag, and submits only if there is none. Raises
    BatchUnavailable to retry; returns the current record (maybe ended: cancelled meanwhile).
    """
    tracking_id = record.tracking_id
    if record.submit_started_at is not None:
        found = rt.batch.find_tagged(record.job_queue, record.job_name, TRACKING_TAG, tracking_id)
        if found is not None:
            logger.warning(
                "job %s: found Batch job %s from an interrupted submit", tracking_id, found
            )
            return _record_submitted(rt, record, found)
    started = utcnow()
    lease = timedelta(seconds=rt.settings.submit_lease)
    if rt.store.update(tracking_id, lambda r: tracking.submitting(r, started, lease)) is None:
        current = rt.store.get(tracking_id)
        if current.is_terminal or current.job_id is not None:
            return current
        raise SubmitInProgress(f"job {tracking_id}: another attempt is calling SubmitJob")
    try:
        job_id = rt.batch.submit(
            JobSpec.model_validate(record.spec), extra_tags={TRACKING_TAG: tracking_id}
        )
    except PollerError as err:
        # Throttled or refused: nothing was created. 5xx or no answer: maybe it was.
        created = None if type(err) is BatchUnavailable else False
        rt.store.update(tracking_id, lambda r: tracking.submit_failed(r, created=created))
        raise
    return _record_submitted(rt, record, job_id)


def _record_submitted(rt: Runtime, record: JobRecord, job_id: str) -> JobRecord:
    now = utcnow()
    first_check = now + timedelta(seconds=next_delay(record))
    logger.info("job %s: submitted as Batch job %s", record.tracking_id, job_id)
    change = rt.store.update(
        record.tracking_id, lambda r: tracking.submitted(r, job_id, now, first_check)
    )
    current = _commit(rt, record.tracking_id, change)
    if change is None and current.is_terminal and current.job_id != job_id:
        # Cancelled while SubmitJob was under way: do not leave that Batch job running.
        _terminate_quietly(
            rt, current.model_copy(update={"job_id": job_id}), "cancelled before submission"
        )
    return current


@dataclass(frozen=True)
class CheckResult:
    """What a check decided: the record, and the countdown of the next check (None: done)."""

    record: JobRecord
    next_delay: float | None
    stale: bool = False


def check(rt: Runtime, tracking_id: str, check_no: int) -> CheckResult:
    """Run check number ``check_no``: describe the job, store what changed, decide what is next.

    Raises BatchUnavailable when AWS could not answer (the check is then retried as it is).
    """
    record = rt.store.get(tracking_id)
    if record.is_terminal:
        return claim_result(rt, record)
    if record.checks != check_no:
        return CheckResult(record, None, stale=True)
    now = utcnow()
    reason = tracking.give_up_reason(record, now)
    if reason is not None:
        return CheckResult(give_up(rt, record, reason), None)
    assert record.job_id is not None, "a job is checked only after it was submitted"
    view = coalesce.observe(rt, record)
    delay = next_delay(record, record.checks + 1)  # this check is number record.checks
    now = utcnow()
    change = rt.store.update(
        tracking_id,
        lambda r: tracking.checked(
            r,
            view,
            check_no=check_no,
            now=now,
            next_check_at=now + timedelta(seconds=delay),
            limits=rt.limits,
        ),
    )
    if change is None:  # another delivery of this check, or another job's check, got there first
        current = rt.store.get(tracking_id)
        if current.is_terminal:
            return claim_result(rt, current)
        return CheckResult(current, None, stale=True)
    record = _commit(rt, tracking_id, change)
    if record.status is JobStatus.TIMED_OUT:
        _terminate_quietly(rt, record, record.status_reason or "poller gave up")
    if record.is_terminal:
        logger.info(
            "job %s: Batch job %s ended %s", tracking_id, record.job_id, record.status.value
        )
        return CheckResult(record, None)
    logger.debug("job %s: %s, next check in %.1fs", tracking_id, record.status.value, delay)
    return CheckResult(record, delay)


def refused(rt: Runtime, tracking_id: str, err: BatchMisconfigured) -> tuple[JobRecord, str | None]:
    """Record that AWS refused poller's configuration for this job (logged once per job).

    Returns the record, and the reason to end the job with once it has waited
    ``aws_config_grace`` on such errors, else None (retry later: it may be fixed meanwhile).
    """
    now = utcnow()
    change = rt.store.update(tracking_id, lambda r: tracking.aws_refused(r, str(err), now))
    record = change.record if change is not None else rt.store.get(tracking_id)
    if change is not None and record.waiting_since == now:
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


def apply_observation(rt: Runtime, record: JobRecord, view: BatchJobView) -> None:
    """Apply another job's observation made by a coalesced check, as that job's check would."""
    now = utcnow()
    change = rt.store.update(
        record.tracking_id,
        lambda r: tracking.checked(
            r, view, check_no=r.checks, now=now, next_check_at=now, limits=rt.limits, own=False
        ),
    )
    if change is not None:
        _commit(rt, record.tracking_id, change)


def claim_result(rt: Runtime, record: JobRecord) -> CheckResult:
    """For a finished job: produce its result if no delivery did yet, else end as stale."""
    change = rt.store.update(record.tracking_id, tracking.resolve)
    if change is None:
        return CheckResult(record, None, stale=True)
    return CheckResult(change.record, None)


def give_up(rt: Runtime, record: JobRecord, reason: str) -> JobRecord:
    """End an active job TIMED_OUT; terminate the Batch job when its policy says so."""
    change = rt.store.update(
        record.tracking_id,
        lambda r: tracking.finish(r, JobStatus.TIMED_OUT, reason, utcnow(), resolve=True),
    )
    record = _commit(rt, record.tracking_id, change)
    logger.warning("job %s: %s", record.tracking_id, reason)
    if record.poll.terminate_on_give_up:
        _terminate_quietly(rt, record, f"poller: {reason}")
    return record


def _terminate_quietly(rt: Runtime, record: JobRecord, reason: str) -> None:
    if record.job_id is None:
        return
    try:
        rt.batch.terminate(record.job_id, reason[:1000])
    except PollerError as err:  # the record already says why poller stopped; log and go on
        logger.error(
            "job %s: could not terminate Batch job %s: %s", record.tracking_id, record.job_id, err
        )


def cancel(rt: Runtime, tracking_id: str, reason: str) -> JobRecord:
    """Stop a job: terminate its Batch job (the next check records FAILED with the reason).

    A job not yet submitted ends FAILED at once, and its submit task will not submit it.
    """
    record = rt.store.get(tracking_id)
    if record.is_terminal:
        return record
    if record.job_id is None:
        change = rt.store.update(
            tracking_id,
            lambda r: tracking.finish(
                r,
                JobStatus.FAILED,
                f"cancelled before submission: {reason}",
                utcnow(),
                resolve=False,  # the submit task, still queued, produces the result
            ),
        )
        return _commit(rt, tracking_id, change)
    rt.batch.terminate(record.job_id, reason)
    logger.info("job %s: Batch job %s terminated: %s", tracking_id, record.job_id, reason)
    change = rt.store.update(tracking_id, lambda r: tracking.cancel_requested(r, reason))
    return _commit(rt, tracking_id, change)


def outcome(record: JobRecord) -> JobResult:
    """The Celery result of a finished job: its JobResult for SUCCEEDED, else the matching error."""
    message = f"job {record.tracking_id}: {record.describe_failure()}"
    if record.status is JobStatus.SUCCEEDED:
        return record.result()
    if record.status is JobStatus.TIMED_OUT:
        raise JobTimedOut(message)
    if record.status is JobStatus.REJECTED:
        raise SubmitRejected(message)
    raise JobFailed(message)


def stamp(when: datetime | None) -> str:
    """A short human form of a timestamp for logs and Flower."""
    return when.isoformat(timespec="seconds") if when else "-"
