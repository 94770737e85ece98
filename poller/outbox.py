"""A transition's signals, sent at least once.

The store keeps each transition's events in the job's outbox, in the transaction that stores
the transition. :func:`deliver` sends the signals and takes them out. A worker killed between
the two leaves them there: :func:`resend_stale`, run by the reconciler, sends the events left
for longer than the grace period with the job's current record (a live worker sends its own
within milliseconds). Each sending of one event carries the same ``event_id``, for receivers
that must not act twice when a worker dies just after sending.
"""

from __future__ import annotations

import logging

from poller import signals
from poller.signals import Event
from poller.store import Change, JobStore

logger = logging.getLogger(__name__)

BATCH = 500  # jobs whose unsent signals one pass sends; the next pass takes the rest


def deliver(store: JobStore, change: Change | None) -> None:
    """Send the signals of a change just stored, then take them out of the outbox."""
    if change is None or not change.events:
        return
    signals.send(change.events)
    store.signals_sent(change.record.tracking_id, [event.to_json() for event in change.events])


def resend_stale(store: JobStore, stored_before: float) -> int:
    """Send the signals still in the outbox that were stored before ``stored_before`` (epoch s);
    returns how many were sent."""
    sent = 0
    for tracking_id, entries in store.unsent(stored_before, BATCH).items():
        record = store.find(tracking_id)
        events = [Event.from_json(raw, record) for raw in entries] if record else []
        logger.warning(
            "job %s: sending %d signal(s) its worker stored but did not send", tracking_id,
            len(events),
        )  # fmt: skip
        signals.send(events)
        store.signals_sent(tracking_id, entries)
        sent += len(events)
    return sent
