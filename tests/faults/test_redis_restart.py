"""Redis restarts (append-only file on) under a running worker: it lives on, no job is lost."""

from __future__ import annotations

import time
from typing import Any

import pytest

from poller.models import JobRecord
from poller.testing.stack import configure_process
from poller.testing.worker import Worker
from tests.conftest import eventually
from tests.faults.conftest import FAULT_SETTINGS, FaultStack

pytestmark = pytest.mark.integration

SKIPPED_ACK = "failed (its broker connection was lost)"
DROPPED = "; dropping this delivery"  # a stale check, or one whose job's result was produced
VISIBILITY_TIMEOUT = float(FAULT_SETTINGS["POLLER_VISIBILITY_TIMEOUT"])


def restart_redis(stack: FaultStack) -> None:
    """Stop Redis and start it again on the same port and data directory."""
    stack.redis.stop()
    stack.redis.start()
    configure_process({})  # this process's own clients: new connections to the restarted server


def assert_alive(worker: Worker) -> None:
    assert worker.is_running, worker.log_tail()


def wait_terminal_while_alive(
    stack: FaultStack, worker: Worker, ids: list[str], timeout: float
) -> list[JobRecord]:
    """Wait for every job to end, failing at once if the worker dies meanwhile."""

    def done() -> list[JobRecord] | None:
        assert_alive(worker)
        records = stack.records(ids)
        return records if all(r.is_terminal for r in records) else None

    return eventually(done, timeout=timeout, interval=0.5)


def assert_each_job_finished_once(stack: FaultStack, ids: list[str]) -> None:
    finished = stack.wait_finished_signals(ids)
    assert [i for i in ids if finished[i] != 1] == []


def test_a_redis_restart_mid_run_loses_no_job(stack: FaultStack, report: Any) -> None:
    # Given 50 jobs in flight
    worker = stack.start_worker()
    ids = stack.submit(50, "restart", seconds=(2.0, 6.0))
    eventually(
        lambda: sum(1 for r in stack.records(ids) if r.schedule.checks >= 1) >= 25,
        timeout=60,
        interval=0.5,
    )
    # When Redis stops and starts again on the same port and data directory
    restart_redis(stack)
    # Then the same worker stays up, reconnects by itself, and every job ends once
    records = wait_terminal_while_alive(stack, worker, ids, timeout=100)
    log = worker.log.read_text()
    report(
        "redis restart",
        jobs_tracked=len(ids), terminal=len(records),
        statuses=sorted({r.status.value for r in records}),
        skipped_acks=log.count(SKIPPED_ACK), submit_job_calls=stack.batch.calls("SubmitJob"),
    )  # fmt: skip
    assert "Unrecoverable error" not in log
    assert {r.status.value for r in records} == {"SUCCEEDED"}
    assert_each_job_finished_once(stack, ids)
    assert stack.batch.calls("SubmitJob") == 50


def test_a_check_in_flight_across_the_restart_does_not_end_the_worker(
    stack: FaultStack, report: Any
) -> None:
    # Given DescribeJobs answers only after 4 s, so a check is in flight for that long
    stack.batch.set_faults(response_delay={"DescribeJobs": 4.0})
    worker = stack.start_worker()
    pid = worker.pid
    ids = stack.submit(10, "in-flight", seconds=(1.0, 2.0))
    stack.batch.reset_stats()
    eventually(lambda: stack.batch.calls("DescribeJobs") >= 1, timeout=60, interval=0.05)
    # When Redis restarts while that check waits for its answer
    restarted = time.monotonic()
    restart_redis(stack)
    # Then the worker lives on: the check's ack, due on the lost connection, is skipped (kombu
    # raises there, which poller's consumer logs) or does nothing (the channel was closed first)
    stack.batch.set_faults(response_delay={})
    records = wait_terminal_while_alive(stack, worker, ids, timeout=60)
    ended = time.monotonic() - restarted
    # And the message of that check comes back within the visibility timeout plus a restore
    # sweep, and is dropped as already done, so each job still ends once
    eventually(lambda: DROPPED in worker.log.read_text(), timeout=30, interval=0.2)
    came_back = time.monotonic() - restarted
    log = worker.log.read_text()
    report(
        "check in flight across a redis restart",
        jobs=len(ids), all_ended_s=f"{ended:.1f}", stranded_message_back_s=f"{came_back:.1f}",
        skipped_acks=log.count(SKIPPED_ACK), same_pid=worker.pid == pid,
    )  # fmt: skip
    assert came_back <= VISIBILITY_TIMEOUT + 5
    assert worker.pid == pid
    assert "Unrecoverable error" not in log
    assert {r.status.value for r in records} == {"SUCCEEDED"}
    assert_each_job_finished_once(stack, ids)


def test_soak_five_redis_restarts_with_100_jobs_tracked(stack: FaultStack, report: Any) -> None:
    # Given 100 jobs that run until they are terminated (jobs of a fixed length could all end
    # mid-soak when restarts are slow, and leave nothing to check), and DescribeJobs answering in
    # 1.5 s so that checks are often in flight when Redis goes away
    stack.batch.set_faults(response_delay={"DescribeJobs": 1.5})
    worker = stack.start_worker()
    pid = worker.pid
    submitted = time.monotonic()
    ids = stack.submit(100, "soak", seconds=(600.0, 600.0))
    eventually(
        lambda: all(r.schedule.checks >= 1 for r in stack.records(ids)), timeout=60, interval=0.5
    )
    recoveries = []
    for _ in range(5):
        # When Redis restarts just after a DescribeJobs call went out
        before = sum(r.schedule.checks for r in stack.records(ids))
        calls = stack.batch.calls("DescribeJobs")
        eventually(lambda calls=calls: stack.batch.calls("DescribeJobs") > calls, timeout=30)
        restarted = time.monotonic()
        restart_redis(stack)
        # Then the same worker applies new checks again: the time that takes is the recovery
        eventually(
            lambda before=before: (
                assert_alive(worker)
                or sum(r.schedule.checks for r in stack.records(ids)) >= before + 20
            ),
            timeout=30,
            interval=0.2,
        )
        recoveries.append(time.monotonic() - restarted)
    restarts_done = time.monotonic() - submitted
    # And once Batch terminates the jobs, every one of them ends once, FAILED with Batch's reason
    batch = stack.batch.client()
    for record in stack.records(ids):
        batch.terminate_job(jobId=record.job_id, reason="the soak is over")
    records = wait_terminal_while_alive(stack, worker, ids, timeout=60)
    finished = stack.wait_finished_signals(ids)
    log = worker.log.read_text()
    report(
        "soak: 5 redis restarts, 100 jobs",
        recovery_s=[f"{r:.1f}" for r in recoveries], restarts_done_s=f"{restarts_done:.1f}",
        terminal=len(records),
        jobs_lost=sum(1 for i in ids if finished[i] == 0),
        duplicate_signals=sum(c - 1 for c in finished.values() if c > 1),
        skipped_acks=log.count(SKIPPED_ACK), same_pid=worker.pid == pid,
    )  # fmt: skip
    assert worker.pid == pid
    assert "Unrecoverable error" not in log
    assert {(r.status.value, r.status_reason) for r in records} == {("FAILED", "the soak is over")}
    assert_each_job_finished_once(stack, ids)
