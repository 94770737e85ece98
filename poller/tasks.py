"""Thin Celery tasks: unpack arguments, call :mod:`poller.core.lifecycle`, decide retry or finish.

``submit_job`` submits the Batch job and hands over to ``check_job`` with ``Task.replace``, so the
check inherits the submission's task id (the tracking id): ``submit_job.delay(...).get()`` and
canvas callbacks wait for the Batch job itself. ``check_job`` reschedules itself with
``self.retry(countdown=...)``; no worker ever sleeps to wait.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, cast

import redis
from celery import Task
from celery.exceptions import Ignore
from kombu.utils import json as kombu_json
from kombu.utils.uuid import uuid

from poller.app import app
from poller.core import admission, lifecycle, revocation
from poller.core.backoff import compute_delay
from poller.core.lifecycle import Drop, Produce, Reschedule
from poller.core.redaction import kwargs_repr, redacted
from poller.core.revocation import Revoked
from poller.core.runtime import Runtime, get_runtime, get_store
from poller.errors import (
    BatchMisconfigured,
    BatchUnavailable,
    CallDeferred,
    CheckScheduled,
    DuplicateSubmission,
    InvalidJobSpec,
    JobFailed,
    JobTimedOut,
    ObservationPending,
    SubmitInProgress,
    SubmitRejected,
)
from poller.models import JobRecord, JobResult, PollOptions, ResubmitOptions, utcnow
from poller.monitoring import flower_view
from poller.settings import get_settings

logger = logging.getLogger(__name__)

PENDING_RETRY_SECONDS = 0.5  # wait for a concurrent coalesced describe to store its result
SUBMIT_BUSY_RETRY_SECONDS = 5.0  # another attempt holds the SubmitJob lease
MAX_SUBMIT_RETRIES = 20  # transient AWS errors on submit before the job ends REJECTED
# Redis unreachable for a moment (restart, failover): retry the task as it is, with backoff,
# rather than fail its Celery result while the job is still active.
_REDIS_RETRY: dict[str, Any] = {
    "autoretry_for": (redis.RedisError,),
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}
_EXPECTED = (JobFailed, JobTimedOut, SubmitRejected, InvalidJobSpec)


if TYPE_CHECKING:
    from celery.canvas import Signature
    from celery.result import AsyncResult

_P = ParamSpec("_P")
_R = TypeVar("_R")


class PollerTask(Task[_P, _R]):
    """A poller task: its signatures carry POLLER_QUEUE, wherever they are sent from.

    A chain built in the app (``chain(prepare.s(), submit_job.si(...), load.s())``) is
    continued by the app's own worker, which does not know poller's routes: the queue in the
    signature's options takes poller's step to poller's workers all the same.
    """

    def signature(self, args: Any = None, *starargs: Any, **starkwargs: Any) -> Signature[_R]:
        """Task.signature, with ``queue`` set to POLLER_QUEUE unless given."""
        sig = super().signature(args, *starargs, **starkwargs)
        sig.options.setdefault("queue", get_settings().queue)
        return sig

    subtask = signature  # Celery's alias is bound to Task.signature, not to this one
    Request = (
        "poller.monitoring.flower_view:JobTaskRequest"  # a rescheduled check shows no traceback
    )

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """Django: ``delay`` once the current database transaction commits; nothing if it rolls
        back (Celery's ``DjangoTask`` idiom, for poller's tasks)."""
        self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(self, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        """Django: ``apply_async`` once the current transaction commits (see delay_on_commit)."""
        from django.db import transaction

        transaction.on_commit(functools.partial(self.apply_async, args, kwargs, **options))


class SubmitJobTask(PollerTask[_P, _R]):
    """Validates and records a submission in the caller's process before it is enqueued."""

    def shadow_name(self, args: Any, kwargs: Any, options: Any) -> str | None:  # type: ignore[override]  # celery-types says None
        """Flower and worker logs show the submission under its job's name."""
        return flower_view.submit_name(args, kwargs)

    def apply_async_on_commit(self, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        """A bad spec raises InvalidJobSpec now, inside the transaction; a good one is sent
        once the transaction commits."""
        admission.validate(get_settings(), tuple(args or ()), dict(kwargs or {}))
        super().apply_async_on_commit(args, kwargs, **options)

    def apply_async(  # type: ignore[override]  # the options Celery takes, not all listed
        self, args: Any = None, kwargs: Any = None, **options: Any
    ) -> AsyncResult[_R]:
        """Send the submission, after validating it and storing its QUEUED record.

        A bad spec raises InvalidJobSpec (naming the field) and nothing is sent. The record
        is stored before the message exists, so ``JobHandle(result.id)`` works at once. When
        the idempotency key already belongs to another job, that job's result is returned and
        nothing is sent.
        """
        # Task events (Flower) show the arguments as this repr: environment values masked
        options.setdefault("kwargsrepr", kwargs_repr(kwargs))
        if options.get("retries"):  # Task.retry re-sends through here: already accepted
            return super().apply_async(args, kwargs, **options)
        spec, policy, key = admission.validate(
            get_settings(), tuple(args or ()), dict(kwargs or {})
        )
        tracking_id = options.get("task_id") or uuid()
        canvas = _canvas_options(options)
        store = get_store()
        try:
            resubmit = admission.resubmit_policy(get_settings(), dict(kwargs or {}))
            lifecycle.admit(
                store, tracking_id, spec, policy, key,
                canvas=canvas or None, due=_due(options), resubmit=resubmit,
            )  # fmt: skip
        except DuplicateSubmission as err:
            logger.info("%s: returning that job", err)
            return self.AsyncResult(str(err.owner))
        try:
            return super().apply_async(args, kwargs, **{**options, "task_id": tracking_id})
        except Exception as err:
            # Not enqueued: end the record, or the reconciler would submit a job the caller
            # was told failed (and may submit again).
            lifecycle.abandon(store, tracking_id, f"could not be enqueued: {err}")
            raise


def _aws_retry_delay(failures: int) -> float:
    """Backoff after ``failures`` consecutive transient AWS errors, capped like the checks."""
    settings = get_settings()
    return compute_delay(
        min(failures, 16),
        initial_delay=settings.aws_retry_delay,
        max_delay=settings.poll_max_delay,
        jitter=settings.poll_jitter,
    )


def _retry_later(task: Task[Any, Any], rt: Runtime, delay: float, **retry: Any) -> Any:
    """Celery's Retry for ``task`` in ``delay`` seconds, noted in the record for the reconciler
    (a retry after an AWS error is not a scheduled check)."""
    lifecycle.reschedule(rt, str(task.request.id), delay)
    return task.retry(countdown=delay, **retry)


def _due(options: dict[str, Any]) -> datetime | None:
    """When a submission sent with ``countdown`` or ``eta`` is due (None: now)."""
    if options.get("countdown"):
        return utcnow() + timedelta(seconds=float(options["countdown"]))
    eta = options.get("eta")
    if isinstance(eta, datetime):
        return eta if eta.tzinfo else eta.replace(tzinfo=UTC)
    if isinstance(eta, str):
        return datetime.fromisoformat(eta)
    return None


def _deliver(outcome: Produce | Drop) -> Any:
    """The task's end for a finished job: its outcome for the delivery that produces the
    result (a JobResult, or the error it raises), Ignore for the others (no result, so canvas
    callbacks run once)."""
    if isinstance(outcome, Drop):
        logger.info("job %s: %s; dropping this delivery", outcome.record.tracking_id, outcome.why)
        raise Ignore()
    return lifecycle.outcome(outcome.record)


def _end_revoked(task: Task[Any, Any], outcome: Revoked) -> NoReturn:
    """End a revoked job's task as Celery ends a revoked task: result REVOKED, no callbacks."""
    reason = outcome.record.status_reason or revocation.REASON
    task.backend.mark_as_revoked(str(task.request.id), reason, request=task.request)
    logger.info("job %s: %s", outcome.record.tracking_id, reason)
    raise Ignore()


def _await_events(record: JobRecord) -> NoReturn:
    """End the task without a result and without a countdown message: Batch events carry the
    job (its end sends its check, which produces the result and continues the canvas), and the
    reconciler sends its check at ``next_check_at`` if none came (JobRecord.awaits_events)."""
    logger.debug(
        "job %s: Batch events carry it; safety-net check at %s",
        record.tracking_id, lifecycle.stamp(record.next_check_at),
    )  # fmt: skip
    raise Ignore()


def _ignore_if_dropped(outcome: Produce | Drop) -> None:
    """For a refusal the task raises itself (its error says more than the record): Ignore
    unless this delivery produces the result."""
    if isinstance(outcome, Drop):
        _deliver(outcome)


def _nth(record: JobRecord) -> str:
    """`` (submission 2)`` for a resubmitted job's Batch job, else nothing."""
    number = len(record.submissions)
    return f" (submission {number})" if number > 1 else ""


def _canvas_options(options: dict[str, Any]) -> dict[str, Any]:
    """The canvas links among apply_async options, as JSON (kept in the record)."""
    names = ("link", "link_error", "chain", "chord", "group_id", "group_index")
    picked = {name: options[name] for name in names if options.get(name) not in (None, [], {})}
    return dict(json.loads(kombu_json.dumps(picked)))


def _canvas(request: Any) -> dict[str, Any]:
    """The canvas links of this task (chain, callbacks, chord), as send_task options.

    ``Task.replace`` hands them to the first check; they are kept in the record too, so that a
    check the reconciler re-sends (after a lost message) still continues the canvas.
    """
    options = {
        "link": request.callbacks,
        "link_error": request.errbacks,
        "chain": request.chain,
        "chord": request.chord,
        "group_id": request.group,
        "group_index": request.group_index,
    }
    return {name: value for name, value in options.items() if value not in (None, [], {})}


def submit_job_parameters(
    job_name: str,
    job_queue: str,
    job_definition: str,
    *,
    parameters: dict[str, str] | None = None,
    container_overrides: dict[str, Any] | None = None,
    node_overrides: dict[str, Any] | None = None,
    array_properties: dict[str, Any] | None = None,
    depends_on: list[dict[str, Any]] | None = None,
    retry_strategy: dict[str, Any] | None = None,
    timeout: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    propagate_tags: bool | None = None,
    share_identifier: str | None = None,
    scheduling_priority_override: int | None = None,
    ecs_properties_override: dict[str, Any] | None = None,
    eks_properties_override: dict[str, Any] | None = None,
    aws_profile: str | None = None,
    aws_region: str | None = None,
    poll: PollOptions | None = None,
    resubmit: ResubmitOptions | None = None,
    idempotency_key: str | None = None,
) -> JobResult:
    """``submit_job``'s signature, for type checkers: ``submit_job.delay(...)``, ``.si(...)``
    and calls are checked against it, and ``.get()`` is a JobResult. The task itself accepts
    what a message sent by name brings, and validates it (InvalidJobSpec naming the field)."""
    raise NotImplementedError("call submit_job, whose signature this is")


def _typed_like(
    parameters: Callable[_P, _R],
) -> Callable[[SubmitJobTask[Any, Any]], SubmitJobTask[_P, _R]]:
    """Type a task by ``parameters``' signature. celery-types types a bound task with a base
    class by that class alone; the task still takes ``*args, **kwargs`` at run time, so that a
    message sent by name with a bad argument is validated and recorded, not a TypeError."""

    def typed(task: SubmitJobTask[Any, Any]) -> SubmitJobTask[_P, _R]:
        return cast("SubmitJobTask[_P, _R]", task)

    return typed


# shared=False: Celery would otherwise add poller's tasks to every app created in a process
# that imports poller, and the app's workers would run them with the app's settings.
@_typed_like(submit_job_parameters)
@app.task(
    bind=True,
    base=SubmitJobTask,
    name="poller.submit_job",
    shared=False,
    # No Celery retry cap: waiting for another attempt's lease is bounded by the lease, and
    # transient AWS errors by MAX_SUBMIT_RETRIES (then REJECTED), never MaxRetriesExceededError.
    max_retries=None,
    throws=_EXPECTED,
    **_REDIS_RETRY,
)
def submit_job(self: SubmitJobTask[Any, Any], *args: Any, **kwargs: Any) -> Any:
    """Submit an AWS Batch job and track it; the result resolves when the Batch job ends.

    The positional arguments and the SubmitJob fields are SubmitJob's in snake_case (nested
    values keep AWS's own shapes). poller's own: ``aws_profile`` (a profile of the AWS config
    that ``POLLER_AWS_PROFILES`` allows) and ``aws_region`` (over the profile's region) say
    where the job runs; ``poll`` overrides the poll policy's defaults; ``resubmit`` says which
    failures submit a new Batch job; ``idempotency_key`` makes a repeated submission return the
    first one's result.

    Returns the :class:`~poller.JobResult` for SUCCEEDED; raises JobFailed, JobTimedOut or
    SubmitRejected (DuplicateSubmission for a used idempotency key that bypassed
    ``apply_async``) otherwise, each carrying the job's ids, status, reason, exit code and
    failure kind. A bad argument raises InvalidJobSpec naming it, before anything is sent.
    """
    try:
        return _submit(self, args, kwargs)
    finally:
        # What the result backend stores of this request (result_extended) once the task ends
        # here: its arguments, environment values masked. A retry, or the handover to
        # check_job, has sent its message with the real ones by now.
        self.request.kwargs = redacted(kwargs)


def _submit(self: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """submit_job's work: validate, record, submit, then hand over to the first check."""
    rt = get_runtime()
    tracking_id = str(self.request.id)
    try:
        spec, policy, key = admission.validate(rt.settings, args, kwargs)
    except InvalidJobSpec as err:
        _ignore_if_dropped(lifecycle.reject_unstored(rt, tracking_id, args, kwargs, str(err)))
        raise
    resubmit = admission.resubmit_policy(rt.settings, kwargs)
    record = lifecycle.admit(rt.store, tracking_id, spec, policy, key, resubmit=resubmit)
    if record.revoked:  # revoked before a worker that remembers it took the submission
        _end_revoked(self, Revoked(revocation.apply(rt, tracking_id) or record))
    if record.is_terminal:  # cancelled before submission, or a redelivered submit
        return _deliver(lifecycle.claim_result(rt.store, record))
    canvas = _canvas(self.request)
    if canvas:  # before SubmitJob: the job's end event may send its check at once
        lifecycle.remember_canvas(rt, tracking_id, canvas)
    if record.job_id is None:
        try:
            record = lifecycle.submit(rt, record)
        except InvalidJobSpec as err:  # the stored spec's target (a profile not allowed)
            _ignore_if_dropped(lifecycle.reject(rt, tracking_id, str(err)))
            raise
        except BatchMisconfigured as err:
            _, reason = lifecycle.refused(rt, tracking_id, err)
            if reason is not None:
                return _deliver(lifecycle.reject(rt, tracking_id, reason))
            raise _retry_later(self, rt, _aws_retry_delay(self.request.retries)) from err
        except CallDeferred as err:  # the fleet's call budget: wait our turn, not a failure
            logger.debug("job %s: %s", tracking_id, err)
            raise self.retry(countdown=err.wait) from err  # its turn noted for the reconciler
        except BatchUnavailable as err:
            failures = rt.store.get(tracking_id).submit_failures
            if failures >= MAX_SUBMIT_RETRIES:
                return _deliver(lifecycle.reject(rt, tracking_id, f"AWS Batch unavailable: {err}"))
            delay = _aws_retry_delay(failures)
            logger.warning("job %s: submit will be retried in %.1fs: %s", tracking_id, delay, err)
            raise _retry_later(self, rt, delay) from err
        except SubmitInProgress as err:
            logger.info("job %s: %s; trying again shortly", tracking_id, err)
            raise self.retry(countdown=SUBMIT_BUSY_RETRY_SECONDS) from err
        except SubmitRejected as err:
            _ignore_if_dropped(lifecycle.reject(rt, tracking_id, str(err)))
            raise
        if record.is_terminal:  # cancelled while being submitted
            return _deliver(lifecycle.claim_result(rt.store, record))
    if record.awaits_events:
        _await_events(record)
    # When the record says the first check is due (it also tells the reconciler)
    due = record.next_check_at or utcnow()
    first_check = max(0.0, (due - utcnow()).total_seconds())
    first = check_job.si(tracking_id, record.checks)
    return self.replace(first.set(countdown=first_check, shadow=flower_view.check_name(record)))


@app.task(
    bind=True,
    base=PollerTask,
    name="poller.check_job",
    shared=False,
    max_retries=None,
    throws=_EXPECTED,
    **_REDIS_RETRY,
)
def check_job(self: Task[Any, Any], tracking_id: str, check_no: int = 0, failures: int = 0) -> Any:
    """Check a tracked job once; reschedule itself until the job ends or poller gives up.

    ``check_no`` fences redelivered messages: a check whose number was already applied is
    dropped without a result, so it sends no signal and schedules nothing. ``failures`` counts
    consecutive transient AWS errors, for their backoff.
    """
    if self.request.id != tracking_id:
        # The job's result lives under its tracking id: a check under any other id would
        # resolve the wrong result and leave the caller's waiting forever.
        logger.error("job %s: dropping a check sent under task id %s", tracking_id, self.request.id)
        raise Ignore()
    rt = get_runtime()
    try:
        outcome = lifecycle.check(rt, tracking_id, check_no)
    except InvalidJobSpec as err:  # its target: a profile no longer (or never) allowed
        return _deliver(lifecycle.give_up(rt, rt.store.get(tracking_id), str(err)))
    except BatchMisconfigured as err:
        record, reason = lifecycle.refused(rt, tracking_id, err)
        if reason is not None:
            return _deliver(lifecycle.give_up(rt, record, reason))
        again = (tracking_id, check_no, failures + 1)
        raise _retry_later(self, rt, _aws_retry_delay(failures), args=again) from err
    except BatchUnavailable as err:
        # Not a check: throttling and 5xx must not use up the job's max_checks.
        delay = _aws_retry_delay(failures)
        logger.warning(
            "job %s: check %d will be retried in %.1fs: %s", tracking_id, check_no, delay, err
        )
        again = (tracking_id, check_no, failures + 1)
        raise _retry_later(self, rt, delay, args=again) from err
    except CallDeferred as err:  # the fleet's call budget: this check's turn comes later
        waiting = CheckScheduled(f"job {tracking_id}: {err}")
        lifecycle.reschedule(rt, tracking_id, err.wait)
        raise self.retry(
            args=(tracking_id, check_no, failures), countdown=err.wait, exc=waiting
        ) from None
    except SubmitInProgress as err:  # another delivery is resubmitting the job
        logger.info("job %s: %s; trying again shortly", tracking_id, err)
        raise self.retry(
            args=(tracking_id, check_no, failures), countdown=SUBMIT_BUSY_RETRY_SECONDS
        ) from err
    except ObservationPending:
        # Another check is describing this job right now: pick up its observation shortly (a
        # wait like any other, shown in Flower without a traceback)
        pending = CheckScheduled(
            f"another check is describing job {tracking_id}; check {check_no + 1} takes its "
            f"observation in {PENDING_RETRY_SECONDS:.1f}s"
        )
        raise self.retry(
            args=(tracking_id, check_no, failures), countdown=PENDING_RETRY_SECONDS, exc=pending
        ) from None
    if isinstance(outcome, Revoked):
        _end_revoked(self, outcome)
    if not isinstance(outcome, Reschedule):
        return _deliver(outcome)
    record, delay = outcome.record, outcome.delay
    if record.awaits_events:
        _await_events(record)
    # The next check's number: this one's plus one, or this one's when it only resubmitted
    scheduled = CheckScheduled(
        f"Batch job {record.job_id}{_nth(record)} is {record.status.value}; check "
        f"{record.checks + 1} in "
        f"{delay:.1f}s at {lifecycle.stamp(utcnow() + timedelta(seconds=delay))}"
    )
    raise self.retry(
        args=(tracking_id, record.checks, 0),
        countdown=delay,
        exc=scheduled,
        shadow=flower_view.check_name(record),
    )
