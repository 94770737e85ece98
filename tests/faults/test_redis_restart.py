"""Redis restarts (append-only file on) in the middle of a run: no job lost."""

from __future__ import annotations

from typing import Any

import pytest

from poller.local.stack import configure_process
from tests.conftest import eventually
from tests.faults.conftest import FaultStack

pytestmark = pytest.mark.integration


def test_a_redis_restart_mid_run_loses_no_job(stack: FaultStack, report: Any) -> None:
    # Given 50 jobs in flight
    worker = stack.start_worker()
    ids = stack.submit(50, "restart", seconds=(2.0, 6.0))
    eventually(
        lambda: sum(1 for r in stack.records(ids) if r.checks >= 1) >= 25, timeout=60, interval=0.5
    )
    # When Redis stops and starts again on the same port and data directory
    stack.redis.stop()
    stack.redis.start()
    configure_process({})  # this process's own clients: new connections to the restarted server
    # Then the same worker reconnects by itself and every job still ends, each with one job_finished
    records = stack.wait_all_terminal(ids, timeout=100)
    log = worker.log.read_text()
    finished = stack.finished_signals()
    statuses = sorted({r.status.value for r in records})
    report(
        "redis restart",
        jobs_tracked=len(ids), terminal=len(records), statuses=statuses,
        celery_close_failure_survived="closing the lost broker connection failed" in log,
        jobs_lost=sum(1 for i in ids if finished[i] == 0),
        duplicate_signals=sum(c - 1 for c in finished.values() if c > 1),
        submit_job_calls=stack.batch.calls("SubmitJob"),
    )  # fmt: skip
    assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
    assert "Unrecoverable error" not in log
    assert statuses == ["SUCCEEDED"]
    assert all(finished[i] == 1 for i in ids)
    assert stack.batch.calls("SubmitJob") == 50
