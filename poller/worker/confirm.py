"""``POLLER_EVENTS_CONFIRM=terminal``: a job's end is believed only when DescribeJobs says so.

An event from the right account and region is still only as trustworthy as the queue it came
through (anyone with ``sqs:SendMessage`` on it could forge one). For those who want more, a
terminal event (SUCCEEDED, FAILED) of a tracked job does not change its record: it makes the
job's check run now, as an ordinary check does, with the observation a coalesced call may have
stored dropped and the job first in its AWS target's observe index. The checks of the ends that
arrive together then share their DescribeJobs calls (up to 100 jobs each, one target a call:
:mod:`poller.core.coalesce`), and what DescribeJobs says is applied through the same path as any
observation. A forged end of a running job records RUNNING, which changes nothing. Off by
default: the events path stays one Redis transaction per batch, with no AWS call.
"""

from __future__ import annotations

from poller.core.tracking import from_its_target
from poller.models import BatchJobView, JobRecord
from poller.runtime import ProcessRuntime

TERMINAL = "terminal"  # the value of POLLER_EVENTS_CONFIRM that turns confirmation on


def ends_to_check(
    rt: ProcessRuntime, views: list[BatchJobView | None], owners: list[str | None]
) -> dict[int, JobRecord]:
    """The terminal events among ``views`` (one per received message, None for a malformed one;
    ``owners``: each one's tracking id, None if not tracked) that their job's check confirms,
    by position, with the job's record; those jobs are made due for an observation now.

    Events of another Batch job (an array child) or from another account or region are left
    out: they are never applied anyway.
    """
    ends = {
        n: (owner, view)
        for n, (view, owner) in enumerate(zip(views, owners, strict=True))
        if view is not None and owner is not None and view.status.is_terminal
    }
    if not ends:
        return {}
    records = {r.tracking_id: r for r in rt.store.records([owner for owner, _ in ends.values()])}
    checked = {
        n: record
        for n, (owner, view) in ends.items()
        if (record := records.get(owner)) is not None
        and not record.is_terminal
        and record.job_id == view.job_id
        and from_its_target(record, view)
    }
    rt.store.observations.observe_now(list({r.tracking_id: r for r in checked.values()}.values()))
    return checked
