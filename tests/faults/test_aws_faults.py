"""AWS Batch throttling, 5xx and unreachability: every job still finishes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import eventually
from tests.faults.conftest import FaultStack

pytestmark = pytest.mark.integration


def test_30_percent_of_calls_failing_neither_loses_jobs_nor_uses_up_checks(
    stack: FaultStack, report: Any
) -> None:
    # Given every Batch call has a 30 % chance of a throttle or 5xx answer, with no botocore
    # retries, so each fault reaches poller itself
    stack.batch.set_faults(error_rate=0.3, throttle={"*": 50.0}, seed=7)
    stack.start_worker(POLLER_AWS_MAX_ATTEMPTS="1", POLLER_COALESCE="false")
    # And jobs whose poll policy allows just enough checks for their duration
    ids = stack.submit(40, "flaky", seconds=(1.0, 3.0), poll={"max_checks": 12})
    # When they run, Then every job still finishes
    records = stack.wait_all_terminal(ids, timeout=150)
    stats = stack.batch.stats()
    describe_calls = stats["calls"].get("DescribeJobs", 0)
    describe_faults = stats["throttled"].get("DescribeJobs", 0) + stats["errors"].get(
        "DescribeJobs", 0
    )
    faults = sum(stats["throttled"].values()) + sum(stats["errors"].values())
    checks = sum(r.schedule.checks for r in records)
    report(
        "30% faults",
        jobs=len(ids), statuses=sorted({r.status.value for r in records}),
        batch_calls=sum(stats["calls"].values()), faults_injected=faults,
        fault_share=f"{faults / max(1, sum(stats['calls'].values())):.0%}",
        describe_calls=describe_calls, describe_faults=describe_faults, checks_counted=checks,
        submit_job_calls=stats["calls"].get("SubmitJob", 0),
    )  # fmt: skip
    assert {r.status.value for r in records} == {"SUCCEEDED"}
    assert faults / sum(stats["calls"].values()) >= 0.3
    # Each check counted is one DescribeJobs call that was answered: faults used up no checks
    assert checks == describe_calls - describe_faults
    assert all(count == 1 for count in stack.wait_finished_signals(ids).values())
    assert stack.signals_sent_again() == 0


def test_tracking_resumes_after_the_endpoint_is_unreachable_for_30_seconds(
    stack: FaultStack, report: Any
) -> None:
    # Given 20 submitted jobs
    stack.start_worker()
    ids = stack.submit(20, "outage", seconds=(5.0, 10.0))
    eventually(lambda: all(r.job_id for r in stack.records(ids)), timeout=60, interval=0.5)
    # When the endpoint answers nothing but 503 for 30 s (the outage is the fault: the test
    # must let it last)
    stack.batch.set_faults(outage=True)
    time.sleep(30)
    refused = stack.batch.stats()["errors"].get("DescribeJobs", 0)
    stack.batch.set_faults(outage=False)
    # Then tracking resumes by itself and every job finishes
    records = stack.wait_all_terminal(ids, timeout=90)
    finished = stack.wait_finished_signals(ids)
    report(
        "30 s outage",
        jobs=len(ids), describe_calls_refused=refused,
        statuses=sorted({r.status.value for r in records}), jobs_lost=len(ids) - len(finished),
    )  # fmt: skip
    assert refused > 0
    assert {r.status.value for r in records} == {"SUCCEEDED"}
