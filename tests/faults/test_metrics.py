"""Fleet metrics on real servers: two workers on one Redis, scraped from `poller metrics`."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from poller.testing.processes import free_port, stop_process
from tests.conftest import eventually
from tests.faults.conftest import FaultStack

pytestmark = pytest.mark.integration

POLLER = str(Path(sys.executable).parent / "poller")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def scrape(stack: FaultStack) -> Iterator[Any]:
    """Start `poller metrics` on the stack; yields a function returning one scrape's samples."""
    port = free_port()
    env = {**os.environ, **stack.env}
    process = subprocess.Popen(
        [POLLER, "metrics", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"

    def samples() -> Samples:
        with urllib.request.urlopen(url, timeout=5) as page:
            text = page.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    try:
        eventually(lambda: _answers(samples), timeout=20, interval=0.2)
        yield samples
    finally:
        stop_process(process, timeout=10)


def _answers(samples: Any) -> bool:
    try:
        samples()
    except OSError:
        return False
    return True


REGION = ("region", "us-east-1")  # the local endpoint's


def finished(samples: Samples, status: str) -> float:
    labels = (("job_queue", "poller-local"), REGION, ("status", status))
    return samples.get(("poller_jobs_finished_total", labels), 0)


def submit_mixed(stack: FaultStack, prefix: str) -> list[str]:
    """15 jobs that succeed and 5 that fail (exit code 3)."""
    ok = stack.submit(15, f"{prefix}-ok", seconds=(1.0, 3.0))
    return ok + [_failing(f"{prefix}-bad-{i}") for i in range(5)]


def _failing(name: str) -> str:
    from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

    from poller import submit_job

    params = {"sim_seconds": "1.5", "sim_exit_code": "3", "seconds": "1.5", "exit_code": "3"}
    return str(submit_job.delay(name, JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=params).id)


def test_two_workers_count_every_job_once(stack: FaultStack, scrape: Any, report: Any) -> None:
    # Given two workers on one Redis
    stack.start_worker()
    stack.start_worker()
    stack.batch.reset_stats()
    # When 20 jobs run: 15 succeed, 5 fail
    ids = submit_mixed(stack, "two")
    stack.wait_all_terminal(ids, timeout=90)
    # Then one scrape of the fleet says so, exactly (AWS call counts reach Redis within 1 s)
    submits = ("poller_aws_calls_total", (("operation", "SubmitJob"), ("outcome", "ok"), REGION))

    def flushed() -> Samples | None:
        samples: Samples = scrape()
        return samples if samples.get(submits) == 20 else None

    samples = eventually(flushed, timeout=10)
    report(
        "two workers", succeeded=finished(samples, "SUCCEEDED"), failed=finished(samples, "FAILED"),
        submit_calls=samples[submits], endpoint_submits=stack.batch.calls("SubmitJob"),
        describe_calls=samples.get(("poller_aws_calls_total", (("operation", "DescribeJobs"), ("outcome", "ok"), REGION))),
    )  # fmt: skip
    assert finished(samples, "SUCCEEDED") == 15
    assert finished(samples, "FAILED") == 5
    assert samples[("poller_detection_lag_seconds_count", ())] == 20
    assert samples[("poller_jobs", (("status", "RUNNING"),))] == 0
    assert samples[("poller_jobs", (("status", "SUCCEEDED"),))] == 15
    assert samples[submits] == stack.batch.calls("SubmitJob") == 20
    # Each worker says it runs every reconcile interval (1 s) and counts for three: a heartbeat
    # late on a loaded machine drops it for a moment (seen once in CI), so read until both count
    workers = ("poller_workers", ())
    assert eventually(lambda: scrape().get(workers) == 2, timeout=10)
    # And no label carries a job's id or name
    values = {value for _, labels in samples for _, value in labels}
    assert not values & set(ids)
    assert not any(value.startswith("two-") for value in values)


def test_a_killed_and_replaced_worker_neither_doubles_nor_loses_a_count(
    stack: FaultStack, scrape: Any, report: Any
) -> None:
    # Given one worker tracking 20 jobs
    first = stack.start_worker()
    ids = submit_mixed(stack, "kill")
    eventually(lambda: sum(1 for r in stack.records(ids) if r.job_id) >= 10, timeout=60)
    # When it is killed -9 mid-run and replaced
    first.kill()
    stack.start_worker()
    records = stack.wait_all_terminal(ids, timeout=120)
    # Then the counts are exact: one end per job, the statuses the records say
    samples = scrape()
    ended = {
        status: sum(1 for r in records if r.status.value == status)
        for status in ("SUCCEEDED", "FAILED")
    }
    report("killed worker", counted_ok=finished(samples, "SUCCEEDED"), counted_failed=finished(samples, "FAILED"), records=ended)  # fmt: skip
    assert ended == {"SUCCEEDED": 15, "FAILED": 5}
    assert finished(samples, "SUCCEEDED") == 15
    assert finished(samples, "FAILED") == 5
    assert samples[("poller_job_transitions_total", (("status", "SUBMITTED"),))] == 20
    assert samples[("poller_jobs", (("status", "QUEUED"),))] == 0
    assert samples[("poller_jobs", (("status", "RUNNING"),))] == 0
