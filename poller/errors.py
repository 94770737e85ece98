"""The poller error tree.

Every error poller raises derives from :class:`PollerError`. boto3's errors are translated where
poller talks to AWS (``batch.py``) with ``raise ... from err``. redis-py's errors are not: they
mean "try again" everywhere (Celery's tasks retry on ``redis.RedisError``, the command line
prints them as one line), so translating them would only hide which one it was.

Errors that travel through Celery's result backend are rebuilt from their ``args`` on the caller's
side (``cls(*args)``), so each keeps everything the caller needs in its ``args``, as JSON values.
"""

from __future__ import annotations

from typing import TypeVar

from poller.status import FailureKind, JobStatus

_Vocabulary = TypeVar("_Vocabulary", JobStatus, FailureKind)


class PollerError(Exception):
    """Base class of every error raised by poller."""


class ConfigurationError(PollerError):
    """Settings that cannot work (alone or together); the message names them."""


class InvalidJobSpec(PollerError, ValueError):
    """A job spec broke AWS Batch's rules or poller's; the message names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProfileNotAllowed(InvalidJobSpec):
    """The job names an AWS profile that ``POLLER_AWS_PROFILES`` does not allow.

    The message names the profile asked for, never the allowed ones.
    """


class JobEnded(PollerError):
    """A job that ended other than SUCCEEDED, as an error: what a caller acts on, as attributes.

    ``tracking_id``, ``job_id`` (None if never submitted), ``status`` (a JobStatus),
    ``status_reason``, ``exit_code`` and ``failure_kind`` (a FailureKind, None if unknown). All
    travel in ``args`` as JSON values, so the error Celery's JSON result backend rebuilds on the
    caller's side (``cls(*args)``) has them too::

        try:
            submit_job.delay("report", "queue", "definition").get()
        except JobFailed as err:
            if err.failure_kind is FailureKind.OUT_OF_MEMORY: ...
    """

    def __init__(
        self,
        message: str,
        tracking_id: str | None = None,
        job_id: str | None = None,
        status: str | None = None,
        status_reason: str | None = None,
        exit_code: int | None = None,
        failure_kind: str | None = None,
    ) -> None:
        # Rebuilt from a result backend, the values are outside data: an unknown one is None
        self.status = _member(JobStatus, status)
        self.failure_kind = _member(FailureKind, failure_kind)
        self.tracking_id = tracking_id
        self.job_id = job_id
        self.status_reason = status_reason
        self.exit_code = exit_code
        super().__init__(
            message, tracking_id, job_id, self.status and self.status.value, status_reason,
            exit_code, self.failure_kind and self.failure_kind.value,
        )  # fmt: skip

    def __str__(self) -> str:
        return str(self.args[0])


def _member(enum: type[_Vocabulary], value: object) -> _Vocabulary | None:
    """``enum``'s member of that value, None for None or a value it does not have."""
    try:
        return None if value is None else enum(value)
    except ValueError:
        return None


class JobFailed(JobEnded):
    """The Batch job ended FAILED; the message names the job id, statusReason, exit code and
    failure kind, which are attributes too (:class:`JobEnded`)."""


class JobTimedOut(JobEnded):
    """poller gave up waiting for the Batch job (max_checks or max_wait reached, or stuck);
    ``status`` is TIMED_OUT (:class:`JobEnded`)."""


class SubmitRejected(JobEnded):
    """AWS Batch (or poller) refused the submission: unknown queue or definition, bad request,
    ...; the job ended REJECTED. Its attributes are :class:`JobEnded`'s (``job_id`` None)."""


class DuplicateSubmission(SubmitRejected):
    """The idempotency key already belongs to another job (named in the message and ``owner``).

    Raised by a submission that reached a worker without going through ``submit_job``'s
    ``apply_async`` (which returns the owner's result instead), e.g. one sent by ``send_task``.
    """

    def __init__(self, message: str, owner: str | None = None) -> None:
        super().__init__(message, status="REJECTED", failure_kind="rejected")
        self.args = (message, owner)  # what Celery rebuilds it from: cls(message, owner)
        self.owner = owner


class JobNotFound(PollerError, LookupError):
    """No job record is stored under this tracking id or Batch job id."""


class RecordUnreadable(JobNotFound):
    """The job's stored record could not be read back; it was set aside (``poller check``)."""


class Unreachable(PollerError, ConnectionError):
    """This process could not reach poller's Redis or its broker; the message names the URL
    (password masked) and the setting it comes from."""


class BatchUnavailable(PollerError):
    """AWS Batch throttled the call, answered 5xx or could not be reached; try again later."""


class BatchThrottled(BatchUnavailable):
    """AWS Batch throttled the call: it certainly did not take effect."""


class BatchMisconfigured(BatchUnavailable):
    """AWS refused poller's configuration (no credentials, expired token, access denied).

    Retried like an outage, in case it is fixed meanwhile (credentials rotated, a policy
    attached), but the job records why it waits, and ends after ``POLLER_AWS_CONFIG_GRACE``.
    """


class ObservationPending(PollerError):
    """Another check is describing this job right now; check again in a moment."""


class StoreConflict(PollerError):
    """A record kept changing under an update (too many concurrent writers in a row)."""


class CallDeferred(PollerError):
    """The fleet's AWS call budget has no token for this call now: it was not made; try again
    in ``wait`` seconds (backpressure, not a failure)."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message, wait)
        self.wait = wait

    def __str__(self) -> str:
        return str(self.args[0])


class SubmitInProgress(PollerError):
    """Another attempt is calling SubmitJob for this job right now; try again shortly."""


class BatchRequestError(PollerError):
    """AWS Batch refused a request other than a submission (terminate, describe, ...)."""


class WaitTimeout(PollerError, TimeoutError):
    """A wait for a job to finish ran out of time before the job did."""


class CheckScheduled(PollerError):
    """Not a failure: a check found the job still active and scheduled the next one.

    Raised through ``Task.retry(exc=...)`` so that Flower and the worker log show the job's
    Batch status and the time of its next check on each rescheduled check.
    """
