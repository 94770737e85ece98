"""AWS refusing poller's configuration (access denied) at run time: said, bounded, never silent."""

from __future__ import annotations

from typing import Any

import pytest

from poller import JobHandle
from tests.conftest import eventually
from tests.faults.conftest import FaultStack

pytestmark = pytest.mark.integration

REFUSED = "AWS refused poller's configuration"


def test_access_denied_on_submit_is_shown_then_ends_the_job_rejected(
    stack: FaultStack, report: Any
) -> None:
    # Given a role that may not call SubmitJob, and a 3 s grace for configuration errors
    stack.batch.set_faults(deny=["SubmitJob"])
    worker = stack.start_worker(POLLER_AWS_CONFIG_GRACE="3")
    tracking_id = stack.submit(1, "denied")[0]
    handle = JobHandle(tracking_id)
    # When the worker tries to submit, Then the record says why the job waits
    waiting = eventually(lambda: handle.record.schedule.waiting_reason, timeout=30, interval=0.2)
    assert "AccessDeniedException" in waiting and handle.status.value == "QUEUED"
    # And after the grace the job ends REJECTED with AWS's message, having retried a bounded
    # number of times, and the worker said so once
    record = stack.wait_all_terminal([tracking_id], timeout=60)[0]
    calls = stack.batch.calls("SubmitJob")
    report("access denied on submit", status=record.status.value, submit_job_calls=calls)
    assert record.status.value == "REJECTED"
    assert "User is not authorized to perform: batch:SubmitJob" in (record.status_reason or "")
    assert 1 <= calls <= 10  # 0.2 s growing retry delay within the 3 s grace
    assert worker.log.read_text().count(f"job {tracking_id}: {REFUSED}") == 1


def test_access_denied_on_describe_ends_a_tracked_job_timed_out(
    stack: FaultStack, report: Any
) -> None:
    # Given a job that was submitted and is being checked
    stack.start_worker(POLLER_AWS_CONFIG_GRACE="3")
    tracking_id = stack.submit(1, "blind", seconds=(30.0, 30.0))[0]
    handle = JobHandle(tracking_id)
    eventually(lambda: handle.record.schedule.checks >= 1, timeout=30, interval=0.2)
    # When the role loses DescribeJobs
    stack.batch.set_faults(deny=["DescribeJobs"])
    # Then the job waits saying why, and then poller gives up on it naming the error
    eventually(lambda: handle.record.schedule.waiting_reason, timeout=30, interval=0.2)
    record = stack.wait_all_terminal([tracking_id], timeout=60)[0]
    report("access denied on describe", status=record.status.value)
    assert record.status.value == "TIMED_OUT"
    assert REFUSED in (record.status_reason or "")
    assert "AccessDeniedException" in (record.status_reason or "")
