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

import json
import logging
from dataclasses import dataclass
from typing import Any

from celery.utils.dispatch import Signal

from poller.models import JobRecord

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


@dataclass(frozen=True)
class Event:
    """A signal a decision (:mod:`poller.core.tracking`) caused, with its record.

    Its way: the decision returns it, the store publishes it (JSON, on the event channel) in the
    transaction that stores the record, and :func:`send` sends the signal once that committed.
    """

    signal: Signal
    record: JobRecord
    previous: str | None = None
    version: int | None = None  # the record version that stored it (default: record.version)
    status: str | None = None  # the job's status then (default: record.status)
    of_submission: int | None = None  # the Batch job it is about (default: the record's last)

    @property
    def name(self) -> str:
        """The signal's name (``job_failed``, ...), also the event's name on the channel."""
        return str(self.signal.name)  # type: ignore[attr-defined]  # missing from celery-types

    @property
    def stored_version(self) -> int:
        """The version of the record whose transaction stored this event."""
        return self.record.version if self.version is None else self.version

    @property
    def status_then(self) -> str:
        """The job's status when this event happened (a late sending's record may be newer)."""
        return self.record.status.value if self.status is None else self.status

    @property
    def submission(self) -> int:
        """Which Batch job of the job the event is about: 1 for the first submission, 2 for the
        first resubmission, ... (0 before any; ``job_resubmitted``: the one that ended)."""
        return len(self.record.submissions) if self.of_submission is None else self.of_submission

    @property
    def id(self) -> str:
        """The same for every sending of this event: ``<tracking id>:<version>:<signal>``."""
        return f"{self.record.tracking_id}:{self.stored_version}:{self.name}"

    def to_json(self, stored_at: float | None = None) -> str:
        """The event as published on the channel (and kept in the outbox until sent), with when
        it was stored (epoch s)."""
        return json.dumps(
            {
                "id": self.id,
                "stored_at": stored_at,
                "event": self.name,
                "tracking_id": self.record.tracking_id,
                "job_id": self.record.job_id,
                "status": self.status_then,
                "previous": self.previous,
                "version": self.stored_version,
                "submission": self.submission,
            }
        )

    @classmethod
    def from_json(cls, data: dict[str, Any], record: JobRecord) -> Event:
        """An event read back from the outbox (parsed JSON), sent with the job's current
        ``record``."""
        return cls(
            SIGNALS[data["event"]], record, data["previous"], data["version"], data["status"],
            data.get("submission"),
        )  # fmt: skip


def send(events: list[Event]) -> None:
    """Send the signal of each event, in order. Receivers' errors are logged, never raised."""
    for event in events:
        kwargs: dict[str, Any] = {
            "record": event.record, "event_id": event.id, "status": event.status_then,
            "submission": event.submission,
        }  # fmt: skip
        if event.signal in (job_status_changed, job_resubmitted):
            kwargs["previous"] = event.previous
        logger.debug("job %s: sending %s", event.record.tracking_id, event.name)
        event.signal.send(sender=event.name, **kwargs)
