"""Signals sent in the worker after a job's record is stored.

Connect a receiver as with any Celery signal::

    from poller.signals import job_failed

    @job_failed.connect
    def page_someone(sender, record, **kwargs):
        alert(f"{record.job_name} failed: {record.describe_failure()}")

Every signal is sent with ``sender`` set to the signal's name, ``record``, the stored
:class:`poller.models.JobRecord`, ``status``, the job's status when the event happened (a
signal sent late carries the job's newer record), and ``event_id``, the same for every sending of
one job's transition (``<tracking id>:<record version>:<signal>``), and ``submission``, which
Batch job of the job it is about (1, then 2 after a resubmission, ...). A transition's signals are sent once,
even when a check message is delivered twice. They are sent at least once: a worker that dies
between storing a transition and sending its signals leaves them in the store's outbox, and the
reconciler sends them after ``reconcile_grace`` (:mod:`poller.core.outbox`); a worker that dies right
after sending them may cause them to be sent again, with the same ``event_id``. A receiver that
raises is logged and never disturbs tracking (Celery's ``Signal.send`` catches and logs it).
Receivers run in the worker: keep them short (well under ``reconcile_grace``).
The same events are published as JSON on the Redis channel ``<key_prefix>:events``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery.utils.dispatch import Signal

from poller.models.announcement import WITH_PREVIOUS, Announcement

logger = logging.getLogger(__name__)

job_submitted = Signal(name="job_submitted", providing_args=["record"])
"""The Batch job was created (the record now has its job_id)."""

job_status_changed = Signal(name="job_status_changed", providing_args=["record", "previous"])
"""The job moved to a new status; ``previous`` is the status it left, as a string."""

job_succeeded = Signal(name="job_succeeded", providing_args=["record"])
"""The Batch job ended SUCCEEDED."""

job_failed = Signal(name="job_failed", providing_args=["record"])
"""The job ended FAILED (on Batch) or REJECTED (by validation or AWS)."""

job_timed_out = Signal(name="job_timed_out", providing_args=["record"])
"""poller gave up waiting for the job (TIMED_OUT)."""

job_stuck = Signal(name="job_stuck", providing_args=["record"])
"""The job has waited in RUNNABLE longer than ``stuck_after`` (sent once per job)."""

job_resubmitted = Signal(name="job_resubmitted", providing_args=["record", "previous"])
"""A Batch job of the job ended in a kind its resubmit policy names: a new one is submitted
under the same tracking id. ``record.submissions[-1]`` is the one that ended (its kind, reason,
times); ``status`` is how it ended; the next ``job_submitted`` is about the new one."""

job_finished = Signal(name="job_finished", providing_args=["record"])
"""The job reached any terminal status; sent after the outcome signal."""

SIGNALS: dict[str, Signal] = {
    signal.name: signal  # type: ignore[attr-defined]
    for signal in (
        job_submitted, job_status_changed, job_succeeded, job_failed, job_timed_out, job_stuck,
        job_resubmitted, job_finished,
    )
}  # fmt: skip
"""Every signal by name."""


def send(announcements: Sequence[Announcement]) -> None:
    """Send the signal of each announcement, in order. Receivers' errors are logged, never
    raised (Celery's ``Signal.send``)."""
    for announcement in announcements:
        kwargs: dict[str, Any] = {
            "record": announcement.record, "event_id": announcement.id,
            "status": announcement.status_then, "submission": announcement.submission,
        }  # fmt: skip
        if announcement.name in WITH_PREVIOUS:
            kwargs["previous"] = announcement.previous
        logger.debug("job %s: sending %s", announcement.record.tracking_id, announcement.name)
        SIGNALS[announcement.name].send(sender=announcement.name, **kwargs)
