"""Batch's real failure modes, from the local endpoint, through a real worker: each kind, each
resubmit path, a RUNNABLE limit, and a worker killed -9 in the middle of a resubmission."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION, SPOT_JOB_QUEUE

from poller import JobFailed, JobHandle, JobTimedOut, submit_job
from tests.conftest import eventually
from tests.faults.conftest import FaultStack

pytestmark = pytest.mark.integration

MISCONFIGURATION = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
TO_ON_DEMAND = {"on": ["host_terminated"], "queue": JOB_QUEUE}


def submit(name: str, queue: str = JOB_QUEUE, seconds: float = 2.0, **kwargs: Any) -> Any:
    parameters = {"sim_seconds": str(seconds), "seconds": str(seconds)}
    parameters.update(kwargs.pop("parameters", {}))
    return submit_job.delay(name, queue, SLEEP_JOB_DEFINITION, parameters=parameters, **kwargs)


def test_six_failures_end_or_resubmit_by_kind(stack: FaultStack, report: Any) -> None:
    stack.start_worker()
    started = time.monotonic()
    spot = submit(
        "spot-loss", SPOT_JOB_QUEUE, parameters={"sim_failure": "host_terminated"},
        resubmit=TO_ON_DEMAND,
    )  # fmt: skip
    oom = submit(
        "oom", parameters={"sim_memory_needed": "1000"},
        resubmit={"on": ["out_of_memory"], "memory_factor": 2},
    )  # fmt: skip
    image = submit("image", parameters={"sim_failure": "image_pull"}, resubmit=TO_ON_DEMAND)
    app = submit("exit-3", parameters={"exit_code": "3"})
    stuck = submit("stuck", parameters={"sim_failure": "stuck"}, poll={"max_runnable": 10})
    fargate = submit("fargate", parameters={"sim_failure": "fargate_spot"})

    # Host loss on the spot queue: resubmitted to poller-local, where it succeeds
    done = spot.get(timeout=60)
    assert done["status"] == "SUCCEEDED"
    assert [s["job_queue"] for s in done["submissions"]] == [SPOT_JOB_QUEUE, JOB_QUEUE]
    assert done["submissions"][0]["failure_kind"] == "host_terminated"
    assert done["submissions"][0]["status_reason"].startswith("Host EC2 (instance i-")
    # Out of memory (512 MiB, needs 1000): resubmitted with 1024, where it succeeds
    done = oom.get(timeout=60)
    assert done["status"] == "SUCCEEDED"
    assert [s["memory"] for s in done["submissions"]] == [512, 1024]
    assert done["submissions"][0]["failure_kind"] == "out_of_memory"
    assert done["submissions"][0]["exit_code"] == 137
    # An image pull failure is not a host loss: not resubmitted
    with pytest.raises(JobFailed) as raised:
        image.get(timeout=60)
    assert raised.value.failure_kind == "image_pull"
    assert len(JobHandle(image.id).record.submissions) == 1
    assert JobHandle(image.id).record.batch.exit_code is None
    # Exit code 3: an app error, no policy, one submission
    with pytest.raises(JobFailed) as raised:
        app.get(timeout=60)
    assert raised.value.failure_kind == "app_error"
    assert JobHandle(app.id).record.batch.exit_code == 3
    # Stuck with MISCONFIGURATION under max_runnable=10: ends within 40 s, the reason kept
    with pytest.raises(JobTimedOut) as raised:
        stuck.get(timeout=40)
    stuck_record = JobHandle(stuck.id).record
    assert raised.value.failure_kind == "misconfiguration"
    assert MISCONFIGURATION in str(stuck_record.status_reason)
    assert stuck_record.finished_at is not None and stuck_record.submitted_at is not None
    stuck_for = (stuck_record.finished_at - stuck_record.submitted_at).total_seconds()
    # Fargate Spot's interruption is a host loss
    with pytest.raises(JobFailed) as raised:
        fargate.get(timeout=60)
    assert raised.value.failure_kind == "host_terminated"
    report(
        "six Batch failures", seconds=f"{time.monotonic() - started:.1f}",
        stuck_ended_after_s=f"{stuck_for:.1f}", submit_job_calls=stack.batch.calls("SubmitJob"),
    )  # fmt: skip
    assert stuck_for < 40
    assert stack.batch.calls("SubmitJob") == 8  # six jobs, two resubmissions


def test_batch_retry_strategy_retries_a_host_loss_into_a_success(stack: FaultStack) -> None:
    stack.start_worker()
    strategy = {
        "attempts": 2,
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "RETRY"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }
    done = submit(
        "retried", SPOT_JOB_QUEUE, retry_strategy=strategy,
        parameters={"sim_failure": "host_terminated", "sim_failing_attempts": "1"},
    ).get(timeout=60)  # fmt: skip
    assert done["status"] == "SUCCEEDED" and done["attempts"] == 2
    assert len(done["submissions"]) == 1  # Batch retried it: poller did not resubmit
    assert done["submissions"][0]["attempt_kinds"] == ["host_terminated", None]


def test_a_passing_misconfiguration_never_kills_the_job(stack: FaultStack) -> None:
    stack.start_worker()
    result = submit(
        "scaling-up", parameters={"sim_failure": "stuck", "sim_stuck_seconds": "3"},
        poll={"max_runnable": 8},
    )  # fmt: skip
    assert result.get(timeout=60)["status"] == "SUCCEEDED"
    history = [t.status.value for t in JobHandle(result.id).record.history]
    assert "RUNNABLE" in history


def test_a_stuck_job_resubmitted_elsewhere_stops_the_stuck_one(stack: FaultStack) -> None:
    stack.start_worker()
    result = submit(
        "unplaceable", SPOT_JOB_QUEUE, parameters={"sim_failure": "stuck"},
        poll={"max_runnable": 3}, resubmit={"on": ["misconfiguration"], "queue": JOB_QUEUE},
    )  # fmt: skip
    # The new Batch job is stuck too (the parameter goes with it): it ends after the one resubmission
    with pytest.raises(JobTimedOut):
        result.get(timeout=60)
    record = JobHandle(result.id).record
    assert [s.job_queue for s in record.submissions] == [SPOT_JOB_QUEUE, JOB_QUEUE]
    client = stack.batch.client()
    statuses = client.describe_jobs(jobs=[s.job_id for s in record.submissions])["jobs"]
    assert {job["status"] for job in statuses} == {"FAILED"}  # both terminated, none left RUNNABLE


def test_kill_9_during_a_resubmission_makes_one_batch_job(stack: FaultStack, report: Any) -> None:
    worker = stack.start_worker()
    result = submit(
        "resubmit-crash", SPOT_JOB_QUEUE, parameters={"sim_failure": "host_terminated"},
        resubmit=TO_ON_DEMAND,
    )  # fmt: skip
    eventually(lambda: JobHandle(result.id).record.job_id is not None, timeout=30)
    # The resubmission's SubmitJob answers only 10 s after creating the job: the crash window
    stack.batch.set_faults(response_delay={"SubmitJob": 10.0})
    eventually(lambda: stack.batch.calls("SubmitJob") == 2, timeout=30, interval=0.1)
    worker.kill()
    assert JobHandle(result.id).record.resubmitting  # the new Batch job's id was never stored
    stack.batch.set_faults(response_delay={})
    stack.start_worker()

    done = result.get(timeout=90)
    on_demand = stack.batch.client().list_jobs(
        jobQueue=JOB_QUEUE, filters=[{"name": "JOB_NAME", "values": ["resubmit-crash"]}]
    )["jobSummaryList"]
    report(
        "kill -9 mid-resubmission", submit_job_calls=stack.batch.calls("SubmitJob"),
        batch_jobs_on_fallback=len(on_demand), status=done["status"],
    )  # fmt: skip
    assert done["status"] == "SUCCEEDED"
    assert len(on_demand) == 1  # found after the crash, not submitted again
    assert stack.batch.calls("SubmitJob") == 2
    assert [s["job_queue"] for s in done["submissions"]] == [SPOT_JOB_QUEUE, JOB_QUEUE]
    assert stack.finished_signals()[result.id] == 1
