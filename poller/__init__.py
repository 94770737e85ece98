"""poller: run AWS Batch jobs from Celery and know when they are done.

Public API::

    from poller import submit_job, JobHandle, JobStatus

    result = submit_job.delay("nightly-report", "my-queue", "report-def", parameters={"day": "1"})
    record = JobHandle(result.id).wait(timeout=3600)
"""

from poller.app import app
from poller.client import JobHandle
from poller.errors import (
    InvalidJobSpec,
    JobFailed,
    JobNotFound,
    JobTimedOut,
    PollerError,
    SubmitRejected,
)
from poller.models import JobRecord, JobStatus
from poller.tasks import check_job, submit_job

__version__ = "0.1.0"

__all__ = [
    "InvalidJobSpec",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobRecord",
    "JobStatus",
    "JobTimedOut",
    "PollerError",
    "SubmitRejected",
    "__version__",
    "app",
    "check_job",
    "submit_job",
]
