"""When a job's next check falls due: the poll policy's backoff, or the events' cap while Batch
events carry the job (polling is then the safety net)."""

from __future__ import annotations

import time

from poller.core.backoff import aligned, compute_delay
from poller.core.ports import Runtime
from poller.models import JobRecord


def next_delay(record: JobRecord, check_number: int | None = None) -> float:
    """Seconds until check number ``check_number`` (default: the next, ``record.schedule.checks``): the
    policy's backoff, on the fleet's tick grid of that check's base delay when the policy
    aligns (see :func:`poller.core.backoff.aligned`)."""
    poll = record.poll
    number = record.schedule.checks if check_number is None else check_number

    def delay_with(jitter: float) -> float:
        return compute_delay(
            number, initial_delay=poll.initial_delay, max_delay=poll.max_delay,
            factor=poll.factor, jitter=jitter,
        )  # fmt: skip

    delay = delay_with(poll.jitter)
    if not poll.align:
        return delay
    return aligned(delay, delay_with(0.0), time.time())


def next_check(
    rt: Runtime,
    record: JobRecord,
    check_number: int | None = None,
    where: tuple[str | None, str | None] | None = None,
) -> tuple[float, bool]:
    """Seconds until check number ``check_number`` (default: the next), and whether Batch events
    carry the job until then.

    While events flow from the job's own target (its account and region; ``where``: the region
    and account SubmitJob just reported), the check waits ``events_poll_max_delay`` (polling is
    the safety net) and no countdown message is sent for it: the job's end event sends its
    check, and the reconciler sends one when it is due. Otherwise (no events from that target:
    its region's events reach no queue poller reads) the poll policy's delay, as a countdown.
    """
    region, account = where or (record.aws_region, record.aws_account)
    if rt.settings.events_queue_url is not None and rt.store.fleet.events_flowing(account, region):
        return events_delay(rt, record), True
    return next_delay(record, check_number), False


def events_delay(rt: Runtime, record: JobRecord) -> float:
    """Seconds until the safety-net check of a job Batch events carry: events_poll_max_delay,
    jittered as the job's poll policy says."""
    cap = rt.settings.events_poll_max_delay
    return compute_delay(0, initial_delay=cap, max_delay=cap, jitter=record.poll.jitter)
