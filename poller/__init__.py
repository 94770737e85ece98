"""poller: run AWS Batch jobs from Celery and know when they are done.

Public API::

    from poller import submit_job, JobHandle, JobStatus

    result = submit_job.delay("nightly-report", "my-queue", "report-def", parameters={"day": "1"})
    outcome = result.get(timeout=3600)  # a JobResult; JobFailed etc. when the job did not succeed
    outcome = JobHandle(result.id).wait(timeout=3600)  # the same JobResult, whatever the status
"""

from importlib.metadata import PackageNotFoundError, version

from poller.app import app
from poller.client import JobHandle
from poller.errors import (
    ConfigurationError,
    DuplicateSubmission,
    InvalidJobSpec,
    JobFailed,
    JobNotFound,
    JobTimedOut,
    PollerError,
    ProfileNotAllowed,
    RecordUnreadable,
    SubmitRejected,
    WaitTimeout,
)
from poller.models import FailureKind, JobRecord, JobResult, JobStatus, ResubmitPolicy, Submission
from poller.signals import (
    job_failed,
    job_finished,
    job_resubmitted,
    job_status_changed,
    job_stuck,
    job_submitted,
    job_succeeded,
    job_timed_out,
)
from poller.tasks import check_job, submit_job

try:  # the version is pyproject.toml's, read from the installed distribution
    __version__ = version("poller")
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

__all__ = [
    "ConfigurationError",
    "DuplicateSubmission",
    "FailureKind",
    "InvalidJobSpec",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobRecord",
    "JobResult",
    "JobStatus",
    "JobTimedOut",
    "PollerError",
    "ProfileNotAllowed",
    "RecordUnreadable",
    "ResubmitPolicy",
    "Submission",
    "SubmitRejected",
    "WaitTimeout",
    "__version__",
    "app",
    "check_job",
    "job_failed",
    "job_finished",
    "job_resubmitted",
    "job_status_changed",
    "job_stuck",
    "job_submitted",
    "job_succeeded",
    "job_timed_out",
    "submit_job",
]
