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
have an observation waiting for their late check and are out of the way. Claiming is one Lua
script walking that index soonest first, in one round trip.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import redis
from pydantic import TypeAdapter
from redis.commands.core import Script

from poller.batch import DESCRIBE_PAGE, BatchJobView
from poller.errors import PollerError
from poller.models import JobRecord, utcnow
from poller.store import OBSERVE_INDEX

if TYPE_CHECKING:
    from poller.lifecycle import Runtime

logger = logging.getLogger(__name__)

OBSERVATION_KEY = "obs"  # <p>:obs:<tracking id> -> {"at": ISO time, "view": BatchJobView | null}
CLAIM_KEY = "claim"  # <p>:claim:<tracking id> while a worker is describing that job
SCAN_LIMIT = 10 * DESCRIBE_PAGE  # due jobs looked at per claim at most (some claimed by others)
_VIEW = TypeAdapter(BatchJobView)

# KEYS: the observe index. ARGV: claim key prefix, own tracking id, due horizon, claim lifetime
# (ms), how many to claim, how many due jobs to look at, where claimed jobs move in the index.
# Returns the tracking ids claimed besides the own one, or false if the own one is claimed.
# Claimed jobs (the own one too) move past the horizon of any check made while the claim lasts,
# so that other checks neither walk past them nor describe them again; if the claimer dies they
# are due again once the claim expired. Claim keys are computed in the script: poller does not
# run on Redis Cluster.
_CLAIM_DUE = """
local prefix, own, horizon = ARGV[1], ARGV[2], ARGV[3]
local claim_ms, wanted, limit, parked = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
if not redis.call('SET', prefix .. own, own, 'NX', 'PX', claim_ms) then
    return false
end
redis.call('ZADD', KEYS[1], 'XX', parked, own)
local claimed, seen, page = {}, 0, 200
while #claimed < wanted and seen < limit do
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon, 'LIMIT', seen, page)
    if #due == 0 then break end
    seen = seen + #due
    for _, id in ipairs(due) do
        if id ~= own and redis.call('SET', prefix .. id, own, 'NX', 'PX', claim_ms) then
            claimed[#claimed + 1] = id
            if #claimed >= wanted then break end
        end
    end
end
for _, id in ipairs(claimed) do
    redis.call('ZADD', KEYS[1], 'XX', parked, id)
end
return claimed
"""


class ObservationPending(PollerError):
    """Another check is describing this job right now; check again in a moment."""


def observe(rt: Runtime, record: JobRecord) -> BatchJobView | None:
    """What Batch says about ``record``'s job now (None: DescribeJobs did not return it).

    Raises ObservationPending when another check is describing this job at this moment: the
    caller retries shortly and then finds that check's observation, instead of a second call.
    """
    assert record.job_id is not None
    if not rt.settings.coalesce:
        return rt.batch.describe([record.job_id]).get(record.job_id)
    now = utcnow()
    found, view = _fresh_observation(rt, record, now)
    if found:
        return view
    others = _claim_due(rt, record.tracking_id, now)
    if others is None:
        raise ObservationPending(f"job {record.tracking_id} is being described by another check")
    views = _describe(rt, record, others, now)
    logger.debug("job %s: described with %d other job(s)", record.tracking_id, len(others))
    return views.get(record.job_id)


def _describe(
    rt: Runtime, own: JobRecord, others: list[JobRecord], now: datetime
) -> dict[str, BatchJobView]:
    """Describe ``own`` and the claimed jobs in one call; store what was seen of the others for
    their checks and record at once those seen finished."""
    job_ids = {r.tracking_id: str(r.job_id) for r in [*others, own]}
    try:
        views = rt.batch.describe(job_ids.values())
    except PollerError:
        _release(rt, list(job_ids))  # nothing observed: those jobs' checks must not wait
        raise
    # Others keep their claims while their observation is fresh; this job's next check must not
    # wait for its own claim to expire.
    _release(rt, [own.tracking_id])
    observed = {r.tracking_id: views.get(job_ids[r.tracking_id]) for r in others}
    _store_observations(rt, observed, now)
    _finish_observed(rt, {r.tracking_id: r for r in others}, observed)
    return views


def _release(rt: Runtime, tracking_ids: list[str]) -> None:
    rt.store.redis.delete(*(rt.store.key(CLAIM_KEY, t) for t in tracking_ids))


def _finish_observed(
    rt: Runtime, records: dict[str, JobRecord], observed: dict[str, BatchJobView | None]
) -> None:
    """Record at once the end of the other jobs seen finished, rather than at their own check.

    Only terminal observations are applied here: the job's pending check message then finds
    the record finished and resolves its Celery result. Applying a non-terminal one would use
    up that message's check number and orphan it.
    """
    from poller import lifecycle

    for tracking_id, view in observed.items():
        if view is not None and view.status.is_terminal:
            lifecycle.apply_observation(rt, records[tracking_id], view)


def _fresh_observation(
    rt: Runtime, record: JobRecord, now: datetime
) -> tuple[bool, BatchJobView | None]:
    """(True, view) when another check stored an observation as recent as this check needs.

    A check due at T is served by an observation made at T - window or later. When checks run
    late (a busy worker), an observation made after they fell due is as good as their own call.
    """
    raw = rt.store.redis.get(rt.store.key(OBSERVATION_KEY, record.tracking_id))
    if raw is None:
        return False, None
    data = json.loads(raw)
    if datetime.fromisoformat(data["at"]) < _oldest_useful(rt, record.next_check_at, now):
        return False, None
    view = _VIEW.validate_python(data["view"]) if data["view"] is not None else None
    return True, view


def _oldest_useful(rt: Runtime, due: datetime | None, now: datetime) -> datetime:
    """The oldest observation that may stand in for a check due at ``due``."""
    return min(now, due or now) - timedelta(seconds=rt.settings.coalesce_window)


def _claim_due(rt: Runtime, own: str, now: datetime) -> list[JobRecord] | None:
    """Claim job ``own`` and up to 99 other active jobs due within the window
    that still need an observation (only as many as one call describes: a claim nobody uses
    would make that job's own check wait for it to expire).

    Returns the others' records, or None when this job is claimed by another check already.
    """
    store, window = rt.store, rt.settings.coalesce_window
    claimed = _claim_script(store.redis)(
        keys=[store.key(OBSERVE_INDEX)],
        args=[
            store.key(CLAIM_KEY, ""), own, (now + timedelta(seconds=window)).timestamp(),
            int(window * 1000), DESCRIBE_PAGE - 1, SCAN_LIMIT,
            (now + timedelta(seconds=2 * window)).timestamp(),
        ],
    )  # fmt: skip
    if claimed is None:
        return None
    return [r for r in store.records([str(t) for t in claimed]) if r.job_id and not r.is_terminal]


@functools.lru_cache(maxsize=16)
def _claim_script(client: redis.Redis) -> Script:
    """The claim script for this client, run by its SHA (loaded once per server)."""
    return client.register_script(_CLAIM_DUE)


def _store_observations(rt: Runtime, views: dict[str, BatchJobView | None], now: datetime) -> None:
    """Store each job's observation (one round trip); kept as long as a late check may use it."""
    if not views:
        return
    window = rt.settings.coalesce_window
    ttl = window + rt.settings.poll_max_delay
    # Observed, a job needs no other observation before its check reschedules it, or failing
    # that (its check is late) before the backoff cap has passed.
    again_at = now.timestamp() + max(rt.settings.poll_max_delay - window, window)
    with rt.store.redis.pipeline(transaction=False) as pipe:
        for tracking_id, view in views.items():
            data = {
                "at": now.isoformat(),
                "view": _VIEW.dump_python(view, mode="json") if view else None,
            }
            pipe.set(
                rt.store.key(OBSERVATION_KEY, tracking_id), json.dumps(data), px=int(ttl * 1000)
            )
        # XX: a job that ended meanwhile has left the index and must not come back
        pipe.zadd(rt.store.key(OBSERVE_INDEX), dict.fromkeys(views, again_at), xx=True)
        pipe.execute()
