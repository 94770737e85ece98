"""JobHandle: waiting for a job in a thread and in an event loop, on the job's own channel."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from celery.backends.base import Backend

from poller import (
    FailureKind,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobTimedOut,
    RecordUnreadable,
    SubmitRejected,
    WaitTimeout,
    client,
)
from poller.core import lifecycle
from poller.errors import JobEnded
from poller.models import JobStatus
from poller.runtime import ProcessRuntime
from poller.store import waiters
from poller.testing import FakeBatch
from tests.fakes import running

JOBS = 3


def end(rt: ProcessRuntime, batch: FakeBatch, tracking_id: str, status: JobStatus) -> None:
    """The job's Batch job ends ``status``, and a check stores it (as a worker would)."""
    end_all(rt, batch, {tracking_id: status})


def end_all(rt: ProcessRuntime, batch: FakeBatch, statuses: dict[str, JobStatus]) -> None:
    """The jobs' Batch jobs end, then their checks store it (the first one's call describes
    them all: checks coalesce)."""
    for tracking_id, status in statuses.items():
        job_id = rt.store.get(tracking_id).job_id
        assert job_id is not None
        batch.set_status(job_id, status)
    for tracking_id in statuses:
        lifecycle.check(rt, tracking_id, rt.store.get(tracking_id).schedule.checks)


@pytest.fixture
def later() -> Iterator[list[threading.Timer]]:
    """Timers that act as the fleet does while the test waits (each joined at the end)."""
    timers: list[threading.Timer] = []
    yield timers
    for timer in timers:
        timer.cancel()
        timer.join()


def test_wait_returns_the_result_once_the_job_ends(
    rt: ProcessRuntime, batch: FakeBatch, later: list[threading.Timer]
) -> None:
    # Given a running job that a worker sees succeed in a moment
    running(rt, batch, "t1")
    later.append(threading.Timer(0.2, end, (rt, batch, "t1", JobStatus.SUCCEEDED)))
    later[-1].start()
    # When a thread waits for it
    result = JobHandle("t1", rt.store).wait(timeout=10)
    # Then it gets the job's result
    assert result["status"] == JobStatus.SUCCEEDED
    assert result["tracking_id"] == "t1"


def test_a_jobs_channel_carries_its_own_events_only(rt: ProcessRuntime, batch: FakeBatch) -> None:
    # Given a waiter subscribed to job t1's channel
    running(rt, batch, "t1")
    with rt.store.subscribe("t1") as pubsub:
        # When another job goes through its whole life, then t1 ends
        running(rt, batch, "t2")
        end(rt, batch, "t2", JobStatus.SUCCEEDED)
        end(rt, batch, "t1", JobStatus.FAILED)
        messages = []
        while (message := pubsub.get_message(timeout=0.5)) is not None:
            messages.append(message["data"])
    # Then the waiter received t1's events, and none of t2's
    assert messages
    assert all('"tracking_id": "t1"' in data for data in messages)


def test_jobs_awaited_in_one_loop_each_get_their_result(
    rt: ProcessRuntime,
    batch: FakeBatch,
    later: list[threading.Timer],
    poller_redis_client: redis.Redis,
) -> None:
    # Given running jobs that end in a moment, the last one failing
    ids = [f"t{n}" for n in range(JOBS)]
    for tracking_id in ids:
        running(rt, batch, tracking_id)
    statuses = dict.fromkeys(ids, JobStatus.SUCCEEDED) | {ids[-1]: JobStatus.FAILED}
    later.append(threading.Timer(0.2, end_all, (rt, batch, statuses)))

    async def await_all() -> tuple[list[object], int]:
        waits = [JobHandle(t, rt.store).wait_async(timeout=10) for t in ids]
        gathered = asyncio.gather(*waits)
        await asyncio.sleep(0.1)  # every waiter listening
        for timer in later:
            timer.start()
        subscribers = poller_redis_client.pubsub_numsub(*[rt.store.job_channel(t) for t in ids])
        return list(await gathered), sum(count for _, count in subscribers)

    # When one event loop awaits them all
    results, subscribed = asyncio.run(await_all())
    # Then each gets its own job's result, while all listened on one subscription per job
    assert [r["tracking_id"] for r in results] == ids  # type: ignore[index]
    assert [r["status"] for r in results] == ["SUCCEEDED"] * (JOBS - 1) + ["FAILED"]  # type: ignore[index]
    assert subscribed == JOBS


def test_watch_async_yields_each_transition_and_ends_with_the_terminal_record(
    rt: ProcessRuntime, batch: FakeBatch, later: list[threading.Timer]
) -> None:
    # Given a running job that goes on to succeed
    running(rt, batch, "t1")
    later.append(threading.Timer(0.2, end, (rt, batch, "t1", JobStatus.SUCCEEDED)))

    async def watch() -> list[JobStatus]:
        seen = []
        async for record in JobHandle("t1", rt.store).watch_async(timeout=10):
            seen.append(record.status)
            if len(seen) == 1:
                later[0].start()
        return seen

    # When a coroutine watches it
    seen = asyncio.run(watch())
    # Then it saw the job as submitted, then its end (and nothing after)
    assert seen[0] is JobStatus.SUBMITTED
    assert seen[-1] is JobStatus.SUCCEEDED
    assert seen.count(JobStatus.SUCCEEDED) == 1


def test_an_async_wait_times_out_with_wait_timeout(rt: ProcessRuntime, batch: FakeBatch) -> None:
    # Given a job that keeps running
    running(rt, batch, "t1")
    # When a coroutine waits for it a short while, Then WaitTimeout says so
    with pytest.raises(WaitTimeout, match="t1"):
        asyncio.run(JobHandle("t1", rt.store).wait_async(timeout=0.3))


async def subscribed(client: redis.Redis, channels: list[str], count: int) -> None:
    """Return once Redis counts ``count`` subscriptions to ``channels`` (within 5 s)."""
    async with asyncio.timeout(5):
        while sum(n for _, n in client.pubsub_numsub(*channels)) < count:
            await asyncio.sleep(0.01)


def test_a_burst_of_waiters_starts_and_reads_a_few_at_a_time_and_each_gets_its_result(
    rt: ProcessRuntime,
    batch: FakeBatch,
    poller_redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given more running jobs than one iteration of the loop starts waiters for (and hands
    # records to), and than one MGET reads, that end while they are awaited
    monkeypatch.setattr(waiters, "BATCH", 2)
    monkeypatch.setattr(waiters, "MGET_PAGE", 3)
    ids = [f"t{n}" for n in range(7)]
    for tracking_id in ids:
        running(rt, batch, tracking_id)
    statuses = dict.fromkeys(ids, JobStatus.SUCCEEDED) | {ids[-1]: JobStatus.FAILED}

    async def await_all() -> list[object]:
        gathered = asyncio.gather(*(JobHandle(t, rt.store).wait_async(timeout=10) for t in ids))
        await subscribed(poller_redis_client, [rt.store.job_channel(t) for t in ids], 7)
        end_all(rt, batch, statuses)
        return list(await gathered)

    # When one loop awaits them all at once
    results = asyncio.run(await_all())
    # Then each gets its own job's result
    assert [r["tracking_id"] for r in results] == ids  # type: ignore[index]
    assert [r["status"] for r in results] == ["SUCCEEDED"] * 6 + ["FAILED"]  # type: ignore[index]


def test_a_listener_is_handed_only_the_events_it_keeps_and_those_it_cannot_tell(
    rt: ProcessRuntime,
) -> None:
    # Given a listener of t1 that keeps the events of its end
    channel = rt.store.job_channel("t1")

    def ended(event: str) -> bool:
        return json.loads(event)["status"] == "SUCCEEDED"

    async def listen() -> list[str]:
        waiters = JobHandle("t1", rt.store)._async_waiters()
        async with waiters.listen("t1", keep=ended) as events:
            # When t1's channel carries a transition, a message that is not JSON, then its end
            for status in ("RUNNING", "garbage", "SUCCEEDED"):
                message = json.dumps({"status": status}) if status != "garbage" else "{oops"
                rt.store.redis.publish(channel, message)
            handed = [await asyncio.wait_for(events.get(), 5)]
            handed.append(await asyncio.wait_for(events.get(), 5))
            return handed

    # Then it was handed the message it could not tell about, then the end, and no transition
    assert asyncio.run(listen()) == ["{oops", json.dumps({"status": "SUCCEEDED"})]


def test_a_burst_of_events_reaches_its_listeners_whole_and_in_order(rt: ProcessRuntime) -> None:
    # Given listeners of t1 and t2
    async def listen() -> tuple[list[str], list[str]]:
        waiters = JobHandle("t1", rt.store)._async_waiters()
        async with waiters.listen("t1") as first, waiters.listen("t2") as second:
            # When a thousand events come at once on their channels, interleaved
            pipe = rt.store.redis.pipeline(transaction=False)
            for n in range(500):
                pipe.publish(rt.store.job_channel("t1"), f"t1-{n}")
                pipe.publish(rt.store.job_channel("t2"), f"t2-{n}")
            pipe.execute()
            return (
                [await asyncio.wait_for(first.get(), 5) for _ in range(500)],
                [await asyncio.wait_for(second.get(), 5) for _ in range(500)],
            )

    # Then each listener got its own job's, every one, in the order they were published
    got_first, got_second = asyncio.run(listen())
    assert got_first == [f"t1-{n}" for n in range(500)]
    assert got_second == [f"t2-{n}" for n in range(500)]


def test_waiters_of_one_job_share_its_subscription_also_after_one_gave_up(
    rt: ProcessRuntime, batch: FakeBatch, poller_redis_client: redis.Redis
) -> None:
    # Given a running job that a first waiter gave up on
    running(rt, batch, "t1")
    channel = rt.store.job_channel("t1")

    async def scenario() -> tuple[list[object], int]:
        with pytest.raises(WaitTimeout):
            await JobHandle("t1", rt.store).wait_async(timeout=0.2)
        # When two more wait for it, and it ends
        gathered = asyncio.gather(*(JobHandle("t1", rt.store).wait_async(10) for _ in "ab"))
        await subscribed(poller_redis_client, [channel], 1)
        subscriptions = poller_redis_client.pubsub_numsub(channel)[0][1]
        end(rt, batch, "t1", JobStatus.SUCCEEDED)
        return list(await gathered), int(subscriptions)

    # Then both get its result, having listened on one subscription
    results, subscriptions = asyncio.run(scenario())
    assert [r["status"] for r in results] == ["SUCCEEDED", "SUCCEEDED"]  # type: ignore[index]
    assert subscriptions == 1


def test_an_async_waiter_whose_jobs_event_was_lost_sees_its_end_on_the_resync(
    rt: ProcessRuntime,
    batch: FakeBatch,
    poller_redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a waiter of a running job, re-reading its record every 50 ms
    monkeypatch.setattr(client, "ASYNC_RESYNC_SECONDS", 0.05)
    running(rt, batch, "t1")
    key = rt.store.key("job", "t1")

    async def scenario() -> object:
        waiting = asyncio.ensure_future(JobHandle("t1", rt.store).wait_async(timeout=10))
        await subscribed(poller_redis_client, [rt.store.job_channel("t1")], 1)
        # When its record says it ended, but no event said so (pub/sub lost it)
        stored = json.loads(str(rt.store.redis.get(key)))
        rt.store.redis.set(key, json.dumps(stored | {"status": "SUCCEEDED"}))
        return await waiting

    # Then the waiter still returns its result
    assert asyncio.run(scenario())["status"] == "SUCCEEDED"  # type: ignore[index]


def test_an_async_wait_names_a_job_it_cannot_read_or_find(rt: ProcessRuntime) -> None:
    # Given a job whose record is not JSON any more, and no record for another
    rt.store.redis.set(rt.store.key("job", "t9"), "{not json")
    # When a coroutine waits for either, Then it is told which job, and why
    with pytest.raises(RecordUnreadable, match="t9"):
        asyncio.run(JobHandle("t9", rt.store).wait_async(timeout=5))
    with pytest.raises(JobNotFound, match="t8"):
        asyncio.run(JobHandle("t8", rt.store).wait_async(timeout=5))


def test_a_failed_job_raises_an_error_that_carries_what_to_act_on(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a job whose Batch job failed with an exit code
    record = running(rt, batch, "t1")
    assert record.job_id is not None
    batch.set_status(
        record.job_id, JobStatus.FAILED, reason="Essential container exited", exit_code=3
    )
    lifecycle.check(rt, "t1", 0)
    # When its outcome is produced, Then the error carries the job's facts as attributes
    with pytest.raises(JobFailed) as failed:
        lifecycle.outcome(rt.store.get("t1"))
    err = failed.value
    assert (err.tracking_id, err.job_id, err.status) == ("t1", record.job_id, JobStatus.FAILED)
    assert (err.status_reason, err.exit_code) == ("Essential container exited", 3)
    assert err.failure_kind is not None


@pytest.mark.parametrize("error", [JobFailed, JobTimedOut, SubmitRejected])
def test_an_ended_jobs_error_keeps_its_attributes_through_the_json_result_backend(
    error: type[JobEnded],
) -> None:
    # Given the error a failed job's task raised
    raised = error(
        "job t1: ended", tracking_id="t1", job_id="j-1", status="FAILED",
        status_reason="Essential container in task exited", exit_code=137,
        failure_kind="out_of_memory",
    )  # fmt: skip
    backend = Backend(app=Celery(set_as_current=False), serializer="json")
    # When it travels through Celery's JSON result backend to the caller
    stored = json.loads(json.dumps(backend.prepare_exception(raised, serializer="json")))
    rebuilt = backend.exception_to_python(stored)
    # Then the caller's copy has the same type, message and attributes
    assert type(rebuilt) is error and str(rebuilt) == "job t1: ended"
    assert (rebuilt.tracking_id, rebuilt.job_id, rebuilt.exit_code) == ("t1", "j-1", 137)
    assert rebuilt.status is JobStatus.FAILED
    assert rebuilt.status_reason == "Essential container in task exited"
    assert rebuilt.failure_kind is FailureKind.OUT_OF_MEMORY


def test_a_rebuilt_error_with_unknown_values_keeps_them_out() -> None:
    # Given a stored error whose status and kind no poller knows (outside data)
    rebuilt = JobFailed("job t1: ended", "t1", None, "EXPLODED", None, None, "gremlins")
    # Then they are None, never a crash in the caller's .get()
    assert rebuilt.status is None and rebuilt.failure_kind is None
