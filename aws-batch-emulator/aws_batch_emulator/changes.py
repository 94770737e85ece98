"""A job's status changes as they are reported outside the backend: the record and its listener.

The job models (`aws_batch_emulator.jobs`) report each status a job reaches after SUBMITTED to the
`ChangeListener` of their compute environment. The server installs one only when it publishes
events (``--events``); without it a report costs one attribute check.

A `JobChange` carries the job's DescribeJobs item serialized at the moment of the change, under the
backend lock, so a listener on another thread sees the job exactly as DescribeJobs did then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class JobChange:
    """One status a job reached, with the job as DescribeJobs showed it then."""

    account_id: str
    """Account of the job."""
    region: str
    """Region of the job."""
    job_arn: str
    """ARN of the job."""
    status: str
    """The status reached."""
    at: float
    """When the job reached it (epoch seconds)."""
    description: str
    """The job's DescribeJobs item at that moment, as JSON, before the wire reshaping."""


class ChangeListener(Protocol):
    """Receives every job status change of a compute environment."""

    def job_changed(self, change: JobChange) -> None:
        """Called under the backend lock once DescribeJobs shows the change; must not block."""
