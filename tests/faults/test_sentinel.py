"""A fleet on Redis Sentinel: the broker, the results and the records on a replication group whose
primary is killed (SIGKILL) while jobs are in flight."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from aws_batch_emulator import LocalBatch

from poller import JobHandle, JobResult, JobStatus
from poller.store import JobStore
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.sentinel_group import SentinelGroup
from poller.testing.stack import sentinel_stack_env
from poller.testing.worker import Worker
from tests.conftest import configured_for, eventually
from tests.faults.conftest import FAULT_SETTINGS, FaultStack
from tests.integration.signal_recorder import RECORD_KEY

pytestmark = pytest.mark.integration


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as started:
        yield started


@pytest.fixture
def sentinel_env(group: SentinelGroup, fault_batch: LocalBatch) -> Iterator[dict[str, str]]:
    fault_batch.reset_stats()
    env = {
        **sentinel_stack_env(group, fault_batch, initial_delay=0.5, max_delay=2.0),
        **FAULT_SETTINGS,
    }
    with configured_for(env):
        yield env


def test_jobs_in_flight_survive_the_primary_killed(
    group: SentinelGroup, sentinel_env: dict[str, str], fault_batch: LocalBatch
) -> None:
    store = JobStore.from_url(
        sentinel_env["POLLER_REDIS_URL"], sentinel_master=group.master_name, prefix="poller"
    )
    stack = FaultStack(group.servers[0], fault_batch, sentinel_env)
    workers = [
        Worker(sentinel_env, includes=["tests.integration.signal_recorder"], concurrency=8)
        for _ in range(2)
    ]
    try:
        for worker in workers:
            worker.start()
        # Given 30 jobs in flight, some checked already, on a fleet whose three URLs name Sentinels
        ids = stack.submit(30, "sentinel", seconds=(2.0, 6.0))
        results = {i: JobHandle(i) for i in ids}
        eventually(
            lambda: sum(1 for i in ids if store.get(i).schedule.checks >= 1) >= 10,
            timeout=60,
            interval=0.5,
        )
        # When the primary dies (SIGKILL) and the Sentinels promote a replica
        old = group.kill_primary()
        new = group.wait_for_failover(old)
        assert new != old

        # Then every job ends SUCCEEDED, its result resolves (awaited in an event loop for half
        # of them, on the Sentinels' new master), and no worker died
        async def awaited(handles: list[JobHandle]) -> list[JobResult]:
            return list(await asyncio.gather(*(h.wait_async(timeout=120) for h in handles)))

        handles = list(results.values())
        outcomes = asyncio.run(awaited(handles[::2]))
        outcomes += [handle.wait(timeout=120) for handle in handles[1::2]]
        assert [o["status"] for o in outcomes] == [JobStatus.SUCCEEDED] * len(ids), outcomes
        assert all(worker.is_running for worker in workers), [w.log_tail() for w in workers]
        # And each job ran as one Batch job, and ended with one job_succeeded receiver run
        assert fault_batch.calls("SubmitJob") == len(ids)
        assert all(len(store.get(i).submissions) == 1 for i in ids)
        signals = [json.loads(raw) for raw in store.redis.lrange(store.key(RECORD_KEY), 0, -1)]
        succeeded = {
            (e["tracking_id"], e["event_id"]) for e in signals if e["signal"] == "job_succeeded"
        }
        assert Counter(tracking_id for tracking_id, _ in succeeded) == dict.fromkeys(ids, 1)
    finally:
        for worker in workers:
            worker.stop()


def test_a_write_is_confirmed_by_a_replica_and_standalone_redis_is_not_waited_for(
    group: SentinelGroup, poller_redis: EmbeddedRedis
) -> None:
    # Given the group's primary (two replicas) and a Redis without replicas
    on_group = JobStore.from_url(group.url, sentinel_master=group.master_name)
    alone = JobStore.from_url(poller_redis.url)
    # Then a write on the group is confirmed by a replica, and none is waited for alone
    on_group.redis.set("poller:test:lease", "1")
    assert on_group.confirm_replicated(timeout=5)
    started = time.monotonic()
    assert alone.confirm_replicated(timeout=5) and time.monotonic() - started < 1
    # And with every replica frozen (connected, acknowledging nothing), none confirms in time
    frozen = [replica.pid for replica in group.servers[1:] if replica.pid is not None]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        on_group.redis.set("poller:test:lease", "2")
        assert not on_group.confirm_replicated(timeout=0.3)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)


def test_poller_check_shows_the_primary_its_replicas_and_their_persistence(
    group: SentinelGroup,
) -> None:
    store = JobStore.from_url(group.url, sentinel_master=group.master_name)
    topology = store.topology()
    assert topology.role == "master" and len(topology.replicas) == 2 and topology.aof
    assert topology.warnings() == []
