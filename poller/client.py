"""JobHandle: read, await and cancel a tracked job from any process, no worker needed.

Waiting costs the waiter its own job's events only (the job's pub/sub channel), in threads
(:meth:`JobHandle.wait`, :meth:`JobHandle.watch`) and in an event loop
(:meth:`JobHandle.wait_async`, :meth:`JobHandle.watch_async`, on redis-py's asyncio client,
which never blocks the loop: one connection pair per loop serves all its waiters).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from poller import runtime
from poller.core import lifecycle
from poller.core.redaction import public
from poller.errors import WaitTimeout
from poller.models import JobRecord, JobResult, JobStatus
from poller.store import JobStore
from poller.store.waiters import AsyncWaiters, parse_record

logger = logging.getLogger(__name__)

_RESYNC_SECONDS = 5.0  # a thread's waiter re-reads the record at least this often
# An event loop's waiters re-read theirs this often: pub/sub loses only what a reconnect
# drops, and a thousand waiters re-reading every few seconds would cost more than their events
ASYNC_RESYNC_SECONDS = 30.0
_TERMINAL = frozenset(status.value for status in JobStatus.TERMINAL)
# Each event loop's waiters, per store (a loop that is gone takes its own with it)
_WAITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[AsyncWaiters]] = (
    weakref.WeakKeyDictionary()
)


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
        with self.store.subscribe(self.tracking_id) as pubsub:
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
        """Return when an event of this job arrives (its channel carries no other), or after
        ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            if pubsub.get_message(timeout=left) is not None:
                return

    async def watch_async(self, timeout: float | None = None) -> AsyncIterator[JobRecord]:
        """:meth:`watch` for an event loop: the record now and after each of its events,
        ending with the terminal one (``async for record in handle.watch_async(): ...``).
        Never blocks the loop; raises WaitTimeout."""
        waiters = self._async_waiters()
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        async with waiters.listen(self.tracking_id) as events:
            while True:
                record = public(await waiters.record(self.tracking_id))
                yield record
                if record.is_terminal:
                    return
                try:  # the deadline covers the waits only, never the caller's own code
                    async with asyncio.timeout_at(deadline):
                        await _next_async(events)
                except TimeoutError:
                    raise self._timed_out(timeout) from None

    async def wait_async(self, timeout: float | None = None) -> JobResult:
        """:meth:`wait` for an event loop: ``await handle.wait_async(timeout=600)`` returns the
        job's result once it ends (WaitTimeout when it does not). Never blocks the loop; only
        an event that may end the job wakes it (the others never reach it), to read the record
        again."""
        waiters = self._async_waiters()
        try:
            async with (
                asyncio.timeout(timeout),
                waiters.listen(self.tracking_id, keep=_may_end) as events,
            ):
                # Only the status is looked at until it is terminal: JSON, not the whole model
                while not _ended(
                    self.tracking_id, raw := await waiters.raw_record(self.tracking_id)
                ):
                    await _next_async(events)
        except TimeoutError:
            raise self._timed_out(timeout) from None
        return parse_record(self.tracking_id, raw).result()

    def _async_waiters(self) -> AsyncWaiters:
        """The running loop's waiters of this handle's store (created on first use)."""
        loop = asyncio.get_running_loop()
        per_loop = _WAITERS.setdefault(loop, [])
        per_loop[:] = [waiters for waiters in per_loop if not waiters.closed]
        for waiters in per_loop:
            if waiters.store is self.store:
                return waiters
        per_loop.append(waiters := AsyncWaiters(self.store))
        return waiters

    def _timed_out(self, timeout: float | None) -> WaitTimeout:
        return WaitTimeout(f"job {self.tracking_id} did not end within {timeout}s")

    def cancel(self, reason: str = "cancelled through poller") -> JobRecord:
        """Stop the Batch job (TerminateJob) and record why; the outcome follows as FAILED."""
        return lifecycle.cancel(self._runtime(), self.tracking_id, reason)

    def _runtime(self) -> runtime.ProcessRuntime:
        rt = runtime.get_runtime()
        if self._store is None or self._store is rt.store:
            return rt
        return dataclasses.replace(rt, store=self._store)

    def __repr__(self) -> str:
        return f"JobHandle({self.tracking_id!r})"


def _ended(tracking_id: str, raw: str) -> bool:
    """True when a job's stored record (its JSON) says it ended; a record without a status is
    read properly, which says why it cannot be (RecordUnreadable)."""
    try:
        status = json.loads(raw).get("status")
    except (ValueError, AttributeError):
        status = None
    if not isinstance(status, str):
        return parse_record(tracking_id, raw).is_terminal
    return status in _TERMINAL


def _may_end(event: str) -> bool:
    """True for an event (its JSON) whose status is terminal: the job may have ended (a
    resubmitted job's failure has one too; its record says it goes on)."""
    return json.loads(event).get("status") in _TERMINAL


async def _next_async(events: asyncio.Queue[str]) -> None:
    """Return once an event arrives (at once when some arrived meanwhile: they are dropped, the
    record says what they did), or after ASYNC_RESYNC_SECONDS."""
    if not events.empty():
        while not events.empty():
            events.get_nowait()
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ASYNC_RESYNC_SECONDS):
            await events.get()
