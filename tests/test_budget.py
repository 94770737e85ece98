"""The fleet's AWS call budget: the token bucket in a real Redis, and the lifecycle's calls
waiting their turn instead of being made (FakeBatch counts what reached AWS).

Time passes only when a test advances its clock (``clock``, ``budget_clock``): the buckets read
it instead of Redis's own, which one test shows they read otherwise.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
import redis

from poller.aws.logs import log_events
from poller.core import budget, lifecycle, tracking
from poller.errors import BatchThrottled, CallDeferred, ConfigurationError
from poller.runtime import ProcessRuntime
from poller.settings import Settings
from poller.store import JobStore
from poller.store.budget import BUDGET_KEY, HEADROOM
from poller.testing import FakeBatch
from tests.fakes import Clock, admitted, running, settings

TARGET = "123456789012:us-east-1"
FILL = 10 * HEADROOM  # a bucket of rate 10 fills at HEADROOM of it
EXACT = 0.001  # the script keeps its times to 0.1 ms (Lua writes numbers with 14 digits)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(poller_redis_client: redis.Redis, clock: Clock) -> JobStore:
    prefix = f"budget-test-{time.monotonic_ns()}"
    store = JobStore(poller_redis_client, prefix=prefix, record_ttl=60)
    store.budget.budget_clock = clock
    return store


def test_a_bucket_reads_redis_clock_unless_a_test_moves_its_own(
    poller_redis_client: redis.Redis, clock: Clock
) -> None:
    # Given a store as a worker makes it (no test clock) and one whose clock is a day behind
    fleet = JobStore(poller_redis_client, prefix="budget-test-fleet", record_ttl=60)
    behind = JobStore(poller_redis_client, prefix="budget-test-behind", record_ttl=60)
    clock.advance(-86_400)
    behind.budget.budget_clock = clock
    # When each takes a token
    fleet.budget.take_call("SubmitJob", TARGET, rate=10, burst=10)
    behind.budget.take_call("SubmitJob", TARGET, rate=10, burst=10)
    seconds, micros = poller_redis_client.time()

    # Then the worker's bucket was filled at Redis's time, the test's at its own clock's
    def at(store: JobStore) -> float:
        return float(poller_redis_client.hget(store.key(BUDGET_KEY, "SubmitJob", TARGET), "at"))

    assert seconds + micros / 1e6 - 5 < at(fleet) <= seconds + micros / 1e6
    assert at(behind) == pytest.approx(clock(), abs=EXACT)


def test_a_bucket_gives_its_burst_then_turns_one_token_apart(store: JobStore) -> None:
    taken = [store.budget.take_call("SubmitJob", TARGET, rate=10, burst=10) for _ in range(10)]
    assert taken == [0.0] * 10
    # Turns: one token apart, first come first served, at HEADROOM of the rate (for calls
    # bunched on their way to AWS)
    turns = [store.budget.take_call("SubmitJob", TARGET, 10, 10, mode="turn") for _ in range(5)]
    assert turns == pytest.approx([n / FILL for n in range(1, 6)], abs=EXACT)
    # A turn takes no token: asking (take) says when the next token comes
    assert store.budget.take_call("SubmitJob", TARGET, rate=10, burst=10) == pytest.approx(
        1 / FILL, abs=EXACT
    )
    counts = store.budget.budget_counts()
    assert counts[("SubmitJob", "taken")] == 10 and counts[("SubmitJob", "waited")] == 6


def test_turns_leave_the_tokens_there_for_calls_that_bunch(store: JobStore) -> None:
    turns = [store.budget.take_call("SubmitJob", TARGET, 10, 10, mode="turn") for _ in range(4)]
    # Even a full bucket gives turns one token apart: AWS's own bucket stays full, and takes
    # up the calls that reach it together
    assert turns == pytest.approx([n / FILL for n in range(4)], abs=EXACT)


def test_a_missed_turn_leaves_its_token_for_the_next_caller(store: JobStore, clock: Clock) -> None:
    for _ in range(10):
        store.budget.take_call("SubmitJob", TARGET, rate=10, burst=10)
    first = store.budget.take_call("SubmitJob", TARGET, 10, 10, mode="turn")
    second = store.budget.take_call("SubmitJob", TARGET, 10, 10, mode="turn")
    clock.advance(second + 0.02)
    # The first caller never came: both tokens are there for the second (and one more caller)
    assert first < second
    assert store.budget.take_call("SubmitJob", TARGET, rate=10, burst=10) == 0.0
    assert store.budget.take_call("SubmitJob", TARGET, rate=10, burst=10) == 0.0
    assert store.budget.take_call("SubmitJob", TARGET, rate=10, burst=10) > 0


def test_callers_late_together_never_take_more_than_the_bucket(
    store: JobStore, clock: Clock
) -> None:
    for _ in range(10):
        store.budget.take_call("SubmitJob", TARGET, rate=10, burst=10)
    turns = [store.budget.take_call("SubmitJob", TARGET, 10, 10, mode="turn") for _ in range(5)]
    clock.advance(turns[1] + 0.02)  # all five come at once, three of them late
    answers = [store.budget.take_call("SubmitJob", TARGET, rate=10, burst=10) for _ in range(5)]
    assert answers[:2] == [0.0, 0.0] and all(wait > 0 for wait in answers[2:])


def test_a_bucket_holds_half_a_second_of_calls(rt: ProcessRuntime, budget_clock: Clock) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"DescribeJobs": 10}))
    for _ in range(5):  # AWS's bucket (a second's worth) keeps the other half for bunched calls
        budget.take(rt, "DescribeJobs", "default@us-east-1")
    with pytest.raises(CallDeferred):
        budget.take(rt, "DescribeJobs", "default@us-east-1")


def test_targets_and_families_have_buckets_of_their_own(store: JobStore) -> None:
    assert store.budget.take_call("SubmitJob", TARGET, rate=1, burst=1) == 0.0
    assert store.budget.take_call("SubmitJob", TARGET, rate=1, burst=1) > 0
    assert store.budget.take_call("SubmitJob", "123456789012:us-west-2", rate=1, burst=1) == 0.0
    assert store.budget.take_call("DescribeJobs", TARGET, rate=1, burst=1) == 0.0


def test_a_throttle_halves_the_rate_which_grows_back(store: JobStore) -> None:
    store.budget.take_call("DescribeJobs", TARGET, rate=10, burst=10)
    store.budget.call_throttled("DescribeJobs", TARGET, rate=10, burst=10)
    # No token left, and turns come at half the fill rate now
    first = store.budget.take_call("DescribeJobs", TARGET, 10, 10, mode="turn")
    second = store.budget.take_call("DescribeJobs", TARGET, 10, 10, mode="turn")
    assert first > 0 and second - first == pytest.approx(2 / FILL, abs=EXACT)
    assert store.budget.budget_counts()[("DescribeJobs", "throttled")] == 1
    # 429s that come together (the calls already on their way) halve it once, not each time
    store.budget.call_throttled("DescribeJobs", TARGET, rate=10, burst=10)
    third = store.budget.take_call("DescribeJobs", TARGET, 10, 10, mode="turn")
    assert third - second == pytest.approx(2 / FILL, abs=EXACT)


def test_a_stop_never_waits_and_goes_into_debt(store: JobStore) -> None:
    for _ in range(3):
        assert store.budget.take_call("TerminateJob", TARGET, rate=1, burst=1, mode="force") == 0.0
    assert store.budget.take_call("TerminateJob", TARGET, rate=1, burst=1) > 2  # the debt is paid


def test_a_submission_waits_its_turn_without_a_lease_or_a_call(
    rt: ProcessRuntime, batch: FakeBatch, budget_clock: Clock
) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"SubmitJob": 1}))
    lifecycle.submit(rt, admitted(rt, "t1"))
    with pytest.raises(CallDeferred) as deferred:
        lifecycle.submit(rt, admitted(rt, "t2"))
    assert deferred.value.wait == pytest.approx(1 / HEADROOM, abs=EXACT)  # a token at 1/s
    record = rt.store.get("t2")
    assert record.submission.lease_until is None and record.submission.failures == 0
    assert record.submission.turn_at is not None  # its turn is kept: it does not queue again
    assert batch.calls["SubmitJob"] == 1
    # Coming back early waits for the rest of its turn; at its turn it is submitted
    with pytest.raises(CallDeferred):
        lifecycle.submit(rt, record)
    budget_clock.advance(deferred.value.wait + EXACT)  # it comes back at its turn (not before)
    assert lifecycle.submit(rt, rt.store.get("t2")).job_id is not None
    assert batch.calls["SubmitJob"] == 2 and rt.store.get("t2").submission.turn_at is None


def test_a_submission_that_finds_no_token_at_its_turn_queues_again(
    rt: ProcessRuntime, batch: FakeBatch, budget_clock: Clock
) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"SubmitJob": 1}))
    record = admitted(rt, "t1")
    turn = budget_clock.utcnow()
    rt.store.update("t1", lambda r: tracking.submit_turn(r, turn))
    budget.take(rt, "SubmitJob", budget.target_of(rt, record))  # a late caller took the token
    with pytest.raises(CallDeferred) as deferred:
        lifecycle.submit(rt, rt.store.get("t1"))
    # The next token's turn (a token at 1/s), not every token's
    assert deferred.value.wait == pytest.approx(1 / HEADROOM, abs=EXACT)
    assert rt.store.get("t1").submission.turn_at > turn + timedelta(seconds=0.5)
    assert batch.calls["SubmitJob"] == 0


def test_a_check_waits_its_turn_and_releases_the_jobs_it_claimed(
    rt: ProcessRuntime, batch: FakeBatch, budget_clock: Clock
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
    budget_clock.advance(deferred.value.wait + 0.05)
    lifecycle.check(rt, "t1", 1)
    assert batch.calls["DescribeJobs"] == calls + 1


def test_checks_that_wait_together_come_back_a_page_apart(
    rt: ProcessRuntime, batch: FakeBatch, budget_clock: Clock
) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"DescribeJobs": 1, "SubmitJob": 0}))
    # Three pages of due jobs (100 a DescribeJobs call), the last one holding one job
    records = [running(rt, batch, f"t{n:03d}") for n in range(201)]
    budget.take(rt, "DescribeJobs", budget.target_of(rt, records[0]))  # the one token is spent
    waits = []
    for n in (0, 99, 100, 200):  # the claims take the jobs due first, 100 a call
        with pytest.raises(CallDeferred) as deferred:
            lifecycle.check(rt, f"t{n:03d}", 0)
        waits.append(deferred.value.wait)
    interval = 1 / HEADROOM  # a token at HEADROOM of 1 a second
    assert waits[1] == pytest.approx(waits[0], abs=EXACT)  # the first page's last job
    assert waits[2] - waits[0] == pytest.approx(interval, abs=EXACT)
    assert waits[3] - waits[0] == pytest.approx(2 * interval, abs=EXACT)
    assert batch.calls["DescribeJobs"] == 0


def test_aws_throttling_despite_the_budget_slows_the_fleet(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"SubmitJob": 10}))
    batch.fail_next("SubmitJob", BatchThrottled("SubmitJob: TooManyRequestsException"))
    with pytest.raises(BatchThrottled):
        lifecycle.submit(rt, admitted(rt, "t1"))
    assert rt.store.get("t1").submission.failures == 1
    assert rt.store.budget.budget_counts()[("SubmitJob", "throttled")] == 1


def test_without_redis_a_process_keeps_a_share_of_the_budget(rt: ProcessRuntime) -> None:
    class Down:
        def take_call(self, *args: object, **kwargs: object) -> float:
            raise redis.ConnectionError("down")

    class Store:
        budget = Down()

    rt = replace(rt, store=Store(), settings=settings(aws_call_rates={"SubmitJob": 8}))  # type: ignore[arg-type]
    budget._LOCAL.clear()
    budget.take(rt, "SubmitJob", "acct:region")  # 8 / 4 = 2 a second, burst 2
    budget.take(rt, "SubmitJob", "acct:region")
    with pytest.raises(CallDeferred):
        budget.take(rt, "SubmitJob", "acct:region")
    budget.take(rt, "TerminateJob", "acct:region", mode="force")  # a stop never waits


def test_a_process_bucket_fills_at_its_rate(clock: Clock) -> None:
    bucket = budget.LocalBucket(2, clock=clock)  # 2 a second, burst 2
    assert [bucket.take(), bucket.take()] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.take() == 0.0 and bucket.take() > 0


def test_call_rates_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLLER_AWS_CALL_RATES", "SubmitJob=5, DescribeJobs=2")
    rates = Settings().aws_call_rates
    assert rates["SubmitJob"] == 5 and rates["DescribeJobs"] == 2
    assert rates["GetLogEvents"] == 25  # AWS's quota for a family not named
    monkeypatch.setenv("POLLER_AWS_CALL_RATES", "Submit=5")
    with pytest.raises((ValueError, ConfigurationError)):
        Settings()


def test_a_command_line_sleeps_for_its_token(rt: ProcessRuntime, budget_clock: Clock) -> None:
    rt = replace(rt, settings=settings(aws_call_rates={"GetLogEvents": 1}))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        budget_clock.advance(seconds + EXACT)  # a sleep ends a little late, never early

    budget.wait_for(rt, "GetLogEvents", "default@us-east-1", sleep=sleep)
    budget.wait_for(rt, "GetLogEvents", "default@us-east-1", sleep=sleep)
    # One sleep, of one token at HEADROOM of 1 a second
    assert slept == [pytest.approx(1 / HEADROOM, abs=EXACT)]


def test_each_page_of_a_log_takes_its_token() -> None:
    pages = iter([
        {"events": [{"timestamp": 0, "message": "one"}], "nextForwardToken": "b"},
        {"events": [{"timestamp": 1000, "message": "two"}], "nextForwardToken": "b"},
    ])  # fmt: skip

    class Logs:
        def get_log_events(self, **kwargs: object) -> object:
            return next(pages)

    tokens: list[int] = []
    events = log_events("s", client=Logs(), before_call=lambda: tokens.append(1))
    assert [message for _, message in events] == ["one", "two"] and len(tokens) == 2
