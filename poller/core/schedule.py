"""When a job's next check falls due: the poll policy's backoff, or the events' cap while Batch
events carry the job (polling is then the safety net)."""

from __future__ import annotations

from poller.core.backoff import compute_delay
from poller.core.runtime import Runtime
from poller.models import JobRecord


def next_delay(record: JobRecord, check_number: int | None = None) -> float:
    """Seconds until check number ``check_number`` (default: the next, ``record.checks``)."""
    poll = record.poll
    return compute_delay(
        record.checks if check_number is None else check_number,
        initial_delay=poll.initial_delay,
        max_delay=poll.max_delay,
        factor=poll.factor,
        jitter=poll.jitter,
    )


def next_check(
    rt: Runtime, record: JobRecord, check_number: int | None = None
) -> tuple[float, bool]:
    """Seconds until check number ``check_number`` (default: the next), and whether Batch events
    carry the job until then.

    While events flow, the check waits ``events_poll_max_delay`` (polling is the safety net) and
    no countdown message is sent for it: the job's end event sends its check, and the reconciler
    sends one when it is due. Otherwise the poll policy's delay, as a countdown message.
    """
    if rt.settings.events_queue_url is not None and rt.store.events_flowing():
        return events_delay(rt, record), True
    return next_delay(record, check_number), False


def events_delay(rt: Runtime, record: JobRecord) -> float:
    """Seconds until the safety-net check of a job Batch events carry: events_poll_max_delay,
    jittered as the job's poll policy says."""
    cap = rt.settings.events_poll_max_delay
    return compute_delay(0, initial_delay=cap, max_delay=cap, jitter=record.poll.jitter)
