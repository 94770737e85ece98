"""Revocations that no worker received when they were sent: recorded in Redis, applied later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from poller.app import app
from poller.models import JobStatus
from tests.conftest import eventually
from tests.faults.conftest import FaultStack
from tests.integration.signal_recorder import RECORD_KEY

pytestmark = pytest.mark.integration

CELERY = str(Path(sys.executable).parent / "celery")


def signal_counts(stack: FaultStack, name: str) -> dict[str, int]:
    entries = [json.loads(raw) for raw in stack.records_db.lrange(f"poller:{RECORD_KEY}", 0, -1)]
    counts: dict[str, int] = {}
    for entry in entries:
        if entry["signal"] == name:
            counts[entry["tracking_id"]] = counts.get(entry["tracking_id"], 0) + 1
    return counts


def test_a_revoke_sent_while_no_worker_is_up_ends_the_job_once_one_runs(
    stack: FaultStack, report: Any
) -> None:
    # Given three running jobs, and then no worker at all
    worker = stack.start_worker()
    ids = stack.submit(3, "revoked-offline", seconds=(120.0, 120.0))
    eventually(lambda: all(r.status is JobStatus.RUNNING for r in stack.records(ids)), timeout=30)
    worker.stop()
    # When each is revoked through a door of poller's app: its result, with terminate, and
    # `celery -A poller control revoke` (no worker answers any of them)
    AsyncResult(ids[0], app=app).revoke()
    AsyncResult(ids[1], app=app).revoke(terminate=True)
    subprocess.run(
        [CELERY, "-A", "poller", "control", "revoke", ids[2], "--timeout", "0.5"],
        env=dict(os.environ), capture_output=True, timeout=60,
    )  # fmt: skip
    assert all(r.celery.revoked and not r.is_terminal for r in stack.records(ids))
    # And a worker starts again
    stack.start_worker()
    # Then each job ends FAILED as revoked, its Batch job terminated and its result REVOKED
    records = stack.wait_all_terminal(ids, timeout=60)
    eventually(lambda: all(AsyncResult(i, app=app).state == "REVOKED" for i in ids), timeout=30)
    client = stack.batch.client()
    jobs = client.describe_jobs(jobs=[str(r.job_id) for r in records])["jobs"]
    failed = signal_counts(stack, "job_failed")
    report(
        "revoked while no worker was up",
        statuses=sorted({r.status.value for r in records}),
        batch_statuses=sorted({j["status"] for j in jobs}), job_failed=[failed.get(i) for i in ids],
    )  # fmt: skip
    assert {r.status for r in records} == {JobStatus.FAILED}
    assert [r.status_reason for r in records] == [
        "Celery task revoked", "Celery task revoked (terminate)", "Celery task revoked",
    ]  # fmt: skip
    assert {j["status"] for j in jobs} == {"FAILED"}
    assert all("revoked" in j["statusReason"] for j in jobs)
    assert [failed.get(i) for i in ids] == [1, 1, 1]
