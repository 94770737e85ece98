"""Coalesced status checks: one DescribeJobs call for up to 100 jobs.

Every job keeps its own countdown-scheduled check (the lifecycle does not change), but the AWS
call is shared. A check that has to call AWS claims up to 99 other active jobs whose checks are
due within ``coalesce_window`` seconds, describes them together with its own job, and stores what
it saw for each. When those jobs' own checks run, they use the stored observation while it is
fresh (made at most ``coalesce_window`` before the check fell due) instead of calling AWS again.

Claims are Redis keys taken with SET NX and expiring on their own, so several worker processes on
several hosts never describe the same job in the same moment, and a worker that dies holding
claims blocks nothing for longer than the window. At scale, checks due in the same second are
described together: close to ceil(active jobs / 100) calls per round.

The jobs to describe come from the store's ``observe`` index: each submitted job with the time it
next needs an observation. That is its next check, until a coalesced call observes it; then it
moves to the observation's time plus the backoff cap (less the window), so that a job whose own
check runs late is still described at least that often. Under a backlog the most overdue jobs
have an observation waiting for their late check and are out of the way. The store runs the
claims (one Lua script walking that index soonest first, in one round trip); this module decides
what to claim, for how long, and what an observation is still good for. It returns what it saw;
the lifecycle applies it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from poller.core import budget
from poller.core.ports import Runtime
from poller.errors import BatchThrottled, CallDeferred, ObservationPending, PollerError
from poller.models import DESCRIBE_PAGE, BatchJobView, JobRecord, utcnow

logger = logging.getLogger(__name__)

SCAN_LIMIT = 10 * DESCRIBE_PAGE  # due jobs looked at per claim at most (some claimed by others)

__all__ = ["ObservationPending", "Observed", "observe"]


@dataclass(frozen=True)
class Observed:
    """What one check learned: its own job's view (None: DescribeJobs did not return it), and
    the other jobs the same call saw finished, with their views, for the lifecycle to apply."""

    view: BatchJobView | None
    others_ended: list[tuple[JobRecord, BatchJobView]] = field(default_factory=list)


def observe(rt: Runtime, record: JobRecord) -> Observed:
    """What Batch says about ``record``'s job now, and what the same call saw of others.

    Raises ObservationPending when another check is describing this job at this moment: the
    caller retries shortly and then finds that check's observation, instead of a second call.
    """
    assert record.job_id is not None
    if not rt.settings.coalesce:
        budget.take(rt, "DescribeJobs", budget.target_of(rt, record))
        return Observed(rt.batch_for(record).describe([record.job_id]).get(record.job_id))
    now = utcnow()
    stored = rt.store.observations.observation(record.tracking_id)
    oldest = _oldest_useful(rt, record.schedule.next_check_at, now)
    if stored is not None and stored[0] >= oldest and _of_current_job(record, *stored):
        return Observed(stored[1])
    # The call's token first: a check that must wait holds no claim meanwhile (the jobs it would
    # have claimed stay free for a check that has its token, so each call describes up to 100)
    try:
        budget.take(rt, "DescribeJobs", budget.target_of(rt, record))
    except CallDeferred as deferred:
        # The jobs due before this one are claimed first, a page a call: come back about when
        # the call that describes it is made, and most likely find what it saw (checks due
        # together at a tick would otherwise all come back at each token)
        pages = (
            rt.store.observations.due_before(record.tracking_id, record.target_key) // DESCRIBE_PAGE
        )
        later = pages * budget.token_interval(rt, "DescribeJobs")
        raise CallDeferred(str(deferred), deferred.wait + later) from None
    others = _claim_due(rt, record.tracking_id, now, record.target_key)
    if others is None:
        raise ObservationPending(f"job {record.tracking_id} is being described by another check")
    views = _describe(rt, record, others, now)
    logger.debug("job %s: described with %d other job(s)", record.tracking_id, len(others))
    # Only ends are applied at once: the job's pending check message then finds the record
    # finished and produces its result. Applying a non-terminal view would use up that
    # message's check number and orphan it.
    ended = [
        (other, view)
        for other in others
        if (view := views.get(str(other.job_id))) is not None and view.status.is_terminal
    ]
    return Observed(views.get(record.job_id), ended)


def _describe(
    rt: Runtime, own: JobRecord, others: list[JobRecord], now: datetime
) -> dict[str, BatchJobView]:
    """Describe ``own`` and the claimed jobs in one call; store what was seen of the others
    for their checks."""
    job_ids = {r.tracking_id: str(r.job_id) for r in [*others, own]}
    try:
        views = rt.batch_for(own).describe(job_ids.values())
    except PollerError as err:
        if isinstance(err, BatchThrottled):
            budget.throttled(rt, "DescribeJobs", budget.target_of(rt, own))
        rt.store.observations.release_claims(
            list(job_ids)
        )  # nothing observed: those checks must not wait
        raise
    # Others keep their claims while their observation is fresh; this job's next check must not
    # wait for its own claim to expire.
    rt.store.observations.release_claims([own.tracking_id])
    window, cap = rt.settings.coalesce_window, rt.settings.poll_max_delay
    rt.store.observations.store_observations(
        {r.tracking_id: views.get(job_ids[r.tracking_id]) for r in others},
        at=now,
        keep_for=window + cap,  # as long as a late check may use it
        # Observed, a job needs no other observation before its check reschedules it, or
        # failing that (its check is late) before the backoff cap has passed.
        again_at=now + timedelta(seconds=max(cap - window, window)),
        target_key=own.target_key,
    )
    return views


def _of_current_job(record: JobRecord, at: datetime, view: BatchJobView | None) -> bool:
    """True when a stored observation is of the job's current Batch job: not of the one a
    resubmission replaced (its id, or a miss seen before this one was submitted)."""
    if view is not None and view.job_id != record.job_id:
        return False
    return record.submitted_at is None or at >= record.submitted_at


def _oldest_useful(rt: Runtime, due: datetime | None, now: datetime) -> datetime:
    """The oldest observation that may stand in for a check due at ``due``.

    A check due at T is served by an observation made at T - window or later. When checks run
    late (a busy worker), an observation made after they fell due is as good as their own call.
    """
    return min(now, due or now) - timedelta(seconds=rt.settings.coalesce_window)


def _claim_due(
    rt: Runtime, own: str, now: datetime, target_key: str = ""
) -> list[JobRecord] | None:
    """Claim job ``own`` and up to 99 other active jobs of its AWS target due within the window
    that still need an observation (only as many as one call describes: a claim nobody uses
    would make that job's own check wait for it to expire).

    Returns the others' records, or None when this job is claimed by another check already.
    """
    window = rt.settings.coalesce_window
    claimed = rt.store.observations.claim_due(
        own,
        horizon=now + timedelta(seconds=window),
        claim_for=window,
        parked_until=now + timedelta(seconds=2 * window),
        wanted=DESCRIBE_PAGE - 1,
        scan_limit=SCAN_LIMIT,
        target_key=target_key,
    )
    if claimed is None:
        return None
    return [r for r in rt.store.records(claimed) if r.job_id and not r.is_terminal]
