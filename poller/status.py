"""The two vocabularies every part of poller speaks: a job's status and a failure's kind.

A status is a :class:`JobStatus` wherever poller hands one out as a Python object (a record, a
handle, an error, a signal's ``status``). In the JSON that travels (a :class:`~poller.JobResult`,
an event on the channel) it is the member's value, typed :data:`TerminalStatusName` in a result:
``JobStatus(result["status"])`` turns it back, and since JobStatus is a ``str`` enum,
``result["status"] == JobStatus.SUCCEEDED`` holds either way. The same goes for
:class:`FailureKind` and :data:`FailureKindName`.

This module imports nothing of poller: the errors, the models and everything above use it.
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar, Literal

__all__ = ["FailureKind", "FailureKindName", "JobStatus", "TerminalStatusName"]


class JobStatus(str, Enum):
    """Where a tracked job stands: AWS Batch's statuses plus poller's own.

    QUEUED: accepted by poller, not yet submitted. REJECTED: refused by validation or by AWS.
    TIMED_OUT: poller gave up waiting. The others are AWS Batch's own.
    """

    QUEUED = "QUEUED"
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    TIMED_OUT = "TIMED_OUT"

    TERMINAL: ClassVar[frozenset[JobStatus]]
    ACTIVE: ClassVar[frozenset[JobStatus]]

    @property
    def is_terminal(self) -> bool:
        """True for a status a job never leaves."""
        return self in JobStatus.TERMINAL

    @property
    def rank(self) -> int:
        """Position along the lifecycle; a job never moves to a lower rank."""
        return _RANK[self]


JobStatus.TERMINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.TIMED_OUT}
)
JobStatus.ACTIVE = frozenset(set(JobStatus) - JobStatus.TERMINAL)
_RANK = {status: i for i, status in enumerate(JobStatus)}
for _terminal in JobStatus.TERMINAL:
    _RANK[_terminal] = len(JobStatus)  # terminal statuses are final and equal in rank


class FailureKind(str, Enum):
    """What kind of failure ended a job, from AWS's own strings (:mod:`poller.core.failures`)."""

    HOST_TERMINATED = "host_terminated"  # its EC2 host or Spot capacity was reclaimed
    OUT_OF_MEMORY = "out_of_memory"  # the container was killed for using too much memory
    IMAGE_PULL = "image_pull"  # the container's image could not be pulled
    MISCONFIGURATION = "misconfiguration"  # Batch cannot place it (MISCONFIGURATION:...)
    STUCK = "stuck"  # waited in RUNNABLE past its limit
    TIMEOUT = "timeout"  # an attempt's duration limit, or poller's max_wait / max_checks
    APP_ERROR = "app_error"  # the job's command exited non-zero
    CANCELLED = "cancelled"  # cancelled, terminated or revoked on request
    DEPENDENCY_FAILED = "dependency_failed"  # a job it depends on failed
    VANISHED = "vanished"  # DescribeJobs stopped returning it
    REJECTED = "rejected"  # refused before it ran (spec, AWS, configuration)


TerminalStatusName = Literal["SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT"]
"""The value of a terminal :class:`JobStatus`, as a JobResult holds it."""

FailureKindName = Literal[
    "host_terminated", "out_of_memory", "image_pull", "misconfiguration", "stuck", "timeout",
    "app_error", "cancelled", "dependency_failed", "vanished", "rejected",
]  # fmt: skip
"""The value of a :class:`FailureKind`, as a JobResult holds it."""
