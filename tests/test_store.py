"""The job store against a real Redis: records, indexes, events, and the optimistic fence."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from pydantic_core import PydanticSerializationError

from poller.aws.batch import BatchJobView
from poller.core import tracking
from poller.errors import JobNotFound
from poller.models import JobRecord, JobStatus, PollPolicy
from poller.store import Change, JobStore, Writes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = PollPolicy(
    initial_delay=1, max_delay=10, factor=2, jitter=0, max_checks=5, max_wait=3600,
    terminate_on_give_up=False,
)  # fmt: skip


@pytest.fixture
def store(poller_redis_client: redis.Redis) -> JobStore:
    return JobStore(poller_redis_client, prefix="poller", record_ttl=60)


def make(tracking_id: str = "t1") -> JobRecord:
    return tracking.new_record(
        JobRecord(
            tracking_id=tracking_id, job_name="n", job_queue="q", job_definition="d", poll=POLICY
        ),
        T0,
    )


def test_create_get_and_find_by_job_id(store: JobStore) -> None:
    store.create(make())
    assert store.get("t1").status is JobStatus.QUEUED
    assert store.active(queued=True) == ["t1"]
    assert store.active() == []
    store.update("t1", lambda r: tracking.submitted(r, "job-9", T0, T0 + timedelta(seconds=5)))
    assert store.tracking_id_for_job("job-9") == "t1"
    # Submitted, it moves to the index coalesced checks scan
    assert store.active() == ["t1"]
    assert store.active(queued=True) == []
    with pytest.raises(JobNotFound):
        store.get("nope")
    with pytest.raises(JobNotFound):
        store.tracking_id_for_job("nope")


def test_a_redelivered_create_keeps_the_first_record(store: JobStore) -> None:
    store.create(make())
    store.update("t1", lambda r: tracking.submitted(r, "job-1", T0, T0))
    again = store.create(make())
    assert again.job_id == "job-1"


def test_an_idempotency_key_returns_its_owner(store: JobStore) -> None:
    first = store.create(make("t1"), idempotency_key="k")
    second = store.create(make("t2"), idempotency_key="k")
    assert second.tracking_id == first.tracking_id == "t1"
    assert store.find("t2") is None


def test_events_are_published_with_the_change(store: JobStore) -> None:
    store.create(make())
    with store.subscribe() as pubsub:
        store.update("t1", lambda r: tracking.submitted(r, "job-1", T0, T0))
        messages = []
        deadline = time.monotonic() + 5
        while len(messages) < 2 and time.monotonic() < deadline:
            if (message := pubsub.get_message(timeout=0.5)) is not None:
                messages.append(json.loads(message["data"]))
    assert [m["event"] for m in messages] == ["job_submitted", "job_status_changed"]
    assert messages[1]["status"] == "SUBMITTED" and messages[1]["previous"] == "QUEUED"


def test_finished_records_expire_and_leave_the_active_index(
    store: JobStore, poller_redis_client: redis.Redis
) -> None:
    store.create(make())
    store.update("t1", lambda r: tracking.finish(r, JobStatus.REJECTED, "bad", T0))
    assert store.active(queued=True) == ["t1"]  # until its result is produced
    store.update("t1", tracking.resolve)
    assert store.active(queued=True) == []
    assert 0 < poller_redis_client.ttl("poller:job:t1") <= 60


def test_concurrent_updates_apply_one_transition_once(store: JobStore) -> None:
    # Given one record and 8 threads that all try to apply the same check
    store.create(make())
    store.update("t1", lambda r: tracking.submitted(r, "job-1", T0, T0))
    view = BatchJobView("job-1", JobStatus.RUNNING)
    limits = tracking.Limits(60, 600, False)
    applied: list[Change] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        change = store.update(
            "t1",
            lambda r: tracking.checked(
                r, view, check_no=0, now=T0, next_check_at=T0, limits=limits
            ),
        )
        if change is not None:
            applied.append(change)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one of them stored it
    assert len(applied) == 1
    record = store.get("t1")
    assert record.schedule.checks == 1 and record.status is JobStatus.RUNNING
    assert [t.status for t in record.history].count(JobStatus.RUNNING) == 1


def test_records_fetches_many_at_once(store: JobStore) -> None:
    store.create(make("a"))
    store.create(make("b"))
    assert [r.tracking_id for r in store.records(["a", "missing", "b"])] == ["a", "b"]
    assert store.records([]) == []


def test_an_idempotency_key_whose_owner_expired_is_free_again(
    store: JobStore, poller_redis_client: redis.Redis
) -> None:
    store.create(make("t1"), idempotency_key="k")
    poller_redis_client.delete("poller:job:t1")  # the owner's record expired
    assert store.create(make("t2"), idempotency_key="k").tracking_id == "t2"
    assert store.create(make("t3"), idempotency_key="k").tracking_id == "t2"


def test_writes_run_in_one_command_as_redis_py_would_run_them(
    store: JobStore, poller_redis_client: redis.Redis
) -> None:
    """A change's writes go to Redis as one script call; each does what redis-py's own would."""
    writes = Writes()
    writes.set("w:s", "v", ex=30)
    writes.sadd("w:set", "a", "b")
    writes.hincrby("w:h", "n", 2)
    writes.hincrbyfloat("w:h", "sum", 0.125)
    writes.zadd("w:z", {"m": 1.5})
    writes.zadd("w:z", {"m": 9.0}, nx=True)  # kept: NX does not move an existing member
    writes.zrem("w:z", "absent")
    writes.rpush("w:l", "x", "y")
    writes.expire("w:l", 40)
    with poller_redis_client.pipeline() as pipe:
        pipe.multi()
        writes.run(pipe)
        assert len(pipe) == 1  # queued as one command in the MULTI
        pipe.execute()
    assert poller_redis_client.get("w:s") == "v"
    assert 0 < poller_redis_client.ttl("w:s") <= 30
    assert poller_redis_client.smembers("w:set") == {"a", "b"}
    assert poller_redis_client.hgetall("w:h") == {"n": "2", "sum": "0.125"}
    assert poller_redis_client.zscore("w:z", "m") == 1.5
    assert poller_redis_client.lrange("w:l", 0, -1) == ["x", "y"]
    assert 0 < poller_redis_client.ttl("w:l") <= 40


def test_an_unreadable_record_is_set_aside_and_no_page_fails_on_it(store: JobStore) -> None:
    # Given two tracked jobs, one of whose records was overwritten with a wrong-typed field
    store.create(make("good"))
    store.create(make("bad"))
    raw = json.loads(store.redis.get("poller:job:bad"))
    raw["exit_code"] = "zero"
    store.redis.set("poller:job:bad", json.dumps(raw))
    # When a page of records (the reconciler's, the CLI's) and a transaction include it
    page = store.records(["bad", "good"])
    changes, records = store.update_each(
        {"bad": lambda r: None, "good": lambda r: tracking.submitted(r, "job-1", T0, T0)}
    )
    # Then the page and the transaction go on with the good one
    assert [r.tracking_id for r in page] == ["good"]
    assert list(changes) == ["good"]
    assert list(records) == ["good"]
    # And the bad one is set aside: out of the indexes, kept as it was, listed for `poller check`
    assert store.quarantined() == ["bad"]
    assert "bad" not in store.active(queued=True)
    assert json.loads(store.redis.get("poller:quarantined:bad"))["exit_code"] == "zero"
    with pytest.raises(JobNotFound):
        store.get("bad")
    assert [r.tracking_id for r in store.list()] == ["good"]


def test_a_record_holding_a_wrong_typed_value_is_never_written(store: JobStore) -> None:
    # Given a change whose record got a value of the wrong type (assignment is not validated)
    store.create(make())

    def corrupt(record: JobRecord) -> Change:
        new = record.model_copy()
        new.batch.exit_code = "zero"  # type: ignore[assignment]
        return Change(new)

    # When it is stored, Then the write fails and the stored record stays readable
    with pytest.raises(PydanticSerializationError):
        store.update("t1", corrupt)
    assert store.get("t1").batch.exit_code is None


def test_an_unreadable_record_leaves_its_own_targets_observe_index(store: JobStore) -> None:
    # Given a submitted job of another AWS target, whose record was then overwritten badly
    record = make().model_copy(update={"aws_profile": "west", "aws_region": "us-west-2"})
    store.create(record)
    store.update("t1", lambda r: tracking.submitted(r, "job-1", T0, T0))
    index = store.observations.observe_index("west@us-west-2")
    assert store.redis.zscore(index, "t1") is not None
    raw = json.loads(store.redis.get("poller:job:t1"))
    raw["checks"] = "many"
    store.redis.set("poller:job:t1", json.dumps(raw))
    # When it is read, Then it is set aside and out of that target's observe index too
    assert store.records(["t1"]) == []
    assert store.redis.zscore(index, "t1") is None


def test_the_topology_of_a_lone_redis_without_persistence_warns_of_both(store: JobStore) -> None:
    # The fast tier's Redis: no replica, no AOF, no RDB snapshots (--save "")
    topology = store.topology()
    assert (topology.role, topology.replicas, topology.aof, topology.rdb_saves) == (
        "master", [], False, False,
    )  # fmt: skip
    assert [w.split(":")[0] for w in topology.warnings()] == ["no replicas", "no persistence"]
