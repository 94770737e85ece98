"""What kind of failure ended a job, read from AWS Batch's own strings.

A job's end carries Batch's ``statusReason``, its last container's ``reason`` and exit code. The
kinds (:class:`poller.models.FailureKind`) come from the strings AWS documents and sends:

==================== ==========================================================================
kind                 AWS's words (statusReason or the container's reason), or poller's path
==================== ==========================================================================
host_terminated      ``Host EC2 (instance i-...) terminated.``; Fargate Spot's
                     ``Your Spot Task was interrupted.``
out_of_memory        ``OutOfMemoryError: Container killed due to memory usage`` (exit code 137)
image_pull           ``CannotPullContainerError: ...`` (no exit code)
misconfiguration     ``MISCONFIGURATION:...`` (a RUNNABLE job Batch cannot place)
timeout              ``Job attempt duration exceeded timeout``; poller's max_wait or max_checks
dependency_failed    ``Dependent Job failed``
cancelled            the reason poller gave TerminateJob or CancelJob for a cancel or a revoke
app_error            any other end with a non-zero exit code (or none of the above)
stuck                poller: in RUNNABLE past its limit (misconfiguration if the reason says so)
vanished             poller: DescribeJobs stopped returning the job
rejected             poller: the submission was refused (spec, AWS, configuration)
==================== ==========================================================================

A pure function: no I/O, tested on the strings themselves.
"""

from __future__ import annotations

import re

from poller.models import AttemptOutcome, FailureKind, JobRecord, JobStatus

_HOST_TERMINATED = re.compile(
    r"Host EC2 \(instance [^)]*\) terminated|Your Spot Task was interrupted"
)
_OUT_OF_MEMORY = re.compile(r"OutOfMemoryError")
_IMAGE_PULL = re.compile(r"CannotPullContainerError")
_MISCONFIGURATION = re.compile(r"\bMISCONFIGURATION\b")
_TIMEOUT = re.compile(r"Job attempt duration exceeded timeout")
_DEPENDENCY_FAILED = re.compile(r"Dependent Job failed")


def classify(record: JobRecord, status: JobStatus | None = None) -> FailureKind | None:
    """The kind of ``record``'s end (at ``status``, default its own) from Batch's strings; None
    for SUCCEEDED or a job still running."""
    status = status or record.status
    if not status.is_terminal or status is JobStatus.SUCCEEDED:
        return None
    if status is JobStatus.REJECTED:
        return FailureKind.REJECTED
    kind = _from_strings(record.status_reason, record.batch.container_reason)
    if kind is not None:
        return kind
    if record.celery.cancel_reason and record.celery.cancel_reason in (record.status_reason or ""):
        return FailureKind.CANCELLED
    if status is JobStatus.TIMED_OUT:
        return FailureKind.TIMEOUT
    return FailureKind.APP_ERROR


def attempt_kind(attempt: AttemptOutcome) -> FailureKind | None:
    """The kind of one ended Batch attempt (None: it exited 0 and nobody stopped it)."""
    kind = _from_strings(attempt.status_reason, attempt.container_reason)
    if kind is not None or (attempt.exit_code == 0 and attempt.container_reason is None):
        return kind
    return FailureKind.APP_ERROR


def _from_strings(*reasons: str | None) -> FailureKind | None:
    """The kind AWS's strings name, first match in the module's table order."""
    text = " ".join(reason for reason in reasons if reason)
    for pattern, kind in (
        (_HOST_TERMINATED, FailureKind.HOST_TERMINATED),
        (_OUT_OF_MEMORY, FailureKind.OUT_OF_MEMORY),
        (_IMAGE_PULL, FailureKind.IMAGE_PULL),
        (_MISCONFIGURATION, FailureKind.MISCONFIGURATION),
        (_TIMEOUT, FailureKind.TIMEOUT),
        (_DEPENDENCY_FAILED, FailureKind.DEPENDENCY_FAILED),
    ):
        if pattern.search(text):
            return kind
    return None


def stuck_kind(status_reason: str | None) -> FailureKind:
    """A job given up in RUNNABLE: misconfiguration when Batch's reason says so, else stuck."""
    if status_reason and _MISCONFIGURATION.search(status_reason):
        return FailureKind.MISCONFIGURATION
    return FailureKind.STUCK
