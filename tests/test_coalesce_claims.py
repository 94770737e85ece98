"""Which jobs a coalesced check claims, against a real Redis (no AWS call is made)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
import redis

from poller.core import coalesce, tracking
from poller.models import JobRecord, utcnow
from poller.runtime import ProcessRuntime
from poller.settings import Settings
from poller.store import Change, JobStore
from poller.store.base import CLAIM_KEY, OBSERVE_INDEX
from tests.test_store import make


@pytest.fixture
def rt(poller_redis_client: redis.Redis) -> ProcessRuntime:
    settings = Settings(coalesce_window=1.5, poll_max_delay=30, visibility_timeout=3600)
    store = JobStore(poller_redis_client, prefix="claims-test", record_ttl=60)
    return ProcessRuntime(settings=settings, store=store, batch=cast(Any, None))


def observed(rt: ProcessRuntime, tracking_ids: list[str], at: datetime) -> None:
    """Store "not returned" observations of these jobs made at ``at``, as a coalesced call does."""
    window, cap = rt.settings.coalesce_window, rt.settings.poll_max_delay
    rt.store.observations.store_observations(
        dict.fromkeys(tracking_ids),
        at=at,
        keep_for=window + cap,
        again_at=at + timedelta(seconds=max(cap - window, window)),
    )


def submitted(rt: ProcessRuntime, count: int, overdue_by: float) -> list[str]:
    """``count`` submitted jobs whose checks fell due ``overdue_by`` seconds ago and earlier."""
    now, ids = utcnow(), [f"job-{i:04d}" for i in range(count)]
    for tracking_id in ids:
        rt.store.create(make(tracking_id))

    def submit(tracking_id: str, due: datetime) -> Callable[[JobRecord], Change | None]:
        return lambda r: tracking.submitted(r, f"b-{tracking_id}", now, due)

    # job-0000 is the most overdue; one transaction for all (hundreds of jobs in some tests)
    rt.store.update_each({
        tracking_id: submit(tracking_id, now - timedelta(seconds=overdue_by + count - i))
        for i, tracking_id in enumerate(ids)
    })  # fmt: skip
    return ids


def test_a_backlog_of_observed_jobs_does_not_hide_the_jobs_still_needing_a_call(
    rt: ProcessRuntime,
) -> None:
    # Given 1,000 overdue jobs whose 600 most overdue already have a fresh observation waiting
    # for their late checks (what a busy worker leaves behind)
    ids = submitted(rt, 1000, overdue_by=5)
    observed(rt, ids[:600], utcnow())
    # When a check of another job claims jobs to describe with its own
    others = coalesce._claim_due(rt, ids[-1], utcnow())
    # Then it gets a full call's worth, all among the jobs without an observation, most overdue first
    assert others is not None
    claimed = [r.tracking_id for r in others]
    assert claimed == ids[600:699]
    # And a second check claims the next ones, never a job claimed already
    second = coalesce._claim_due(rt, ids[-2], utcnow())
    assert second is not None
    assert [r.tracking_id for r in second] == ids[699:798]


def test_a_check_whose_job_is_claimed_by_another_gets_none(rt: ProcessRuntime) -> None:
    ids = submitted(rt, 5, overdue_by=1)
    first = coalesce._claim_due(rt, ids[0], utcnow())
    assert first is not None and [r.tracking_id for r in first] == ids[1:]
    assert coalesce._claim_due(rt, ids[3], utcnow()) is None


def test_an_overdue_job_is_observed_again_once_its_observation_is_older_than_the_cap(
    rt: ProcessRuntime,
) -> None:
    # Given two jobs whose checks fell due 40 s ago (workers are behind), observed just after
    # that: one 35 s ago (older than the 30 s cap less the window), one 20 s ago
    stale, recent, own = submitted(rt, 3, overdue_by=40)
    observed(rt, [stale], utcnow() - timedelta(seconds=35))
    observed(rt, [recent], utcnow() - timedelta(seconds=20))
    # When a check claims jobs to describe
    others = coalesce._claim_due(rt, own, utcnow())
    # Then only the stale one is described again, though its own late check could still use it
    assert others is not None and [r.tracking_id for r in others] == [stale]


def test_jobs_due_at_the_same_moment_are_all_claimed_across_pages(rt: ProcessRuntime) -> None:
    # Given 450 jobs due at exactly the same time (one call's observations move them together)
    ids = submitted(rt, 450, overdue_by=5)
    same = utcnow().timestamp() - 5
    rt.store.redis.zadd(rt.store.key(OBSERVE_INDEX), dict.fromkeys(ids, same))
    # When four checks claim in turn
    claims = [coalesce._claim_due(rt, own, utcnow()) for own in ids[-4:]]
    # Then each gets a full call's worth and no job is claimed twice or left out
    claimed = [r.tracking_id for c in claims for r in c or []]
    assert [len(c or []) for c in claims] == [99, 99, 99, 99]
    assert len(set(claimed)) == 396
    assert not set(claimed) & set(ids[-4:])


def test_claimed_jobs_leave_the_due_range_until_their_claim_expires(rt: ProcessRuntime) -> None:
    ids = submitted(rt, 10, overdue_by=1)
    first = coalesce._claim_due(rt, ids[0], utcnow())
    assert first is not None and len(first) == 9
    # Its claims vanish (the claimer died), yet another check sees nothing to claim: claimed
    # jobs stay parked past the horizon of any check made within the claim's lifetime ...
    rt.store.redis.delete(*(rt.store.key(CLAIM_KEY, t) for t in ids))
    assert coalesce._claim_due(rt, "latecomer", utcnow()) == []
    # ... and everything once they have expired (the claimer never stored observations)
    later = utcnow() + timedelta(seconds=2 * rt.settings.coalesce_window)
    again = coalesce._claim_due(rt, "latecomer-2", later)
    assert again is not None and len(again) == 10


def test_a_check_claims_only_jobs_of_its_own_aws_target(rt: ProcessRuntime) -> None:
    # Given due jobs in the default region and in another region (a job naming aws_region)
    now = utcnow()
    for tracking_id, region in [("home-1", None), ("home-2", None), ("west-1", "us-west-2"),
                                ("west-2", "us-west-2")]:  # fmt: skip
        rt.store.create(make(tracking_id).model_copy(update={"aws_region": region}))
        rt.store.update(
            tracking_id, lambda r, t=tracking_id: tracking.submitted(r, f"b-{t}", now, now)
        )
    west = rt.store.get("west-1").target_key
    # When a check of each target claims the jobs to describe with its own
    home_others = coalesce._claim_due(rt, "home-1", now, "")
    west_others = coalesce._claim_due(rt, "west-1", now, west)
    # Then one DescribeJobs call never mixes regions
    assert [r.tracking_id for r in home_others or []] == ["home-2"]
    assert [r.tracking_id for r in west_others or []] == ["west-2"]
