"""Signals sent in the worker after a job's record is stored.

Connect a receiver as with any Celery signal::

    from poller.signals import job_failed

    @job_failed.connect
    def page_someone(sender, record, **kwargs):
        alert(f"{record.job_name} failed: {record.describe_failure()}")

Every signal is sent with ``sender`` set to the signal's name and ``record``, the stored
:class:`poller.models.JobRecord`. Each is sent at most once per job and transition, even when a
check message is delivered twice: a worker that dies between storing a transition and sending its
signals loses those signals (the record and the Redis event, published with the record, are not
lost), so use the event channel or the record where every transition must be seen. A receiver
that raises is logged and never disturbs tracking (Celery's ``Signal.send`` catches and logs it). Receivers run in the worker: keep them short.
The same events are published as JSON on the Redis channel ``<key_prefix>:events``.
"""

from __future__ import annotations

import logging

from celery.utils.dispatch import Signal

from poller import tracking
from poller.store import Event

logger = logging.getLogger(__name__)

job_submitted = Signal(name=tracking.JOB_SUBMITTED, providing_args=["record"])
"""The Batch job was created (the record now has its job_id)."""

job_status_changed = Signal(name=tracking.JOB_STATUS_CHANGED, providing_args=["record", "previous"])
"""The job moved to a new status; ``previous`` is the status it left, as a string."""

job_succeeded = Signal(name=tracking.JOB_SUCCEEDED, providing_args=["record"])
"""The Batch job ended SUCCEEDED."""

job_failed = Signal(name=tracking.JOB_FAILED, providing_args=["record"])
"""The job ended FAILED (on Batch) or REJECTED (by validation or AWS)."""

job_timed_out = Signal(name=tracking.JOB_TIMED_OUT, providing_args=["record"])
"""poller gave up waiting for the job (TIMED_OUT)."""

job_stuck = Signal(name=tracking.JOB_STUCK, providing_args=["record"])
"""The job has waited in RUNNABLE longer than ``stuck_after`` (sent once per job)."""

job_finished = Signal(name=tracking.JOB_FINISHED, providing_args=["record"])
"""The job reached any terminal status; sent after the outcome signal."""

SIGNALS: dict[str, Signal] = {
    tracking.JOB_SUBMITTED: job_submitted,
    tracking.JOB_STATUS_CHANGED: job_status_changed,
    tracking.JOB_SUCCEEDED: job_succeeded,
    tracking.JOB_FAILED: job_failed,
    tracking.JOB_TIMED_OUT: job_timed_out,
    tracking.JOB_STUCK: job_stuck,
    tracking.JOB_FINISHED: job_finished,
}


def send(events: list[Event]) -> None:
    """Send the signal of each event, in order. Receivers' errors are logged, never raised."""
    for event in events:
        signal = SIGNALS[event.name]
        kwargs = {"record": event.record}
        if event.name == tracking.JOB_STATUS_CHANGED:
            kwargs["previous"] = event.previous  # type: ignore[assignment]
        logger.debug("job %s: sending %s", event.record.tracking_id, event.name)
        signal.send(sender=event.name, **kwargs)
