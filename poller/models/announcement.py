"""Announcements: the signals a decision caused, as data.

A decision (:mod:`poller.core.tracking`) returns them with the record it changed; the store
publishes them as JSON on the events channels and keeps them in the job's outbox in the
transaction that stores the record; once that committed, the runtime hands them to
:func:`poller.signals.send`, which sends each as its Celery signal. Nothing here imports Celery:
the core and the store deal in announcements, and only :mod:`poller.signals` knows signals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, get_args

from poller.models import JobRecord

SignalName = Literal[
    "job_submitted",
    "job_status_changed",
    "job_succeeded",
    "job_failed",
    "job_timed_out",
    "job_stuck",
    "job_resubmitted",
    "job_finished",
]
"""The name of each of :mod:`poller.signals`' signals (the ``event`` of a published event)."""

SIGNAL_NAMES: frozenset[str] = frozenset(get_args(SignalName))

WITH_PREVIOUS: frozenset[str] = frozenset({"job_status_changed", "job_resubmitted"})
"""The signals sent with ``previous``: the status the job left."""


@dataclass(frozen=True)
class Announcement:
    """A signal a decision caused, with the record it is about.

    ``version``, ``status`` and ``of_submission`` default to the record's: an announcement
    sent late (from the outbox) carries the job's newer record and keeps what was true when it
    was stored.
    """

    signal: SignalName
    record: JobRecord
    previous: str | None = None
    version: int | None = None  # the record version that stored it (default: record.version)
    status: str | None = None  # the job's status then (default: record.status)
    of_submission: int | None = None  # the Batch job it is about (default: the record's last)

    @property
    def name(self) -> str:
        """The signal's name (``job_failed``, ...), also the event's name on the channel."""
        return self.signal

    @property
    def stored_version(self) -> int:
        """The version of the record whose transaction stored this announcement."""
        return self.record.version if self.version is None else self.version

    @property
    def status_then(self) -> str:
        """The job's status when this happened (a late sending's record may be newer)."""
        return self.record.status.value if self.status is None else self.status

    @property
    def submission(self) -> int:
        """Which Batch job of the job it is about: 1 for the first submission, 2 for the
        first resubmission, ... (0 before any; ``job_resubmitted``: the one that ended)."""
        return len(self.record.submissions) if self.of_submission is None else self.of_submission

    @property
    def id(self) -> str:
        """The same for every sending of it: ``<tracking id>:<version>:<signal>``."""
        return f"{self.record.tracking_id}:{self.stored_version}:{self.name}"

    def to_json(self, stored_at: float | None = None) -> str:
        """As published on the channels (and kept in the outbox until sent), with when it was
        stored (epoch s)."""
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
    def from_json(cls, data: dict[str, Any], record: JobRecord) -> Announcement:
        """One read back from the outbox (parsed JSON), to be sent with the job's current
        ``record``. ValueError when it names no signal of poller's."""
        name = data["event"]
        if name not in SIGNAL_NAMES:
            raise ValueError(f"job {record.tracking_id}: {name!r} is not one of poller's signals")
        return cls(
            name, record, data["previous"], data["version"], data["status"],
            data.get("submission"),
        )  # fmt: skip
