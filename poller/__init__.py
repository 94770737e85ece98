"""poller: run AWS Batch jobs from Celery and know when they are done.

Public API::

    from poller import submit_job, JobHandle, JobStatus

    result = submit_job.delay("nightly-report", "my-queue", "report-def", parameters={"day": "1"})
    outcome = result.get(timeout=3600)  # a JobResult; JobFailed etc. when the job did not succeed
    outcome = JobHandle(result.id).wait(timeout=3600)  # the same JobResult, whatever the status
    outcome = await JobHandle(result.id).wait_async(timeout=3600)  # the same, in an event loop

Typed for ``mypy --strict`` with celery-types installed (``pip install poller[typing]``):
``submit_job.delay(...)`` is checked against :func:`poller.tasks.submit_job_parameters`, and
``.get()`` is a :class:`JobResult`.
"""

from importlib.metadata import PackageNotFoundError, version

from poller.app import app
from poller.client import JobHandle
from poller.errors import (
    ConfigurationError,
    DuplicateSubmission,
    InvalidJobSpec,
    JobEnded,
    JobFailed,
    JobNotFound,
    JobTimedOut,
    PollerError,
    ProfileNotAllowed,
    RecordUnreadable,
    SubmitRejected,
    Unreachable,
    WaitTimeout,
)
from poller.models import (
    FailureKind,
    JobRecord,
    JobResult,
    JobStatus,
    PollOptions,
    ResubmitOptions,
    ResubmitPolicy,
    Submission,
)
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
from poller.tasks import submit_job

try:  # the version is pyproject.toml's, read from the installed distribution
    __version__ = version("poller")
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

__all__ = [
    "ConfigurationError",
    "DuplicateSubmission",
    "FailureKind",
    "InvalidJobSpec",
    "JobEnded",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobRecord",
    "JobResult",
    "JobStatus",
    "JobTimedOut",
    "PollOptions",
    "PollerError",
    "ProfileNotAllowed",
    "RecordUnreadable",
    "ResubmitOptions",
    "ResubmitPolicy",
    "Submission",
    "SubmitRejected",
    "Unreachable",
    "WaitTimeout",
    "__version__",
    "app",
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
