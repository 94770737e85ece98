"""A worker frozen (SIGSTOP: a VM pause, a long GC) past the broker's visibility timeout wakes up
holding checks that were redelivered elsewhere and leases that expired: what it does then is
fenced."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import redis

from poller import JobStatus
from tests.conftest import eventually
from tests.faults.conftest import FAULT_SETTINGS, FaultStack
from tests.faults.test_worker_crash import batch_jobs_named

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT = float(FAULT_SETTINGS["POLLER_VISIBILITY_TIMEOUT"])


def test_a_worker_frozen_past_the_visibility_timeout_doubles_nothing_when_it_wakes(
    stack: FaultStack, report: Any
) -> None:
    # Given 30 jobs in flight on two workers, some checked already
    frozen, other = stack.start_worker(), stack.start_worker()
    ids = stack.submit(30, "frozen", seconds=(3.0, 8.0))
    eventually(
        lambda: sum(1 for r in stack.records(ids) if r.schedule.checks >= 1) >= 10,
        timeout=60,
        interval=0.5,
    )
    # When one worker freezes, holding its countdowns and submissions, until the others' work
    # has ended every job (its messages came back past the visibility timeout)
    assert frozen.pid is not None
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        records = stack.wait_all_terminal(ids, timeout=VISIBILITY_TIMEOUT + 120)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    # And it wakes and goes on with what it held, until the broker holds nothing unacked
    broker = redis.Redis.from_url(stack.env["POLLER_BROKER_URL"])
    eventually(lambda: broker.hlen("poller:unacked") == 0, timeout=60, interval=0.5)
    # Then every job succeeded once: one Batch job each, one job_finished each, no transition
    # stored twice, and both workers still run
    assert {r.status for r in records} == {JobStatus.SUCCEEDED}
    finished = stack.wait_finished_signals(ids)
    assert [i for i in ids if finished[i] != 1] == []
    assert batch_jobs_named(stack, "frozen-") == len(ids)
    assert stack.status_changes_stored_twice() == 0
    assert frozen.is_running and other.is_running
    report(
        "a worker frozen past the visibility timeout",
        jobs=len(ids), batch_jobs=batch_jobs_named(stack, "frozen-"),
        submit_job_calls=stack.batch.calls("SubmitJob"),
        transitions_stored_twice=stack.status_changes_stored_twice(),
        sent_again_same_id=stack.signals_sent_again(),
    )  # fmt: skip
