"""Workers killed with SIGKILL: nothing lost, nothing doubled."""

from __future__ import annotations

import time
from typing import Any

import pytest

from poller import JobHandle
from tests.conftest import eventually
from tests.faults.conftest import FaultStack

pytestmark = pytest.mark.integration


def batch_jobs_named(stack: FaultStack, prefix: str) -> int:
    """How many Batch jobs exist whose name starts with ``prefix`` (any status)."""
    client = stack.batch.client()
    pages = client.get_paginator("list_jobs").paginate(
        jobQueue="poller-local", filters=[{"name": "JOB_NAME", "values": [prefix + "*"]}]
    )
    return sum(len(page["jobSummaryList"]) for page in pages)


def test_kill_9_with_200_jobs_tracked_loses_and_doubles_nothing(
    stack: FaultStack, report: Any
) -> None:
    # Given 200 jobs tracked by one worker
    first = stack.start_worker()
    ids = stack.submit(200, "crash", seconds=(2.0, 8.0))
    eventually(
        lambda: sum(1 for r in stack.records(ids) if r.job_id) >= 150, timeout=60, interval=0.5
    )
    # When the worker is killed -9 while jobs are in flight, and a new one starts
    first.kill()
    killed_at = time.monotonic()
    stack.start_worker()
    # Then every job reaches a terminal status, and its job_finished signal is received (one a
    # killed worker stored but did not send comes from the reconciler, after the 3 s grace)
    records = stack.wait_all_terminal(ids, timeout=150)
    recovery = time.monotonic() - killed_at
    statuses = {r.status.value for r in records}
    finished = stack.wait_finished_signals(ids)
    duplicates = sum(count - 1 for count in finished.values() if count > 1)
    submits = stack.batch.calls("SubmitJob")
    cut_short = stack.batch.stats()["incomplete"].get("SubmitJob", 0)
    batch_jobs = batch_jobs_named(stack, "crash-")
    report(
        "kill -9 with 200 jobs",
        jobs_tracked=len(ids), terminal=len(records), statuses=sorted(statuses),
        job_finished_signals=sum(finished.values()), duplicate_signals=duplicates,
        transitions_stored_twice=stack.status_changes_stored_twice(),
        sent_again_same_id=stack.signals_sent_again(),
        jobs_signals_sent_from_outbox=sum(
            w.log.read_text().count("stored but did not send") for w in stack.workers
        ),
        submit_job_calls=submits, submit_job_cut_short=cut_short, batch_jobs=batch_jobs,
        jobs_lost=len(ids) - len(finished), recovery_s=f"{recovery:.1f}",
    )  # fmt: skip
    assert statuses == {"SUCCEEDED"}
    # With exactly one job_finished each, and one Batch job per submission
    assert all(finished[i] == 1 for i in ids)
    assert len(finished) == 200
    assert stack.status_changes_stored_twice() == 0
    # The endpoint counted 200 SubmitJob calls (a request the killed worker had only half sent
    # is counted apart, as AWS never sees it), and 200 Batch jobs exist
    assert submits == 200
    assert batch_jobs == 200


def test_kill_9_between_submit_job_and_storing_the_id_submits_once(
    stack: FaultStack, report: Any
) -> None:
    # Given SubmitJob answers only 10 s after creating the job (the crash window)
    stack.batch.set_faults(response_delay={"SubmitJob": 10.0})
    worker = stack.start_worker()
    tracking_id = stack.submit(1, "mid-submit", seconds=(1.0, 1.0))[0]
    eventually(lambda: stack.batch.calls("SubmitJob") == 1, timeout=30)
    # When the worker dies inside that window, before it stored the Batch job id
    worker.kill()
    assert JobHandle(tracking_id).record.job_id is None
    stack.batch.set_faults(response_delay={})
    stack.start_worker()
    # Then the next attempt finds the job it had submitted instead of submitting again
    record = stack.wait_all_terminal([tracking_id], timeout=60)[0]
    batch_jobs = batch_jobs_named(stack, "mid-submit-")
    report(
        "kill -9 mid-submit",
        submit_job_calls=stack.batch.calls("SubmitJob"), list_jobs_calls=stack.batch.calls("ListJobs"),
        status=record.status.value, batch_jobs_for_submission=batch_jobs,
    )  # fmt: skip
    assert record.status.value == "SUCCEEDED"
    assert stack.batch.calls("SubmitJob") == 1
    assert batch_jobs == 1
    assert stack.batch.calls("ListJobs") >= 1
    assert stack.finished_signals()[tracking_id] == 1


def test_a_dead_workers_jobs_are_finished_by_the_surviving_worker(
    stack: FaultStack, report: Any
) -> None:
    # Given two workers sharing 60 jobs, all submitted to Batch (so both hold check messages)
    survivor, doomed = stack.start_worker(), stack.start_worker()
    ids = stack.submit(60, "survivor", seconds=(6.0, 12.0))
    eventually(lambda: all(r.job_id for r in stack.records(ids)), timeout=60, interval=0.2)
    # When one of them is killed -9 while jobs run, and nobody replaces it
    doomed.kill()
    killed_at = time.monotonic()
    running_at_kill = sum(1 for r in stack.records(ids) if not r.is_terminal)
    # Then the survivor ends every job (its reconciler re-sends the dead worker's overdue checks,
    # and the broker brings back its unacked messages after the visibility timeout)
    records = stack.wait_all_terminal(ids, timeout=120)
    recovery = time.monotonic() - killed_at
    finished = stack.wait_finished_signals(ids)
    report(
        "kill -9 of one of two workers",
        jobs=len(ids), running_at_kill=running_at_kill, recovery_s=f"{recovery:.1f}",
        reconciler_resends=survivor.log.read_text().count("check overdue since"),
        duplicate_signals=sum(c - 1 for c in finished.values() if c > 1),
    )  # fmt: skip
    assert running_at_kill > 0, "every job ended before the kill: nothing was left to take over"
    assert survivor.is_running, survivor.log_tail()
    assert {r.status.value for r in records} == {"SUCCEEDED"}
    assert all(finished[i] == 1 for i in ids)
