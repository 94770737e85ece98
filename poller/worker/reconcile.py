"""No job forgotten: give a new check to active jobs whose check is overdue, or due without a
message (Batch events carry the job).

A check travels as a countdown message. If that message is lost (its worker was killed before
the broker's visibility timeout brought it back, the broker was flushed or failed over), the
job would stay active forever with nothing scheduled. Every active job is indexed by the time of
its next expected activity; a periodic pass re-sends a check (or the submission, for a job never
submitted) for those overdue by more than ``reconcile_grace``. A re-sent message that turns out
to be a duplicate is harmless: checks are fenced by their number, submissions by the record.
While Batch events flow, a job's next check has no countdown message at all
(``JobRecord.schedule.awaits_events``): the pass makes it when it is due, polling's safety net, in bulk
(:mod:`poller.worker.safety_net`: a DescribeJobs call per 100 jobs, a task only for those that ended).
The same pass sends the signals a dead worker stored but never sent (:mod:`poller.core.outbox`).

The pass runs inside the workers (:class:`ReconcileStep`, a Celery worker bootstep with a
thread of its own), on a Redis lock, so one worker at a time does it whatever the number of workers,
and no extra process (beat) has to be deployed and kept alive.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from poller.core import outbox, tracking
from poller.models import JobRecord, utcnow
from poller.runtime import ProcessRuntime, get_runtime
from poller.settings import Settings, get_settings
from poller.store import Change
from poller.worker import resend, safety_net
from poller.worker.thread_step import ThreadStep

logger = logging.getLogger(__name__)

LOCK = "reconcile"  # the store's lock one worker holds per interval
BATCH = 1000  # due jobs read at a time; a pass goes on while it has time (half an interval)
PUSH_CHUNK = 100  # jobs whose deadlines one transaction pushes
BACKLOG_GRACE_FACTOR = 10  # the grace is this many times longer while poller's queues are busy


@dataclass(frozen=True)
class ReconcileReport:
    """What one pass did."""

    checks_resent: int = 0
    submits_resent: int = 0
    signals_resent: int = 0
    checks_due: int = 0  # scheduled checks of jobs Batch events carry, sent as tasks
    checks_swept: int = 0  # their checks made in bulk here (no task: the job goes on)


def reconcile(rt: ProcessRuntime, app: Any, now: datetime | None = None) -> ReconcileReport:
    """Re-send (through Celery ``app``) the lost message of every active job overdue by more
    than the grace period, and send the due checks of jobs Batch events carry."""
    started = time.monotonic()
    now = now or utcnow()
    grace = timedelta(seconds=rt.settings.reconcile_grace)
    waiting = waiting_messages(app, rt.settings)
    if waiting:
        # A message overdue while poller's queues hold a backlog is most likely in it (a burst
        # of submissions): re-sending it would only grow the backlog.
        logger.info("reconcile: %d message(s) wait in poller's queues: a longer grace", waiting)
        grace *= BACKLOG_GRACE_FACTOR
    late = now - grace
    # Receivers run here: stop well within the lock's interval, so no other pass overlaps; the
    # first half of that time for due checks, the rest for unsent signals
    checks_until = started + rt.settings.reconcile_interval / 4
    until = started + rt.settings.reconcile_interval / 2
    sent: Counter[str] = Counter()
    # Never-submitted jobs first, then submitted ones, soonest due first, BATCH at a time until
    # none is left or the pass's time is up. Jobs events carry have no message out: their
    # check is due at next_check_at itself; the others' only after the grace.
    queued = rt.store.active(due_before=late, limit=BATCH, queued=True)
    if waiting and queued:
        # Each waiting message may be one of these submissions: at most (overdue - waiting) of
        # them can be lost. So a burst queued longer than the grace is not sent twice, and a
        # lost submission goes once the backlog is smaller (docs/operations/reliability.md).
        overdue = rt.store.count_active(due_before=late, queued=True)
        queued = queued[: max(0, overdue - waiting)]
    sent += _send_due(rt, app, queued, now, grace, checks_until)
    skipped = 0  # due but not sent (within the grace): still in the index's range
    while time.monotonic() < checks_until:
        ids = rt.store.active(due_before=now, limit=BATCH, start=skipped)
        sent_now = _send_due(rt, app, ids, now, grace, checks_until)
        sent += sent_now
        skipped += len(ids) - sum(sent_now.values())
        if len(ids) < BATCH:
            break
    checks, submits, scheduled = sent["check"], sent["submit"], sent["scheduled"]
    swept = sent["swept"]
    rt.store.counters.count_resends(checks + submits)
    if checks or submits:
        logger.warning(
            "reconcile: re-sent %d lost check(s) and %d lost submission(s)", checks, submits
        )
    if swept:
        logger.info("reconcile: checked %d job(s) Batch events carry in bulk", swept)
    if scheduled:
        logger.info("reconcile: sent %d due check(s) of jobs Batch events carry", scheduled)
    signals_sent = outbox.resend_stale(rt, late.timestamp(), until)
    return ReconcileReport(checks, submits, signals_sent, scheduled, swept)


def _send_due(
    rt: ProcessRuntime, app: Any, ids: list[str], now: datetime, grace: timedelta, until: float
) -> Counter[str]:
    """Send the message of each of these jobs that is due (see :func:`reconcile`), after the
    due checks of jobs Batch events carry were made in bulk (until the monotonic time
    ``until``); counts the jobs dealt with:
    ``check`` (lost), ``submit`` (lost), ``scheduled`` (a carried job's check, sent), ``swept``
    (a carried job checked in bulk, going on)."""
    late = now - grace
    due = [r for r in rt.store.records(ids) if _carried(r) or _overdue(r, late)]
    sent: Counter[str] = Counter()  # due jobs dealt with (they leave the due range)
    flowing = rt.settings.events_queue_url is not None and rt.store.fleet.events_flowing()
    if flowing and any(_carried(r) for r in due):
        swept = safety_net.sweep(rt, [r for r in due if _carried(r)], now, until)
        sent["swept"] = swept.checked - swept.ended
        # The jobs that ended (and those whose check must do more) still get their task
        due = [r for r in due if not _carried(r)] + swept.for_tasks
    # Push each job's deadline first (fenced on the record's version): if two passes ever
    # overlap, only one of them sends.
    pushed: dict[str, Change] = {}
    for start in range(0, len(due), PUSH_CHUNK):
        chunk = due[start : start + PUSH_CHUNK]
        decisions = {r.tracking_id: _push_deadline(r.version, now + grace) for r in chunk}
        pushed |= rt.store.update_each(decisions)[0]
    checks = []
    for record in due:
        if record.tracking_id not in pushed:
            continue
        if record.job_id is None:
            _resend_submit(app, record)
            sent["submit"] += 1
            continue
        if not _carried(record):
            _log_overdue_check(record)
        checks.append(record)
        sent["scheduled" if _carried(record) else "check"] += 1
    if checks:  # one publish batch
        resend.send_checks(app, checks)
    return sent


def waiting_messages(app: Any, settings: Settings) -> int:
    """Messages waiting in poller's queues (POLLER_QUEUE and its checks' queue) on the broker,
    Redis or RabbitMQ; 0 when that cannot be read (the grace is then the usual one)."""
    waiting = 0
    try:
        with app.connection_for_read() as connection:
            for queue in (settings.queue, settings.check_queue):
                # not declared yet (a channel error): nothing waits in it
                with connection.channel() as channel, suppress(*connection.channel_errors):
                    waiting += channel.queue_declare(queue=queue, passive=True).message_count
    except Exception as err:  # the broker unreachable: this pass keeps the usual grace
        logger.debug("could not read poller's queue lengths: %r", err)
    return waiting


def _carried(record: JobRecord) -> bool:
    return record.schedule.awaits_events and record.job_id is not None


def _overdue(record: JobRecord, late: datetime) -> bool:
    return record.schedule.next_check_at is None or record.schedule.next_check_at < late


def _push_deadline(seen_version: int, when: datetime) -> Callable[[JobRecord], Change | None]:
    """Reschedule a record only if nobody changed it since it was read as due."""

    def decide(record: JobRecord) -> Change | None:
        if record.version != seen_version:
            return None
        return tracking.rescheduled(record, when)

    return decide


def _log_overdue_check(record: JobRecord) -> None:
    logger.warning(
        "job %s: check overdue since %s; sending a new one",
        record.tracking_id,
        record.schedule.next_check_at,
    )


def _resend_submit(app: Any, record: JobRecord) -> None:
    logger.warning(
        "job %s: submission overdue since %s; sending it again",
        record.tracking_id,
        record.schedule.next_check_at,
    )
    resend.send_submit(app, record)


def run_if_leader(rt: ProcessRuntime, app: Any) -> ReconcileReport | None:
    """Run a pass unless another worker holds the lock for this interval."""
    # The lock expires on its own: a worker that dies holding it blocks one interval at most.
    if not rt.store.fleet.take_lock(LOCK, rt.settings.reconcile_interval):
        return None
    return reconcile(rt, app)


class ReconcileStep(ThreadStep):
    """Worker bootstep: run :func:`run_if_leader` every ``reconcile_interval`` seconds.

    It runs in a thread of its own: the worker's timer shares the consumer's event loop, which
    a pass over hundreds of jobs (or a slow Redis) must not stall. Stopping lets the pass under
    way finish.
    """

    thread_name = "poller-reconcile"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._app = worker.app

    def _loop(self) -> None:
        # Settings only here: a runtime (Redis, boto3) that fails to build is a failed pass.
        interval = get_settings().reconcile_interval
        last_error = None
        while not self._stopping.wait(interval):
            try:
                rt = get_runtime()
                run_if_leader(rt, self._app)
                last_error = None
            except Exception as err:  # the thread must outlive any failure; the next pass retries
                if repr(err) == last_error:
                    logger.warning("reconcile pass failed again: %r", err)
                else:
                    logger.exception("reconcile pass failed (retrying every %.0fs)", interval)
                last_error = repr(err)
