"""How a job's tasks look in Flower (and in worker logs): as the Batch job they follow.

Every task of a job runs under its tracking id, so Flower holds one row per job. Celery's
``shadow`` names that row after the job: ``poller: <job name>`` for its submission, then
``poller: <job name> <Batch job id>`` for its checks, so Flower's search finds a job by its
name or its Batch job id whatever its state. A rescheduled check is a Celery retry; it shows the
Batch status and when the next check runs (``CheckScheduled``), with no Python traceback: it is
how a job waits, not an error.
"""

from __future__ import annotations

from typing import Any

from celery.worker.request import Request

from poller.errors import CheckScheduled
from poller.models import POSITIONAL, JobRecord

PREFIX = "poller: "


def submit_name(args: Any, kwargs: Any) -> str | None:
    """The name a submission shows under, or None (Celery's) when it names no job."""
    given = {**dict(zip(POSITIONAL, args or (), strict=False)), **(kwargs or {})}
    name = given.get("job_name")
    return f"{PREFIX}{name}" if isinstance(name, str) and name else None


def check_name(record: JobRecord) -> str:
    """The name a job's checks show under: its name and Batch job id."""
    return f"{PREFIX}{record.job_name} {record.job_id or ''}".rstrip()


class JobTaskRequest(Request):
    """A poller task's request in the worker: a rescheduled check reports no traceback."""

    def on_retry(self, exc_info: Any) -> None:
        """Celery's retry handling; a CheckScheduled's traceback is left out of the event.

        ``exc_info.exception`` wraps Celery's Retry, whose ``exc`` is what the task gave it.
        """
        retry = exc_info.exception.exc
        if isinstance(getattr(retry, "exc", None), CheckScheduled):
            exc_info.traceback = ""
        super().on_retry(exc_info)
