"""A transition's signals, sent at least once.

The store keeps each transition's events in the job's outbox, in the transaction that stores
the transition. :func:`deliver` sends the signals and takes them out. A worker killed between
the two leaves them there: :func:`resend_stale`, run by the reconciler, sends the events left
for longer than the grace period with the job's current record (a live worker sends its own
within milliseconds). Each sending of one event carries the same ``event_id``, for receivers
that must not act twice when a worker dies just after sending.
"""

from __future__ import annotations

import json
import logging
import time

import redis

from poller.core.ports import Runtime
from poller.models import JobRecord
from poller.models.announcement import Announcement
from poller.store import Change, JobStore

logger = logging.getLogger(__name__)

BATCH = 500  # jobs whose unsent signals one pass looks at; the next pass takes the rest


def deliver(rt: Runtime, change: Change | None) -> None:
    """Send the signals of a change just stored, then take them out of the outbox."""
    deliver_each(rt, [change] if change is not None else [])


def deliver_each(rt: Runtime, changes: list[Change]) -> None:
    """:func:`deliver` for changes stored together (one round trip to take them out)."""
    sent = [change for change in changes if change.events]
    if not sent:
        return
    for change in sent:
        rt.announce(change.events)
    forget(rt.store, *sent)


def forget(store: JobStore, *changes: Change) -> None:
    """Take changes' events out of the outbox (their signals were sent, or must not be).

    A Redis error is logged, not raised: the transitions are stored and their signals went
    out; the reconciler sends them once more, with the same event ids, after the grace.
    """
    try:
        store.unsent.sent_each({c.record.tracking_id: c.stored for c in changes})
    except redis.RedisError as err:
        logger.warning(
            "jobs %s: signals sent, but not noted as sent (%s): they may be sent again",
            ", ".join(c.record.tracking_id for c in changes), err,
        )  # fmt: skip


def resend_stale(rt: Runtime, stored_before: float, until: float) -> int:
    """Send the signals still in the outbox that were stored before ``stored_before`` (epoch
    s), stopping at ``until`` (monotonic s: while this worker holds the reconcile lock);
    returns how many were sent."""
    store = rt.store
    sent = 0
    for tracking_id, entries in store.unsent.older_than(stored_before, BATCH).items():
        if time.monotonic() > until:
            break
        stale = [raw for raw in entries if json.loads(raw)["stored_at"] < stored_before]
        record = store.find(tracking_id)
        events = _readable(tracking_id, stale, record) if record else []
        if events:
            logger.warning(
                "job %s: sending %d signal(s) its worker stored but did not send", tracking_id,
                len(events),
            )  # fmt: skip
        rt.announce(events)
        store.unsent.sent(tracking_id, stale)
        sent += len(events)
    return sent


def _readable(tracking_id: str, entries: list[str], record: JobRecord) -> list[Announcement]:
    """The outbox entries that parse as announcements; one that does not is logged and left
    out (the store takes it out with the rest)."""
    announcements = []
    for raw in entries:
        try:
            announcements.append(Announcement.from_json(json.loads(raw), record))
        except (ValueError, KeyError, TypeError) as err:
            logger.error("job %s: dropping an unreadable outbox entry: %s", tracking_id, err)
    return announcements
