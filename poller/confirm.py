"""``POLLER_EVENTS_CONFIRM=terminal``: a job's end is believed only when DescribeJobs says so.

An event from the right account and region is still only as trustworthy as the queue it came
through (anyone with ``sqs:SendMessage`` on it could forge one). For those who want more, a
terminal event (SUCCEEDED, FAILED) of a tracked job is confirmed before its record changes: the
jobs of one received batch are described together, one DescribeJobs call per AWS target (each
call up to 100 ids), and what DescribeJobs says is applied in place of the event, through the same
path as any observation. A forged end of a running job then records RUNNING, which changes
nothing. Off by default: the events path stays one Redis transaction per batch, no AWS call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from poller.errors import PollerError
from poller.models import BatchJobView
from poller.runtime import Runtime
from poller.tracking import from_its_target

logger = logging.getLogger(__name__)

TERMINAL = "terminal"  # the value of POLLER_EVENTS_CONFIRM that turns confirmation on


@dataclass
class Confirmed:
    """What DescribeJobs said of the batch's terminal events, by the event's position."""

    views: dict[int, BatchJobView] = field(default_factory=dict)  # apply this instead
    unknown: set[int] = field(default_factory=set)  # DescribeJobs does not know the job: drop
    pending: set[int] = field(default_factory=set)  # AWS did not answer: leave for redelivery


def terminal_events(
    rt: Runtime, views: list[BatchJobView | None], owners: list[str | None]
) -> Confirmed:
    """Describe the jobs of the terminal events among ``views`` (one per received message,
    None for a malformed one; ``owners``: each one's tracking id, None if not tracked)."""
    confirmed = Confirmed()
    ends = {
        n: (owner, view)
        for n, (view, owner) in enumerate(zip(views, owners, strict=True))
        if view is not None and owner is not None and view.status.is_terminal
    }
    if not ends:
        return confirmed
    records = {r.tracking_id: r for r in rt.store.records([owner for owner, _ in ends.values()])}
    by_target: dict[str, list[int]] = {}
    for n, (owner, view) in ends.items():
        record = records.get(owner)
        # Others (not this job's, or from another account or region) are never applied anyway
        if record is not None and record.job_id == view.job_id and from_its_target(record, view):
            by_target.setdefault(record.target_key, []).append(n)
    for positions in by_target.values():
        record = records[ends[positions[0]][0]]
        job_ids = {ends[n][1].job_id for n in positions}
        try:
            described = rt.batch_for(record).describe(job_ids)
        except PollerError as err:  # throttled, refused, unreachable: the event comes back
            logger.warning(
                "could not confirm %d job end(s) with DescribeJobs: %s", len(job_ids), err
            )
            confirmed.pending.update(positions)
            continue
        for n in positions:
            owner, view = ends[n]
            seen = described.get(view.job_id)
            if seen is None:
                confirmed.unknown.add(n)
                continue
            confirmed.views[n] = seen
            if not seen.status.is_terminal:
                logger.warning(
                    "job %s: an event said %s, DescribeJobs says %s: the event is not applied",
                    owner, view.status.value, seen.status.value,
                )  # fmt: skip
    return confirmed
