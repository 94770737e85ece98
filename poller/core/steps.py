"""The submit and check paths, each ending in one :data:`Step`: what the task does next.

:mod:`poller.tasks` turns a step into Celery's action in one place: :class:`Retry` into
``Task.retry``, :class:`HandOver` into ``Task.replace`` by the first check, :class:`AwaitEvents`,
:class:`~poller.core.lifecycle.Drop` and :class:`~poller.core.revocation.Revoked` into
``Ignore``, :class:`~poller.core.lifecycle.Produce` into the job's result (or its error). Every
error AWS or a concurrent delivery causes is decided here, as data: the tasks hold no policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from poller.core import lifecycle, revocation
from poller.core.backoff import compute_delay
from poller.core.lifecycle import Drop, Produce, Reschedule
from poller.core.ports import Runtime
from poller.core.revocation import Revoked
from poller.errors import (
    BatchMisconfigured,
    BatchUnavailable,
    CallDeferred,
    CheckScheduled,
    InvalidJobSpec,
    ObservationPending,
    PollerError,
    SubmitInProgress,
    SubmitRejected,
)
from poller.models import JobRecord, utcnow
from poller.settings import Settings

logger = logging.getLogger(__name__)

PENDING_RETRY_SECONDS = 0.5  # wait for a concurrent coalesced describe to store its result
SUBMIT_BUSY_RETRY_SECONDS = 5.0  # another attempt holds the SubmitJob lease
MAX_SUBMIT_RETRIES = 20  # transient AWS errors on submit before the job ends REJECTED


@dataclass(frozen=True)
class Retry:
    """Send this task's message again in ``delay`` seconds.

    ``args``: the message's arguments then (None: as they are); ``wait``: shown in Flower as
    why it waits, without a traceback (a scheduled check, a budget turn); ``record``: the job,
    for Flower's name of the task.
    """

    delay: float
    args: tuple[Any, ...] | None = None
    wait: CheckScheduled | None = None
    record: JobRecord | None = None


@dataclass(frozen=True)
class HandOver:
    """The job is submitted: continue as its first check in ``delay`` seconds (the check
    inherits the task id, so the result and the canvas wait for the Batch job)."""

    record: JobRecord
    delay: float


@dataclass(frozen=True)
class AwaitEvents:
    """End the task without a result and without a countdown message: Batch events carry the
    job (its end sends its check, which produces the result and continues the canvas), and the
    reconciler sends its check at ``next_check_at`` if none came (JobRecord.schedule.awaits_events)."""

    record: JobRecord


Step = Retry | HandOver | AwaitEvents | Produce | Drop | Revoked
"""What a submit or check task does next."""


def aws_retry_delay(settings: Settings, failures: int) -> float:
    """Backoff after ``failures`` consecutive transient AWS errors, capped like the checks."""
    return compute_delay(
        min(failures, 16),
        initial_delay=settings.aws_retry_delay,
        max_delay=settings.poll_max_delay,
        jitter=settings.poll_jitter,
    )


def _noted(rt: Runtime, tracking_id: str, delay: float, args: tuple[Any, ...] | None) -> Retry:
    """Retry in ``delay`` seconds, noted in the record for the reconciler (a retry after an
    AWS error is not a scheduled check)."""
    lifecycle.reschedule(rt, tracking_id, delay)
    return Retry(delay, args)


def _refused(outcome: Produce | Drop, error: PollerError) -> Produce | Drop:
    """A refusal whose error says more than the record: the result is ``error`` itself."""
    return Produce(outcome.record, error) if isinstance(outcome, Produce) else outcome


def refuse_unstored(
    rt: Runtime,
    tracking_id: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: InvalidJobSpec,
) -> Produce | Drop:
    """A message that failed validation in the worker (it was sent by name): recorded
    REJECTED, so the refusal is visible; the result is ``error``."""
    return _refused(lifecycle.reject_unstored(rt, tracking_id, args, kwargs, str(error)), error)


def submit(
    rt: Runtime, record: JobRecord, canvas: dict[str, Any], retries: int, look_first: bool = False
) -> Step:
    """Submit an admitted job (its ``retries``-th delivery), then hand over to its first check.

    ``canvas``: the task's canvas links, stored before SubmitJob (the job's end event may send
    its check at once, which must continue the canvas). ``look_first``: look for a Batch job
    an earlier delivery may have created before submitting (see lifecycle.submit).
    """
    tracking_id = record.tracking_id
    if record.celery.revoked:  # revoked before a worker that remembers it took the submission
        return Revoked(revocation.apply(rt, tracking_id) or record)
    if record.is_terminal:  # cancelled before submission, or a redelivered submit
        return lifecycle.claim_result(rt.store, record)
    if canvas:
        lifecycle.remember_canvas(rt, tracking_id, canvas)
    if record.job_id is None:
        try:
            record = lifecycle.submit(rt, record, look_first=look_first)
        except (InvalidJobSpec, SubmitRejected) as err:  # a target not allowed; AWS refused it
            return _refused(lifecycle.reject(rt, tracking_id, str(err)), err)
        except BatchMisconfigured as err:
            _, reason = lifecycle.refused(rt, tracking_id, err)
            if reason is not None:
                return lifecycle.reject(rt, tracking_id, reason)
            return _noted(rt, tracking_id, aws_retry_delay(rt.settings, retries), None)
        except CallDeferred as err:  # the fleet's call budget: wait our turn, not a failure
            logger.debug("job %s: %s", tracking_id, err)
            return Retry(err.wait)  # its turn is noted in the record for the reconciler
        except BatchUnavailable as err:
            failures = rt.store.get(tracking_id).submission.failures
            if failures >= MAX_SUBMIT_RETRIES:
                return lifecycle.reject(rt, tracking_id, f"AWS Batch unavailable: {err}")
            delay = aws_retry_delay(rt.settings, failures)
            logger.warning("job %s: submit will be retried in %.1fs: %s", tracking_id, delay, err)
            return _noted(rt, tracking_id, delay, None)
        except SubmitInProgress as err:
            logger.info("job %s: %s; trying again shortly", tracking_id, err)
            return Retry(SUBMIT_BUSY_RETRY_SECONDS)
        if record.is_terminal:  # cancelled while being submitted
            return lifecycle.claim_result(rt.store, record)
    if record.schedule.awaits_events:
        return AwaitEvents(record)
    # When the record says the first check is due (it also tells the reconciler)
    due = record.schedule.next_check_at or utcnow()
    return HandOver(record, max(0.0, (due - utcnow()).total_seconds()))


def check(rt: Runtime, tracking_id: str, check_no: int, failures: int) -> Step:
    """Run check number ``check_no`` after ``failures`` consecutive transient AWS errors."""
    same = (tracking_id, check_no, failures)
    again = (tracking_id, check_no, failures + 1)
    try:
        outcome = lifecycle.check(rt, tracking_id, check_no)
    except InvalidJobSpec as err:  # its target: a profile no longer (or never) allowed
        return lifecycle.give_up(rt, rt.store.get(tracking_id), str(err))
    except BatchMisconfigured as err:
        record, reason = lifecycle.refused(rt, tracking_id, err)
        if reason is not None:
            return lifecycle.give_up(rt, record, reason)
        return _noted(rt, tracking_id, aws_retry_delay(rt.settings, failures), again)
    except BatchUnavailable as err:
        # Not a check: throttling and 5xx must not use up the job's max_checks.
        delay = aws_retry_delay(rt.settings, failures)
        logger.warning(
            "job %s: check %d will be retried in %.1fs: %s", tracking_id, check_no, delay, err
        )
        return _noted(rt, tracking_id, delay, again)
    except CallDeferred as err:  # the fleet's call budget: this check's turn comes later
        lifecycle.reschedule(rt, tracking_id, err.wait)
        return Retry(err.wait, same, CheckScheduled(f"job {tracking_id}: {err}"))
    except SubmitInProgress as err:  # another delivery is resubmitting the job
        logger.info("job %s: %s; trying again shortly", tracking_id, err)
        return Retry(SUBMIT_BUSY_RETRY_SECONDS, same)
    except ObservationPending:
        # Another check is describing this job right now: take its observation shortly
        pending = CheckScheduled(
            f"another check is describing job {tracking_id}; check {check_no + 1} takes its "
            f"observation in {PENDING_RETRY_SECONDS:.1f}s"
        )
        return Retry(PENDING_RETRY_SECONDS, same, pending)
    if not isinstance(outcome, Reschedule):
        return outcome
    record, delay = outcome.record, outcome.delay
    if record.schedule.awaits_events:
        return AwaitEvents(record)
    # The next check's number: this one's plus one, or this one's when it only resubmitted
    number = len(record.submissions)
    nth = f" (submission {number})" if number > 1 else ""
    scheduled = CheckScheduled(
        f"Batch job {record.job_id}{nth} is {record.status.value}; check {record.schedule.checks + 1} "
        f"in {delay:.1f}s at {lifecycle.stamp(utcnow() + timedelta(seconds=delay))}"
    )
    return Retry(delay, (tracking_id, record.schedule.checks, 0), scheduled, record)
