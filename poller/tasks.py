"""Thin Celery tasks: unpack arguments, run :mod:`poller.core.steps`, carry out the step.

``submit_job`` submits the Batch job and hands over to ``check_job`` with ``Task.replace``, so the
check inherits the submission's task id (the tracking id): ``submit_job.delay(...).get()`` and
canvas callbacks wait for the Batch job itself. ``check_job`` reschedules itself with
``self.retry(countdown=...)``; no worker ever sleeps to wait. :func:`_act` is the one place a
step of the core becomes Celery's retry, replace, Ignore or return.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import kombu.exceptions
import redis
from celery import Task
from celery.exceptions import Ignore
from kombu.utils import json as kombu_json
from kombu.utils.uuid import uuid

from poller import admission
from poller.app import app
from poller.core import lifecycle, revocation, steps
from poller.core.lifecycle import Drop
from poller.core.redaction import kwargs_repr, redacted
from poller.core.revocation import Revoked
from poller.core.steps import AwaitEvents, HandOver, Retry, Step
from poller.errors import (
    DuplicateSubmission,
    InvalidJobSpec,
    JobFailed,
    JobTimedOut,
    SubmitRejected,
    Unreachable,
)
from poller.models import JobResult, PollOptions, ResubmitOptions, utcnow
from poller.monitoring import flower_view
from poller.runtime import get_runtime, get_store
from poller.settings import get_settings
from poller.settings.values import mask_url

logger = logging.getLogger(__name__)

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
        once the transaction commits (not validated again)."""
        from django.db import transaction

        admitted = admission.validate(get_settings(), tuple(args or ()), dict(kwargs or {}))
        send = functools.partial(self._admit_and_send, admitted, args, kwargs, options)
        transaction.on_commit(send)

    def apply_async(  # type: ignore[override]  # the options Celery takes, not all listed
        self, args: Any = None, kwargs: Any = None, **options: Any
    ) -> AsyncResult[_R]:
        """Send the submission, after validating it and storing its QUEUED record.

        A bad spec raises InvalidJobSpec (naming the field) and nothing is sent. The record
        is stored before the message exists, so ``JobHandle(result.id)`` works at once. When
        the idempotency key already belongs to another job, that job's result is returned and
        nothing is sent.
        """
        if options.get("retries"):  # Task.retry re-sends through here: already accepted
            options.setdefault("kwargsrepr", kwargs_repr(kwargs))
            return super().apply_async(args, kwargs, **options)
        admitted = admission.validate(get_settings(), tuple(args or ()), dict(kwargs or {}))
        return self._admit_and_send(admitted, args, kwargs, options)

    def _admit_and_send(
        self, admitted: admission.Admission, args: Any, kwargs: Any, options: dict[str, Any]
    ) -> AsyncResult[_R]:
        """Store the validated submission's QUEUED record, then send its message."""
        # Task events (Flower) show the arguments as this repr: environment values masked
        options.setdefault("kwargsrepr", kwargs_repr(kwargs))
        tracking_id = options.get("task_id") or uuid()
        canvas = _canvas_options(options)
        store = get_store()
        try:
            lifecycle.admit(
                store, tracking_id, admitted.spec, admitted.poll, admitted.idempotency_key,
                canvas=canvas or None, due=_due(options), resubmit=admitted.resubmit,
            )  # fmt: skip
        except DuplicateSubmission as err:
            logger.info("%s: returning that job", err)
            return self.AsyncResult(str(err.owner))
        except (redis.ConnectionError, redis.TimeoutError) as err:
            settings = get_settings()
            named = "POLLER_REDIS_URL" if settings.redis_url else "POLLER_BROKER_URL"
            raise _unreachable("Redis", settings.effective_redis_url, named, err) from err
        try:
            return super().apply_async(args, kwargs, **{**options, "task_id": tracking_id})
        except Exception as err:
            # Not enqueued: end the record, or the reconciler would submit a job the caller
            # was told failed (and may submit again).
            lifecycle.abandon(store, tracking_id, f"could not be enqueued: {err}")
            if isinstance(err, kombu.exceptions.OperationalError):
                url = get_settings().broker_url.get_secret_value()
                raise _unreachable("broker", url, "POLLER_BROKER_URL", err) from err
            raise


def _unreachable(what: str, url: str, setting: str, err: Exception) -> Unreachable:
    """The error for a submission this process could not store or send: which server, where
    (password masked), the setting it comes from, and what to check."""
    return Unreachable(
        f"could not reach poller's {what} at {mask_url(url)} ({setting}): "
        f"{str(err).rstrip('.')}. Is it running, and is {setting} set in this process? Every "
        "process that calls submit_job needs it."
    )


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


def _act(task: Task[Any, Any], step: Step) -> Any:
    """Do what the core decided (:mod:`poller.core.steps`): the one place a step becomes
    Celery's retry, replace, Ignore or return."""
    if isinstance(step, Retry):
        options: dict[str, Any] = {"countdown": step.delay}
        if step.args is not None:
            options["args"] = step.args
        if step.wait is not None:
            options["exc"] = step.wait  # Flower shows why it waits, without a traceback
        if step.record is not None:
            options["shadow"] = flower_view.check_name(step.record)
        raise task.retry(**options)
    if isinstance(step, HandOver):
        first = check_job.si(step.record.tracking_id, step.record.schedule.checks)
        shadow = flower_view.check_name(step.record)
        return task.replace(first.set(countdown=step.delay, shadow=shadow))
    if isinstance(step, AwaitEvents):
        logger.debug(
            "job %s: Batch events carry it; safety-net check at %s",
            step.record.tracking_id, lifecycle.stamp(step.record.schedule.next_check_at),
        )  # fmt: skip
        raise Ignore()
    if isinstance(step, Revoked):
        # Ended as Celery ends a revoked task: result REVOKED, no callbacks
        reason = step.record.status_reason or revocation.REASON
        task.backend.mark_as_revoked(str(task.request.id), reason, request=task.request)
        logger.info("job %s: %s", step.record.tracking_id, reason)
        raise Ignore()
    if isinstance(step, Drop):  # no result from this delivery: canvas callbacks run once
        logger.info("job %s: %s; dropping this delivery", step.record.tracking_id, step.why)
        raise Ignore()
    if step.error is not None:
        raise step.error
    return lifecycle.outcome(step.record)


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
    """submit_job's work: admit (unless the caller did), submit, hand over to the first check.

    A submission sent through ``apply_async`` was validated and admitted by the caller: its
    record is here, and its arguments are not validated again. One sent by name (``send_task``,
    beat) is validated and admitted here, once.
    """
    rt = get_runtime()
    tracking_id = str(self.request.id)
    record = rt.store.find(tracking_id)
    # A redelivered message, or one whose record is missing (sent by name, or lost with a
    # failover), may follow an attempt that created the Batch job: look for it first.
    look_first = record is None or bool((self.request.delivery_info or {}).get("redelivered"))
    if record is None:
        try:
            spec, policy, key, resubmit = admission.validate(rt.settings, args, kwargs)
        except InvalidJobSpec as err:
            return _act(self, steps.refuse_unstored(rt, tracking_id, args, kwargs, err))
        record = lifecycle.admit(rt.store, tracking_id, spec, policy, key, resubmit=resubmit)
    canvas, retries = _canvas(self.request), self.request.retries
    return _act(self, steps.submit(rt, record, canvas, retries, look_first=look_first))


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
    return _act(self, steps.check(get_runtime(), tracking_id, check_no, failures))
