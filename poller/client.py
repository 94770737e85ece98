"""JobHandle: read, await and cancel a tracked job from any process, no worker needed."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from poller.core import lifecycle, runtime
from poller.core.redaction import public
from poller.errors import WaitTimeout
from poller.models import JobRecord, JobResult, JobStatus
from poller.store import JobStore

logger = logging.getLogger(__name__)

_RESYNC_SECONDS = 5.0  # re-read the record at least this often while waiting


class JobHandle:
    """A tracked job, by its tracking id (the task id of its ``submit_job`` call).

    >>> handle = JobHandle(submit_job.delay("report", "queue", "definition").id)  # doctest: +SKIP
    >>> handle.status                                                             # doctest: +SKIP
    <JobStatus.RUNNING: 'RUNNING'>
    >>> handle.wait(timeout=600)["status"]                                        # doctest: +SKIP
    'SUCCEEDED'
    """

    def __init__(self, tracking_id: str, store: JobStore | None = None) -> None:
        self.tracking_id = tracking_id
        self._store = store

    @property
    def store(self) -> JobStore:
        """The job store this handle reads (the configured one unless given)."""
        if self._store is None:
            self._store = runtime.get_store()
        return self._store

    @classmethod
    def from_job_id(cls, job_id: str, store: JobStore | None = None) -> JobHandle:
        """The handle of the tracked job whose Batch job id is ``job_id``; JobNotFound if none."""
        handle = cls("", store)
        handle.tracking_id = handle.store.tracking_id_for_job(job_id)
        return handle

    @property
    def record(self) -> JobRecord:
        """The job's stored record, read now (environment values and secrets of its spec
        masked: :mod:`poller.core.redaction`); JobNotFound when there is none."""
        return public(self.store.get(self.tracking_id))

    @property
    def status(self) -> JobStatus:
        """The job's status, read now."""
        return self.record.status

    def watch(self, timeout: float | None = None) -> Iterator[JobRecord]:
        """Yield the record now and after each of its events, ending with the terminal one.

        Wakes on the Redis event channel rather than re-reading the record in a loop (a
        re-read every few seconds only guards against a missed message). Raises WaitTimeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.store.subscribe() as pubsub:
            # Subscribed before reading, so an event sent in between is not missed.
            while True:
                record = self.record
                yield record
                if record.is_terminal:
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeout(
                        f"job {self.tracking_id} still {record.status.value} after {timeout}s"
                    )
                self._next_event(pubsub, min(remaining or _RESYNC_SECONDS, _RESYNC_SECONDS))

    def wait(self, timeout: float | None = None) -> JobResult:
        """Block until the job ends and return its result (WaitTimeout when it does not).

        The same :class:`~poller.JobResult` the submission's ``.get()`` returns and the next
        chain step receives, whatever the job's status (``.get()`` raises for a failure).
        """
        record = self.record
        for record in self.watch(timeout):  # noqa: B007 - the last one is the terminal record
            pass
        return record.result()

    def _next_event(self, pubsub: Any, timeout: float) -> None:
        """Return when an event of this job arrives, or after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=left)
            if message is None:
                continue
            if json.loads(message["data"]).get("tracking_id") == self.tracking_id:
                return

    def cancel(self, reason: str = "cancelled through poller") -> JobRecord:
        """Stop the Batch job (TerminateJob) and record why; the outcome follows as FAILED."""
        return lifecycle.cancel(self._runtime(), self.tracking_id, reason)

    def _runtime(self) -> runtime.Runtime:
        rt = runtime.get_runtime()
        if self._store is None or self._store is rt.store:
            return rt
        return dataclasses.replace(rt, store=self._store)

    def __repr__(self) -> str:
        return f"JobHandle({self.tracking_id!r})"
