"""The fleet's AWS call budget: the token bucket in a real Redis, and the lifecycle's calls
waiting their turn instead of being made (FakeBatch counts what reached AWS)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis

from poller.core import budget, lifecycle
from poller.core.runtime import Runtime
from poller.errors import BatchThrottled, CallDeferred, ConfigurationError
from poller.settings import Settings
from poller.store import JobStore
from poller.testing import FakeBatch
from tests.fakes import admitted, running, settings

TARGET = "123456789012:us-east-1"


@pytest.fixture
def store(poller_redis_client: redis.Redis) -> JobStore:
    prefix = f"budget-test-{time.monotonic_ns()}"
    return JobStore(poller_redis_client, prefix=prefix, record_ttl=60)


def test_a_bucket_gives_its_burst_then_spreads_the_waits(store: JobStore) -> None:
    taken = [store.take_call("SubmitJob", TARGET, rate=10, burst=10) for _ in range(10)]
    assert taken == [0.0] * 10
    waits = [store.take_call("SubmitJob", TARGET, rate=10, burst=10) for _ in range(5)]
    # Each caller told to wait gets a later turn than the one before: no herd
    assert all(w > 0 for w in waits) and waits == sorted(waits)
    assert waits[-1] == pytest.approx(0.5, abs=0.05)  # five turns at 10 calls a second
    time.sleep(0.15)
    assert store.take_call("SubmitJob", TARGET, rate=10, burst=10) == 0.0
    counts = store.budget_counts()
    assert counts[("SubmitJob", "taken")] == 11 and counts[("SubmitJob", "waited")] == 5


def test_targets_and_families_have_buckets_of_their_own(store: JobStore) -> None:
    assert store.take_call("SubmitJob", TARGET, rate=1, burst=1) == 0.0
    assert store.take_call("SubmitJob", TARGET, rate=1, burst=1) > 0
    assert store.take_call("SubmitJob", "123456789012:us-west-2", rate=1, burst=1) == 0.0
    assert store.take_call("DescribeJobs", TARGET, rate=1, burst=1) == 0.0


def test_a_throttle_halves_the_rate_which_grows_back(store: JobStore) -> None:
    store.take_call("DescribeJobs", TARGET, rate=10, burst=10)
    store.call_throttled("DescribeJobs", TARGET, rate=10, burst=10)
    # No token left, and turns come at 5 a second now (not 10)
    first = store.take_call("DescribeJobs", TARGET, rate=10, burst=10)
    second = store.take_call("DescribeJobs", TARGET, rate=10, burst=10)
    assert second - first == pytest.approx(0.2, abs=0.02)
    assert store.budget_counts()[("DescribeJobs", "throttled")] == 1


def test_a_stop_never_waits_and_goes_into_debt(store: JobStore) -> None:
    for _ in range(3):
        assert store.take_call("TerminateJob", TARGET, rate=1, burst=1, force=True) == 0.0
    assert store.take_call("TerminateJob", TARGET, rate=1, burst=1) > 1.5  # the debt is paid


def test_a_submission_waits_its_turn_without_a_lease_or_a_call(
    rt: Runtime, batch: FakeBatch
) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"SubmitJob": 1}))
    lifecycle.submit(rt, admitted(rt, "t1"))
    with pytest.raises(CallDeferred) as deferred:
        lifecycle.submit(rt, admitted(rt, "t2"))
    assert 0 < deferred.value.wait <= 1.1
    record = rt.store.get("t2")
    assert record.submit_lease_until is None and record.submit_failures == 0
    assert batch.calls["SubmitJob"] == 1


def test_a_check_waits_its_turn_and_releases_the_jobs_it_claimed(
    rt: Runtime, batch: FakeBatch
) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"DescribeJobs": 1}))
    running(rt, batch, "t1")
    running(rt, batch, "t2")
    lifecycle.check(rt, "t1", 0)  # takes the one token (and describes t2 with it)
    calls = batch.calls["DescribeJobs"]
    with pytest.raises(CallDeferred):
        lifecycle.check(rt, "t1", 1)
    assert batch.calls["DescribeJobs"] == calls  # nothing reached AWS
    # Its turn: the check runs (not ObservationPending: the deferred one left no claim)
    time.sleep(1.05)
    lifecycle.check(rt, "t1", 1)
    assert batch.calls["DescribeJobs"] == calls + 1


def test_aws_throttling_despite_the_budget_slows_the_fleet(rt: Runtime, batch: FakeBatch) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"SubmitJob": 10}))
    batch.fail_next("SubmitJob", BatchThrottled("SubmitJob: TooManyRequestsException"))
    with pytest.raises(BatchThrottled):
        lifecycle.submit(rt, admitted(rt, "t1"))
    assert rt.store.get("t1").submit_failures == 1
    assert rt.store.budget_counts()[("SubmitJob", "throttled")] == 1


def test_without_redis_a_process_keeps_a_share_of_the_budget(rt: Runtime) -> None:
    class Down:
        def take_call(self, *args: object, **kwargs: object) -> float:
            raise redis.ConnectionError("down")

    rt = replace(rt, store=Down(), settings=settings(aws_call_rates={"SubmitJob": 8}))  # type: ignore[arg-type]
    budget._LOCAL.clear()
    budget.take(rt, "SubmitJob", "acct:region")  # 8 / 4 = 2 a second, burst 2
    budget.take(rt, "SubmitJob", "acct:region")
    with pytest.raises(CallDeferred):
        budget.take(rt, "SubmitJob", "acct:region")
    budget.take(rt, "TerminateJob", "acct:region", stop=True)  # a stop never waits


def test_call_rates_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLLER_AWS_CALL_RATES", "SubmitJob=5, DescribeJobs=2")
    rates = Settings().aws_call_rates
    assert rates["SubmitJob"] == 5 and rates["DescribeJobs"] == 2
    assert rates["GetLogEvents"] == 25  # AWS's quota for a family not named
    monkeypatch.setenv("POLLER_AWS_CALL_RATES", "Submit=5")
    with pytest.raises((ValueError, ConfigurationError)):
        Settings()
