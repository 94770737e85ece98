"""Polling's safety net in bulk: the due checks of jobs Batch events carry, made by the
reconciler itself, a DescribeJobs call per 100 jobs.

While events flow, a job's next check waits ``events_poll_max_delay`` and has no countdown
message (``JobRecord.schedule.awaits_events``): the reconciler makes it when it is due. Here a page of
due jobs costs one DescribeJobs call of their AWS target and one Redis transaction, not a Celery
task per job: tracked jobs / ``events_poll_max_delay`` tasks a second would take the worker from
the submissions, and their DescribeJobs calls would rarely be shared, their due times being
spread (docs/performance.md, "The safety net in bulk"). Each job's observation is applied as
its check would apply it (:func:`poller.core.tracking.checked`: counted, never backwards, each
transition and signal once, the next safety-net check scheduled), fenced on the version read as
due.

Only the jobs that need a task get one: those that ended (their check produces the Celery result
and continues the canvas: found ended here, or ended earlier with their result never produced),
and those whose check does more than apply an observation (revoked, given up, timed out when
stuck, or AWS refused the call: the task handles it with its grace). A page Batch cannot describe
for now (throttling, 5xx) waits for the next pass rather than becoming a hundred tasks that would
each call DescribeJobs.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from poller.aws.batch import chunks
from poller.core import budget, outbox, schedule, tracking
from poller.errors import BatchMisconfigured, BatchUnavailable, CallDeferred, InvalidJobSpec
from poller.models import DESCRIBE_PAGE, BatchJobView, JobRecord, JobStatus
from poller.runtime import ProcessRuntime
from poller.store import Change

logger = logging.getLogger(__name__)


@dataclass
class Swept:
    """What a sweep did: jobs checked here, DescribeJobs calls, and the jobs left to a task."""

    checked: int = 0
    calls: int = 0
    ended: int = 0
    for_tasks: list[JobRecord] = field(default_factory=list)


def sweep(rt: ProcessRuntime, due: list[JobRecord], now: datetime, until: float) -> Swept:
    """Make the due safety-net checks of ``due`` (jobs Batch events carry, read as due), page
    by page until the monotonic time ``until`` (the rest stay due for the next pass).

    Jobs changed since they were read are skipped (an event or a check got there first), and so
    are pages Batch could not describe for now (throttling, 5xx: the next pass tries again).
    Returns what was done, and the records whose check must go out as a task.
    """
    swept = Swept()
    pages: dict[str, list[JobRecord]] = defaultdict(list)
    for record in due:
        # As a check would: a finished job (its result maybe never produced: the task that
        # would have was lost), a revoked one or one to give up on is its task's to handle.
        if record.is_terminal or record.celery.revoked or tracking.give_up_reason(record, now):
            swept.for_tasks.append(record)
        else:
            pages[record.target_key].append(record)
    started = time.monotonic()
    for records in pages.values():
        for page in chunks(records, DESCRIBE_PAGE):
            if time.monotonic() > until:
                break
            _check_page(rt, page, swept, now + timedelta(seconds=time.monotonic() - started))
    if swept.calls:
        logger.debug(
            "safety net: %d job(s) checked in %d DescribeJobs call(s), %d ended",
            swept.checked, swept.calls, swept.ended,
        )  # fmt: skip
    return swept


def _check_page(rt: ProcessRuntime, page: list[JobRecord], swept: Swept, now: datetime) -> None:
    """One DescribeJobs call for the page, then one transaction applying what it saw (at
    ``now``, the pass's time as this page starts: what Batch says is no older than that)."""
    try:
        budget.take(rt, "DescribeJobs", budget.target_of(rt, page[0]))
        views = rt.batch_for(page[0]).describe(str(r.job_id) for r in page)
    except CallDeferred as err:  # the fleet's call budget is spent for now
        logger.info("safety net: %s; the next pass goes on", err)
        return
    except (BatchMisconfigured, InvalidJobSpec) as err:  # each job's check task handles it
        logger.warning("safety net: DescribeJobs refused (%s); sending those checks as tasks", err)
        swept.for_tasks += page
        return
    except BatchUnavailable as err:
        logger.warning("safety net: DescribeJobs failed (%s); the next pass tries again", err)
        return
    swept.calls += 1
    handed_over: set[str] = set()
    decisions = {
        r.tracking_id: _observed(rt, r, views.get(str(r.job_id)), now, handed_over) for r in page
    }
    changes, _ = rt.store.update_each(decisions)
    outbox.deliver_each(rt, list(changes.values()))
    swept.checked += len(changes)
    for record in page:
        change = changes.get(record.tracking_id)
        if change is not None and change.record.is_terminal:
            swept.ended += 1
            swept.for_tasks.append(change.record)
        elif record.tracking_id in handed_over:
            swept.for_tasks.append(record)


def _observed(
    rt: ProcessRuntime,
    seen: JobRecord,
    view: BatchJobView | None,
    now: datetime,
    handed_over: set[str],
) -> Callable[[JobRecord], Change | None]:
    """The job's check applying ``view``, if the record is still the one read as due."""
    delay = schedule.events_delay(rt, seen)

    def decide(record: JobRecord) -> Change | None:
        handed_over.discard(record.tracking_id)  # decided afresh on a retried transaction
        if record.version != seen.version:
            return None
        change = tracking.checked(
            record,
            view,
            check_no=record.schedule.checks,
            now=now,
            next_check_at=now + timedelta(seconds=delay),
            limits=rt.limits,
            awaits_events=True,
        )
        if change is not None and change.record.status is JobStatus.TIMED_OUT:
            handed_over.add(record.tracking_id)  # its check also terminates the Batch job
            return None
        return change

    return decide
