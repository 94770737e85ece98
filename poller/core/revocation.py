"""Revoking a job's Celery task cancels the job: recorded in Redis, applied by a worker.

``AsyncResult(tracking_id).revoke()``, Flower's Revoke and Terminate buttons and ``celery control
revoke`` all reach here. Celery keeps revocations in each worker's memory only, so poller writes
them into the job's record: from the sender's process when it uses poller's app
(:class:`poller.app.PollerControl`) and from every poller worker that receives the broadcast.
A worker applies a recorded revocation at once, or at the job's next check or submission (a
revocation sent while no worker was up, or forgotten by a restarted worker): it terminates the
Batch job and ends the record FAILED with a reason saying so. The caller then marks the Celery
result REVOKED.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from poller.core import outbox, tracking
from poller.core.ports import Runtime
from poller.errors import PollerError
from poller.models import JobRecord, utcnow
from poller.store import JobStore

logger = logging.getLogger(__name__)

REASON = "Celery task revoked"


@dataclass(frozen=True)
class Revoked:
    """The job's Celery task was revoked: the job is cancelled and its result is REVOKED."""

    record: JobRecord


def reason_for(terminate: bool) -> str:
    """The reason a revoked job's record and its Batch job carry."""
    return f"{REASON} (terminate)" if terminate else REASON


def request(store: JobStore, tracking_ids: Iterable[str], reason: str) -> list[str]:
    """Record revocations of poller's jobs among ``tracking_ids``; return the ids that are
    poller's jobs (the other tasks are not poller's business)."""
    jobs = []
    for tracking_id in tracking_ids:
        if store.find(tracking_id) is None:
            continue
        store.update(tracking_id, lambda r: tracking.revoke_requested(r, reason))
        jobs.append(tracking_id)
    return jobs


def apply(rt: Runtime, tracking_id: str) -> JobRecord | None:
    """Cancel a job whose revocation is recorded: terminate its Batch job, end it FAILED.

    Returns the record when this call ended the job (its signals sent), else None (not
    revoked, already ended, or another worker got there first).
    """
    record = rt.store.find(tracking_id)
    if record is None or not record.celery.revoked or record.is_terminal:
        return None
    reason = record.celery.cancel_reason or REASON
    if record.job_id is not None:
        try:
            rt.batch_for(record).terminate(record.job_id, reason)
        except PollerError as err:  # the record still ends: the revoke is what the user asked
            logger.error(
                "job %s: could not terminate Batch job %s: %s", tracking_id, record.job_id, err
            )
    now = utcnow()
    change = rt.store.update(tracking_id, lambda r: tracking.revoked(r, reason, now))
    if change is None:
        return None
    outbox.deliver(rt, change)
    logger.info("job %s: revoked; Batch job %s ended: %s", tracking_id, record.job_id, reason)
    return change.record
