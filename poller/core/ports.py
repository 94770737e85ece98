"""What the core needs from the world, as Protocols: AWS Batch and the process's runtime.

The core is plain functions over these. The composition root (:mod:`poller.runtime`, built at
app and worker start) provides them: boto3's Batch client behind :class:`Batch`, the Redis job
store, the settings, and :mod:`poller.signals` as the announcer. Tests give in-memory ones
(:class:`poller.testing.FakeBatch`, a list as the announcer).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

from poller.models import BatchJobView, JobRecord, JobSpec, Limits
from poller.models.announcement import Announcement
from poller.settings import Settings
from poller.store import JobStore


class Batch(Protocol):
    """What poller asks of AWS Batch (:class:`poller.aws.batch.BatchClient` is AWS's).

    Errors: :class:`~poller.errors.BatchUnavailable` (try again later;
    :class:`~poller.errors.BatchMisconfigured` when AWS refused poller's credentials or
    access), :class:`~poller.errors.SubmitRejected` (do not try again).
    """

    def submit(self, spec: JobSpec, extra_tags: dict[str, str] | None = None) -> str:
        """Submit the job and return its Batch job id."""
        ...

    def describe(self, job_ids: Iterable[str]) -> dict[str, BatchJobView]:
        """Describe jobs; ids Batch does not know are absent from the result."""
        ...

    def find_tagged(
        self, job_queue: str, job_name: str, tag: str, value: str, exclude: Collection[str] = ()
    ) -> str | None:
        """The id of the job in ``job_queue`` named ``job_name`` whose tag ``tag`` is ``value``
        (other than those in ``exclude``)."""
        ...

    def terminate(self, job_id: str, reason: str) -> None:
        """Stop a job (any status before it ended)."""
        ...


class Runtime(Protocol):
    """What the lifecycle runs with: settings, the job store, a Batch client per AWS target,
    and the announcer that sends a stored change's signals."""

    @property
    def settings(self) -> Settings:
        """The process's settings."""
        ...

    @property
    def store(self) -> JobStore:
        """The job store (Redis)."""
        ...

    @property
    def limits(self) -> Limits:
        """The check's time limits (from settings)."""
        ...

    def batch_for(self, record: JobRecord) -> Batch:
        """The Batch client of the job's AWS target (its profile and region)."""
        ...

    def region_for(self, record: JobRecord) -> str | None:
        """The region the job goes to (its own once submitted)."""
        ...

    def announce(self, announcements: Sequence[Announcement]) -> None:
        """Send the signals of announcements just stored (receivers' errors never raise)."""
        ...
