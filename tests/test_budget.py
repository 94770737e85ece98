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


def test_a_bucket_gives_its_burst_then_turns_one_token_apart(store: JobStore) -> None:
    taken = [store.take_call("SubmitJob", TARGET, rate=10, burst=10) for _ in range(10)]
    assert taken == [0.0] * 10
    # Turns reserved: one token apart, first come first served, at 90 % of the rate (headroom
    # for calls bunched on their way to AWS)
    turns = [store.take_call("SubmitJob", TARGET, 10, 10, mode="reserve") for _ in range(5)]
    assert turns == pytest.approx([n / 9 for n in range(1, 6)], abs=0.06)
    # Asking (take) reserves nothing: it says when the next token comes, after the turns
    assert store.take_call("SubmitJob", TARGET, rate=10, burst=10) == pytest.approx(6 / 9, abs=0.06)
    counts = store.budget_counts()
    assert counts[("SubmitJob", "taken")] == 10 and counts[("SubmitJob", "waited")] == 6


def test_targets_and_families_have_buckets_of_their_own(store: JobStore) -> None:
    assert store.take_call("SubmitJob", TARGET, rate=1, burst=1) == 0.0
    assert store.take_call("SubmitJob", TARGET, rate=1, burst=1) > 0
    assert store.take_call("SubmitJob", "123456789012:us-west-2", rate=1, burst=1) == 0.0
    assert store.take_call("DescribeJobs", TARGET, rate=1, burst=1) == 0.0


def test_a_throttle_halves_the_rate_which_grows_back(store: JobStore) -> None:
    store.take_call("DescribeJobs", TARGET, rate=10, burst=10)
    store.call_throttled("DescribeJobs", TARGET, rate=10, burst=10)
    # No token left, and turns come at 4.5 a second now (half of 90 % of 10)
    first = store.take_call("DescribeJobs", TARGET, 10, 10, mode="reserve")
    second = store.take_call("DescribeJobs", TARGET, 10, 10, mode="reserve")
    assert second - first == pytest.approx(1 / 4.5, abs=0.06)
    assert store.budget_counts()[("DescribeJobs", "throttled")] == 1
    # 429s that come together (the calls already on their way) halve it once, not each time
    store.call_throttled("DescribeJobs", TARGET, rate=10, burst=10)
    third = store.take_call("DescribeJobs", TARGET, 10, 10, mode="reserve")
    assert third - second == pytest.approx(1 / 4.5, abs=0.06)


def test_a_stop_never_waits_and_goes_into_debt(store: JobStore) -> None:
    for _ in range(3):
        assert store.take_call("TerminateJob", TARGET, rate=1, burst=1, mode="force") == 0.0
    assert store.take_call("TerminateJob", TARGET, rate=1, burst=1) > 2  # the debt is paid


def test_a_submission_waits_its_turn_without_a_lease_or_a_call(
    rt: Runtime, batch: FakeBatch
) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"SubmitJob": 1}))
    lifecycle.submit(rt, admitted(rt, "t1"))
    with pytest.raises(CallDeferred) as deferred:
        lifecycle.submit(rt, admitted(rt, "t2"))
    assert 0 < deferred.value.wait <= 1.2
    record = rt.store.get("t2")
    assert record.submit_lease_until is None and record.submit_failures == 0
    assert record.submit_turn_at is not None  # its turn is kept: it does not queue again
    assert batch.calls["SubmitJob"] == 1
    # Coming back early waits for the rest of its turn; at its turn it is submitted
    with pytest.raises(CallDeferred):
        lifecycle.submit(rt, record)
    time.sleep(deferred.value.wait)
    assert lifecycle.submit(rt, rt.store.get("t2")).job_id is not None
    assert batch.calls["SubmitJob"] == 2 and rt.store.get("t2").submit_turn_at is None


def test_a_check_waits_its_turn_and_releases_the_jobs_it_claimed(
    rt: Runtime, batch: FakeBatch
) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"DescribeJobs": 1}))
    running(rt, batch, "t1")
    running(rt, batch, "t2")
    lifecycle.check(rt, "t1", 0)  # takes the one token (and describes t2 with it)
    calls = batch.calls["DescribeJobs"]
    with pytest.raises(CallDeferred) as deferred:
        lifecycle.check(rt, "t1", 1)
    assert batch.calls["DescribeJobs"] == calls  # nothing reached AWS
    # Its turn: the check runs (not ObservationPending: the deferred one left no claim)
    time.sleep(deferred.value.wait + 0.05)
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
    budget.take(rt, "TerminateJob", "acct:region", mode="force")  # a stop never waits


def test_call_rates_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLLER_AWS_CALL_RATES", "SubmitJob=5, DescribeJobs=2")
    rates = Settings().aws_call_rates
    assert rates["SubmitJob"] == 5 and rates["DescribeJobs"] == 2
    assert rates["GetLogEvents"] == 25  # AWS's quota for a family not named
    monkeypatch.setenv("POLLER_AWS_CALL_RATES", "Submit=5")
    with pytest.raises((ValueError, ConfigurationError)):
        Settings()


def test_a_missed_turn_is_rebooked_without_spending_a_token_twice(store: JobStore) -> None:
    for _ in range(10):
        store.take_call("SubmitJob", TARGET, rate=10, burst=10)
    missed = store.take_call("SubmitJob", TARGET, 10, 10, mode="reserve")
    # Its caller came late: the token goes back, and its new turn is the one it had
    again = store.take_call("SubmitJob", TARGET, 10, 10, mode="rebook")
    assert again == pytest.approx(missed, abs=0.06)
