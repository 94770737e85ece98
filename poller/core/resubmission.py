"""Resubmission: a Batch job that failed replaced by a new one, under the same tracking id.

A job's ``resubmit`` policy (:class:`poller.models.ResubmitPolicy`) names failure kinds. When the
job's current Batch job ends in one of them and resubmissions are left, :func:`prepare` takes the
record back to QUEUED: the ended Batch job stays in ``submissions`` (its kind, reason, times), the
next SubmitJob request goes into ``spec`` (the fallback queue; for ``out_of_memory``, the memory
times ``memory_factor``) and ``job_id`` is cleared. The check that saw the end submits it (or the
reconciler, if that check was lost) through :func:`poller.core.lifecycle.submit`, as a first
submission: under a lease, and after an interrupted attempt only once the Batch job that attempt
may have created was looked for, so a worker killed mid-way never makes two.

Pure functions on a record copy, called from :mod:`poller.core.tracking`.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from poller.models import (
    BatchState,
    FailureKind,
    JobRecord,
    JobStatus,
    Submission,
    SubmissionState,
)

MEMORY = "MEMORY"  # the resourceRequirements type of a container's memory (MiB, as a string)


def applies(record: JobRecord, kind: FailureKind | None) -> bool:
    """True when the end of the job's current Batch job, of ``kind``, is to be resubmitted."""
    policy = record.resubmit
    if policy is None or kind is None or kind not in policy.on or record.job_id is None:
        return False
    if record.celery.cancel_reason is not None or record.celery.revoked:  # stopped on request
        return False
    return len(record.submissions) <= policy.max  # the first submission is not a resubmission


def close_last(
    record: JobRecord,
    now: datetime,
    status: JobStatus | None = None,
    kind: FailureKind | None = None,
) -> None:
    """Write how the current Batch job ended (default: the record's status and kind) into its
    entry of ``submissions`` (once)."""
    if not record.submissions or record.submissions[-1].status is not None:
        return
    ended = record.submissions[-1].model_copy(
        update={
            "status": status or record.status,
            "failure_kind": kind if status is not None else record.failure_kind,
            "status_reason": record.status_reason,
            "exit_code": record.batch.exit_code,
            "ended_at": now,
            "attempt_kinds": list(record.batch.attempt_kinds),
        }
    )
    record.submissions = [*record.submissions[:-1], ended]


def prepare(record: JobRecord, status: JobStatus, kind: FailureKind, now: datetime) -> None:
    """Take ``record`` (a copy) back to QUEUED with its next SubmitJob request in ``spec``."""
    policy = record.resubmit
    assert policy is not None, "applies() said the job resubmits"
    close_last(record, now, status, kind)
    ended = record.submissions[-1]
    spec = {**record.spec, "job_queue": policy.queue or record.job_queue}
    if kind is FailureKind.OUT_OF_MEMORY and ended.memory is not None:
        more = math.ceil(ended.memory * policy.memory_factor)
        spec["container_overrides"] = with_memory(spec.get("container_overrides"), more)
    record.spec = spec
    record.job_queue = spec["job_queue"]
    record.status = JobStatus.QUEUED
    # What the record holds about its current Batch job is emptied for the next one
    record.job_id = record.status_reason = record.failure_kind = None
    record.batch = BatchState()
    record.submission = SubmissionState(resubmitting=True)
    # Due: the reconciler re-sends its check if that message is lost
    record.schedule = record.schedule.model_copy(
        update={
            "missing_since": None, "stuck_notified": False, "awaits_events": False,
            "next_check_at": now,
        }
    )  # fmt: skip


def with_memory(overrides: dict[str, Any] | None, mib: int) -> dict[str, Any]:
    """Container overrides asking for ``mib`` MiB: the MEMORY resource requirement replaced
    (the deprecated ``memory`` member dropped, AWS refuses both)."""
    new = {key: value for key, value in (overrides or {}).items() if key != "memory"}
    kept = [r for r in new.get("resourceRequirements") or [] if r.get("type") != MEMORY]
    new["resourceRequirements"] = [*kept, {"type": MEMORY, "value": str(mib)}]
    return new


def memory_override(spec: dict[str, Any]) -> int | None:
    """The memory (MiB) a SubmitJob request's container overrides ask for, if any."""
    overrides = spec.get("container_overrides") or {}
    for requirement in overrides.get("resourceRequirements") or []:
        if requirement.get("type") == MEMORY:
            return _mib(requirement.get("value"))
    return _mib(overrides.get("memory"))


def note_memory(record: JobRecord, memory: int | None) -> None:
    """Keep the memory DescribeJobs showed for the current Batch job in its submission."""
    if memory is None or not record.submissions or record.job_id is None:
        return
    last = record.submissions[-1]
    if last.job_id == record.job_id and last.memory != memory:
        record.submissions = [*record.submissions[:-1], last.model_copy(update={"memory": memory})]


def replaced(record: JobRecord) -> Submission | None:
    """The Batch job a resubmission replaces, while it is being submitted (else None)."""
    return record.submissions[-1] if record.resubmitting else None


def _mib(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
