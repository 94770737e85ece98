"""The local AWS Batch endpoint, exercised as a real server child process through boto3.

Every test talks HTTP to a `LocalBatch` child process: no mocks. Waiting is done by polling
for a condition with a deadline.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from aws_batch_emulator import EmulatorError, FaultConfig, LocalBatch
from aws_batch_emulator.resources import (
    ECHO_JOB_DEFINITION,
    JOB_QUEUE,
    LOG_GROUP,
    SLEEP_JOB_DEFINITION,
)
from botocore.exceptions import ClientError
from waiting import eventually

pytestmark = pytest.mark.integration

LIFECYCLE = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"]
DONE = {"SUCCEEDED", "FAILED"}
ESSENTIAL_EXITED = "Essential container in task exited"
NO_RETRIES: dict[str, Any] = {"retries": {"total_max_attempts": 1}}


# --- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch() -> Iterator[LocalBatch]:
    """Process runtime with short stages, room for several jobs at once."""
    with LocalBatch(runtime="process", concurrency=8, stage_seconds=0.1) as server:
        yield server


@pytest.fixture(scope="module")
def single_slot() -> Iterator[LocalBatch]:
    """Process runtime whose compute environment runs one job at a time."""
    with LocalBatch(runtime="process", concurrency=1, stage_seconds=0.05) as server:
        yield server


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[LocalBatch]:
    """A server for fault injection tests."""
    with LocalBatch(runtime="process", stage_seconds=0.05) as server:
        yield server


@pytest.fixture
def faulty(faulty_server: LocalBatch) -> Iterator[LocalBatch]:
    """The fault server with no faults and zeroed counters, restored after the test."""
    faulty_server.set_faults(**FaultConfig().to_json())
    faulty_server.reset_stats()
    yield faulty_server
    faulty_server.set_faults(**FaultConfig().to_json())


@pytest.fixture(scope="module")
def simulated() -> Iterator[LocalBatch]:
    """Simulated runtime: jobs run 0.3 s by default and start no process."""
    with LocalBatch(runtime="simulated", stage_seconds=0.05, sim_seconds=0.3) as server:
        yield server


# --- helpers -------------------------------------------------------------------------------


def describe(client: Any, job_id: str) -> dict[str, Any]:
    jobs = client.describe_jobs(jobs=[job_id])["jobs"]
    assert len(jobs) == 1, f"job {job_id} not found"
    job: dict[str, Any] = jobs[0]
    return job


def wait_for_status(
    client: Any, job_id: str, *statuses: str, timeout: float = 20.0
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        job = describe(client, job_id)
        return job if job["status"] in statuses else None

    return eventually(probe, timeout)


def wait_done(client: Any, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    return wait_for_status(client, job_id, *DONE, timeout=timeout)


def submit(client: Any, name: str, definition: str = SLEEP_JOB_DEFINITION, **kwargs: Any) -> str:
    job_id: str = client.submit_job(
        jobName=name, jobQueue=JOB_QUEUE, jobDefinition=definition, **kwargs
    )["jobId"]
    return job_id


def sleep_job(client: Any, name: str, seconds: float, exit_code: int = 0, **kwargs: Any) -> str:
    parameters = {"seconds": str(seconds), "exit_code": str(exit_code)}
    return submit(client, name, parameters=parameters, **kwargs)


def log_messages(server: LocalBatch, job: dict[str, Any]) -> list[str]:
    events = server.client("logs").get_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=job["container"]["logStreamName"],
        startFromHead=True,
    )["events"]
    return [event["message"] for event in events]


def error_of(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def raw_post(server: LocalBatch, path: str, body: bytes) -> int:
    request = urllib.request.Request(
        f"{server.endpoint_url}{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


# --- lifecycle -----------------------------------------------------------------------------


def test_job_passes_through_every_state_with_increasing_timestamps(batch: LocalBatch) -> None:
    # Given a client polling a job of the sleep definition
    client = batch.client()
    job_id = sleep_job(client, "lifecycle", seconds=0.5)
    seen: list[str] = []
    listed_while_running = False

    # When it is described every few milliseconds until it ends
    def probe() -> dict[str, Any] | None:
        nonlocal listed_while_running
        job = describe(client, job_id)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
            if job["status"] == "RUNNING":
                running = client.list_jobs(jobQueue=JOB_QUEUE, jobStatus="RUNNING")
                listed_while_running = job_id in {j["jobId"] for j in running["jobSummaryList"]}
        return job if job["status"] in DONE else None

    job = eventually(probe, interval=0.01)

    # Then the statuses came in lifecycle order, nearly all of them observed
    assert seen == sorted(seen, key=LIFECYCLE.index), seen
    assert {"RUNNING", "SUCCEEDED"} <= set(seen)
    assert len({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING"} & set(seen)) >= 3, seen
    assert listed_while_running
    # And the job reports AWS's fields with increasing epoch-millisecond timestamps
    assert job["createdAt"] <= job["startedAt"] <= job["stoppedAt"]
    assert job["stoppedAt"] - job["startedAt"] >= 500
    assert job["statusReason"] == ESSENTIAL_EXITED
    assert job["container"]["exitCode"] == 0
    assert job["container"]["logStreamName"] == f"{SLEEP_JOB_DEFINITION}/default/{job_id}"
    [attempt] = job["attempts"]
    assert attempt["startedAt"] == job["startedAt"]
    assert attempt["stoppedAt"] == job["stoppedAt"]
    assert attempt["container"]["exitCode"] == 0
    assert attempt["statusReason"] == ESSENTIAL_EXITED
    assert log_messages(batch, job) == ["starting 0.5", "finished"]


def ended_jobs(client: Any, job_ids: list[str]) -> list[dict[str, Any]]:
    """The jobs, described once all have ended (pages of 100 ids)."""

    def probe() -> list[dict[str, Any]] | None:
        jobs = [
            job
            for page in range(0, len(job_ids), 100)
            for job in client.describe_jobs(jobs=job_ids[page : page + 100])["jobs"]
        ]
        return jobs if all(job["status"] in DONE for job in jobs) else None

    return eventually(probe, timeout=60, interval=0.1)


def assert_one_instant_per_transition(jobs: list[dict[str, Any]]) -> None:
    """A job starts and stops at the very instants its last attempt does."""
    mismatched = [
        (job["jobId"], field, job[field], job["attempts"][-1][field])
        for job in jobs
        for field in ("startedAt", "stoppedAt")
        if job[field] != job["attempts"][-1][field]
    ]
    assert not mismatched, mismatched


def test_a_job_and_its_last_attempt_share_each_instant_on_the_process_runtime(
    batch: LocalBatch,
) -> None:
    # Given 30 short jobs running side by side, some failing, one retried
    client = batch.client()
    job_ids = [sleep_job(client, f"instant-{i}", seconds=0.05, exit_code=i % 3) for i in range(29)]
    job_ids.append(sleep_job(client, "instant-retried", 0.05, 1, retryStrategy={"attempts": 2}))
    # When they have all ended
    jobs = ended_jobs(client, job_ids)
    # Then each job's startedAt and stoppedAt are those of its last attempt, to the millisecond
    assert len(jobs) == 30
    assert_one_instant_per_transition(jobs)


def test_failing_command_ends_failed_with_its_exit_code_and_output_in_the_log(
    batch: LocalBatch,
) -> None:
    # Given a job whose command exits 3
    client = batch.client()
    job_id = sleep_job(client, "fails", seconds=0, exit_code=3)

    # When it ends
    job = wait_done(client, job_id)

    # Then it FAILED with the exit code, AWS's reason and its output in CloudWatch Logs
    assert job["status"] == "FAILED"
    assert job["statusReason"] == ESSENTIAL_EXITED
    assert job["container"]["exitCode"] == 3
    assert job["attempts"][0]["container"]["exitCode"] == 3
    assert log_messages(batch, job) == ["starting 0", "finished"]


def test_overrides_parameters_and_batch_variables_reach_the_command(batch: LocalBatch) -> None:
    # Given an echo job with a parameter and a job with overridden command and environment
    client = batch.client()
    echo_id = submit(client, "echo", ECHO_JOB_DEFINITION, parameters={"message": "hi there"})
    script = "echo $GREETING attempt=$AWS_BATCH_JOB_ATTEMPT queue=$AWS_BATCH_JQ_NAME id=$AWS_BATCH_JOB_ID"
    override_id = submit(
        client,
        "override",
        containerOverrides={
            "command": ["sh", "-c", script],
            "environment": [{"name": "GREETING", "value": "hello"}],
        },
    )

    # When both end
    echo, override = wait_done(client, echo_id), wait_done(client, override_id)

    # Then the parameter was substituted and the variables were set as on AWS Batch
    assert echo["status"] == override["status"] == "SUCCEEDED"
    assert log_messages(batch, echo) == ["hi there"]
    expected = f"hello attempt=1 queue={JOB_QUEUE} id={override_id}"
    assert log_messages(batch, override) == [expected]


def test_attempt_exceeding_its_timeout_is_killed_and_not_retried(batch: LocalBatch) -> None:
    # Given a 30 s job with a 1 s attempt timeout (and retries, which AWS skips on timeout)
    client = batch.client()
    job_id = sleep_job(
        client,
        "timeout",
        seconds=30,
        timeout={"attemptDurationSeconds": 1},
        retryStrategy={"attempts": 3},
    )

    # When it ends
    job = wait_done(client, job_id, timeout=10)

    # Then it FAILED about a second after starting, with AWS's timeout reason
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    [attempt] = job["attempts"]
    assert attempt["statusReason"] == "Job attempt duration exceeded timeout"
    assert attempt["container"]["reason"] == "Job attempt duration exceeded timeout"
    assert 1000 <= job["stoppedAt"] - job["startedAt"] < 5000


def test_terminate_kills_a_running_job(batch: LocalBatch) -> None:
    # Given a running 30 s job
    client = batch.client()
    job_id = sleep_job(client, "terminated", seconds=30)
    wait_for_status(client, job_id, "RUNNING")

    # When it is terminated
    client.terminate_job(jobId=job_id, reason="no longer needed")
    job = wait_done(client, job_id, timeout=5)

    # Then its process was killed and the job FAILED with the given reason
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "no longer needed"
    [attempt] = job["attempts"]
    assert attempt["container"]["exitCode"] == 137
    assert attempt["container"]["reason"] == "no longer needed"


def test_cancel_fails_a_waiting_job_and_leaves_a_running_one_alone(batch: LocalBatch) -> None:
    # Given a running job and a job waiting for it
    client = batch.client()
    running_id = sleep_job(client, "runs", seconds=30)
    waiting_id = submit(client, "waits", ECHO_JOB_DEFINITION, dependsOn=[{"jobId": running_id}])
    wait_for_status(client, running_id, "RUNNING")

    # When both are cancelled
    client.cancel_job(jobId=waiting_id, reason="cancelled by test")
    client.cancel_job(jobId=running_id, reason="cancelled by test")

    # Then the waiting job FAILED without an attempt, and the running one still runs
    waiting = wait_done(client, waiting_id, timeout=5)
    assert waiting["status"] == "FAILED"
    assert waiting["statusReason"] == "cancelled by test"
    assert waiting["attempts"] == []
    assert "startedAt" not in waiting
    assert describe(client, running_id)["status"] == "RUNNING"
    client.terminate_job(jobId=running_id, reason="clean up")
    wait_done(client, running_id, timeout=5)


def test_failed_attempts_are_retried_until_retry_strategy_attempts(batch: LocalBatch) -> None:
    # Given a job failing every attempt and one succeeding on its second attempt
    client = batch.client()
    always_id = sleep_job(
        client, "always-fails", seconds=0, exit_code=1, retryStrategy={"attempts": 3}
    )
    second_id = submit(
        client,
        "second-time-lucky",
        containerOverrides={"command": ["sh", "-c", 'test "$AWS_BATCH_JOB_ATTEMPT" -ge 2']},
        retryStrategy={"attempts": 3},
    )

    # When they end
    always, second = wait_done(client, always_id), wait_done(client, second_id)

    # Then attempts[] grew to the limit and the job took its last attempt's outcome
    assert always["status"] == "FAILED"
    assert [a["container"]["exitCode"] for a in always["attempts"]] == [1, 1, 1]
    starts = [a["startedAt"] for a in always["attempts"]]
    assert starts == sorted(starts)
    assert always["retryStrategy"]["attempts"] == 3
    assert second["status"] == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in second["attempts"]] == [1, 0]


def test_dependent_job_waits_in_pending_until_its_dependency_succeeds(batch: LocalBatch) -> None:
    # Given a job depending on a 1 s job
    client = batch.client()
    first_id = sleep_job(client, "first", seconds=1)
    then_id = submit(client, "then", ECHO_JOB_DEFINITION, dependsOn=[{"jobId": first_id}])

    # When the dependency runs
    wait_for_status(client, first_id, "RUNNING")
    waiting = describe(client, then_id)["status"]
    first, then = wait_done(client, first_id), wait_done(client, then_id)

    # Then the dependent job waited and ran only after its dependency succeeded
    assert waiting in {"SUBMITTED", "PENDING"}
    assert first["status"] == then["status"] == "SUCCEEDED"
    assert then["startedAt"] >= first["stoppedAt"]
    assert then["dependsOn"] == [{"jobId": first_id}]


def test_dependent_job_fails_when_its_dependency_fails(batch: LocalBatch) -> None:
    # Given a job depending on a failing job
    client = batch.client()
    failing_id = sleep_job(client, "failing", seconds=0, exit_code=2)
    dependent_id = submit(
        client, "dependent", ECHO_JOB_DEFINITION, dependsOn=[{"jobId": failing_id}]
    )

    # When the dependency fails
    dependent = wait_done(client, dependent_id)

    # Then the dependent job FAILED without running
    assert describe(client, failing_id)["status"] == "FAILED"
    assert dependent["status"] == "FAILED"
    assert dependent["statusReason"] == "Dependent Job failed"
    assert dependent["attempts"] == []


def test_array_job_runs_each_child_with_its_index(batch: LocalBatch) -> None:
    # Given an array job of 3 children echoing their index
    client = batch.client()
    command = ["sh", "-c", "sleep 0.3; echo index=$AWS_BATCH_JOB_ARRAY_INDEX"]
    parent_id = submit(
        client, "array", arrayProperties={"size": 3}, containerOverrides={"command": command}
    )

    # When the children run and end
    running = wait_for_status(client, parent_id, "RUNNING")
    parent = wait_done(client, parent_id)

    # Then the parent went RUNNING then SUCCEEDED, counting its children per status
    assert running["arrayProperties"]["size"] == 3
    assert parent["status"] == "SUCCEEDED"
    assert parent["arrayProperties"]["size"] == 3
    assert parent["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    assert parent["attempts"] == []
    # And each child <parent>:<index> saw its own index
    for index in range(3):
        child = describe(client, f"{parent_id}:{index}")
        assert child["arrayProperties"]["index"] == index
        assert child["status"] == "SUCCEEDED"
        assert log_messages(batch, child) == [f"index={index}"]
    listed = client.list_jobs(arrayJobId=parent_id, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(j["jobId"] for j in listed) == [f"{parent_id}:{i}" for i in range(3)]


def test_array_job_fails_when_a_child_fails(batch: LocalBatch) -> None:
    # Given an array job whose child 1 exits 1
    client = batch.client()
    command = ["sh", "-c", "exit $AWS_BATCH_JOB_ARRAY_INDEX"]
    parent_id = submit(
        client, "array-fails", arrayProperties={"size": 2}, containerOverrides={"command": command}
    )

    # When the children end
    parent = wait_done(client, parent_id)

    # Then the parent FAILED and its summary counts one success and one failure
    assert parent["status"] == "FAILED"
    summary = parent["arrayProperties"]["statusSummary"]
    assert (summary["SUCCEEDED"], summary["FAILED"]) == (1, 1)


def test_jobs_wait_in_runnable_while_the_compute_environment_is_full(
    single_slot: LocalBatch,
) -> None:
    # Given a compute environment with one slot, busy with a 1.5 s job
    client = single_slot.client()
    first_id = sleep_job(client, "occupies", seconds=1.5)
    second_id = sleep_job(client, "queued", seconds=0)
    wait_for_status(client, first_id, "RUNNING")

    # When both are watched together (one DescribeJobs call is a consistent snapshot)
    def snapshot_until_first_done() -> bool | None:
        jobs = {j["jobId"]: j for j in client.describe_jobs(jobs=[first_id, second_id])["jobs"]}
        if jobs[first_id]["status"] in DONE:
            return True
        second_while_first_runs.append(jobs[second_id]["status"])
        return None

    second_while_first_runs: list[str] = []
    eventually(snapshot_until_first_done)

    # Then the second job waited in RUNNABLE while the first ran, and ran only after it ended
    assert second_while_first_runs[-1] == "RUNNABLE"
    assert set(second_while_first_runs) <= {"SUBMITTED", "PENDING", "RUNNABLE"}
    second, first = wait_done(client, second_id), describe(client, first_id)
    assert second["status"] == "SUCCEEDED"
    assert second["startedAt"] >= first["stoppedAt"]


# --- faults and accounting -----------------------------------------------------------------


def test_throttled_call_gets_aws_too_many_requests_error(faulty: LocalBatch) -> None:
    # Given DescribeJobQueues throttled to 1 call per second and a client that never retries
    faulty.set_faults(throttle={"DescribeJobQueues": 1})
    client = faulty.client(**NO_RETRIES)

    # When it is called twice at once
    client.describe_job_queues()
    error = error_of(client.describe_job_queues)

    # Then the second call gets AWS Batch's throttling error, and is counted as throttled
    assert error.response["Error"]["Code"] == "TooManyRequestsException"
    assert error.response["Error"]["Message"] == "Too Many Requests."
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    stats = faulty.stats()
    assert stats["calls"]["DescribeJobQueues"] == 2
    assert stats["throttled"] == {"DescribeJobQueues": 1}


def test_standard_retry_mode_recovers_from_throttling(faulty: LocalBatch) -> None:
    # Given ListJobs throttled to 5 calls per second and a client in botocore's standard mode
    faulty.set_faults(throttle={"ListJobs": 5})
    client = faulty.client(retries={"mode": "standard", "max_attempts": 10})

    # When it makes more calls than the burst allows
    for _ in range(10):
        client.list_jobs(jobQueue=JOB_QUEUE)

    # Then every call succeeded in the end, some after being throttled
    stats = faulty.stats()
    assert stats["throttled"]["ListJobs"] >= 1
    assert stats["calls"]["ListJobs"] == 10 + stats["throttled"]["ListJobs"]


def test_error_rate_answers_a_share_of_calls_with_server_exception(faulty: LocalBatch) -> None:
    # Given half of the calls failing (seeded) and a client that never retries
    faulty.set_faults(error_rate=0.5, seed=1234)
    client = faulty.client(**NO_RETRIES)

    # When 40 calls are made
    errors = []
    for _ in range(40):
        try:
            client.describe_job_queues()
        except ClientError as err:
            errors.append(err)

    # Then a share of them got HTTP 500 ServerException, all counted as errors
    assert 5 <= len(errors) <= 35
    assert {e.response["Error"]["Code"] for e in errors} == {"ServerException"}
    assert {e.response["ResponseMetadata"]["HTTPStatusCode"] for e in errors} == {500}
    assert faulty.stats()["errors"] == {"DescribeJobQueues": len(errors)}


def test_outage_answers_503_and_keeps_state_for_the_recovery(faulty: LocalBatch) -> None:
    # Given a submitted job
    client = faulty.client(**NO_RETRIES)
    job_id = submit(client, "survives", ECHO_JOB_DEFINITION)

    # When the endpoint has an outage
    faulty.set_faults(outage=True)
    error = error_of(lambda: describe(client, job_id))

    # Then calls get HTTP 503, and after recovery the job is still there and completes
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error.response["Error"]["Code"] == "ServiceUnavailable"
    assert faulty.stats()["errors"] == {"DescribeJobs": 1}
    faulty.set_faults(outage=False)
    assert wait_done(client, job_id)["status"] == "SUCCEEDED"


def test_latency_delays_every_batch_call(faulty: LocalBatch) -> None:
    # Given 0.3 s of added latency
    faulty.set_faults(latency=0.3)
    client = faulty.client(**NO_RETRIES)

    # When a call is made
    started = time.monotonic()
    client.describe_job_queues()

    # Then it took at least that long
    assert time.monotonic() - started >= 0.3


def test_counters_count_calls_per_operation_and_reset(faulty: LocalBatch) -> None:
    # Given zeroed counters
    client = faulty.client()

    # When three DescribeJobQueues and two ListJobs calls are made
    for _ in range(3):
        client.describe_job_queues()
    for _ in range(2):
        client.list_jobs(jobQueue=JOB_QUEUE)

    # Then they are counted per AWS operation name, and a reset zeroes them
    assert faulty.stats() == {
        "calls": {"DescribeJobQueues": 3, "ListJobs": 2},
        "throttled": {},
        "errors": {},
        "incomplete": {},
    }
    assert faulty.calls("ListJobs") == 2
    faulty.reset_stats()
    assert faulty.calls("ListJobs") == 0


def test_a_request_cut_short_by_its_client_is_not_counted_as_a_call(faulty: LocalBatch) -> None:
    # Given a client that sends SubmitJob's headers and part of its body, then dies
    host, port = urllib.parse.urlsplit(faulty.endpoint_url).netloc.split(":")
    body = json.dumps({"jobName": "cut", "jobQueue": JOB_QUEUE, "jobDefinition": "x"}).encode()
    head = f"POST /v1/submitjob HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(head.encode() + body[:10])

    # Then the endpoint counts it as incomplete, not as a SubmitJob call, and creates no job
    eventually(lambda: faulty.stats()["incomplete"] == {"SubmitJob": 1})
    assert faulty.calls("SubmitJob") == 0
    assert (
        faulty.client().list_jobs(
            jobQueue=JOB_QUEUE, filters=[{"name": "JOB_NAME", "values": ["cut"]}]
        )["jobSummaryList"]
        == []
    )


def test_fault_configuration_is_validated_and_readable(faulty: LocalBatch) -> None:
    # Given a valid change
    faulty.set_faults(error_rate=0.25, throttle={"SubmitJob": 2.5})

    # When an invalid change is attempted
    with pytest.raises(ValueError, match="error_rate"):
        faulty.set_faults(error_rate=2)

    # Then the configuration keeps the last valid values
    assert faulty.faults() == FaultConfig(throttle={"SubmitJob": 2.5}, error_rate=0.25)


# --- simulated runtime ---------------------------------------------------------------------


def test_simulated_sleep_job_exits_with_its_exit_code_parameter(simulated: LocalBatch) -> None:
    # poller-sleep's own exit_code means the same in both runtimes (sim_exit_code wins if given)
    client = simulated.client()
    plain = submit(client, "exit-3", SLEEP_JOB_DEFINITION, parameters={"exit_code": "3"})
    both = submit(
        client, "exit-4", SLEEP_JOB_DEFINITION, parameters={"exit_code": "3", "sim_exit_code": "4"}
    )
    assert wait_done(client, plain)["container"]["exitCode"] == 3
    assert wait_done(client, both)["container"]["exitCode"] == 4


def test_simulated_job_honours_sim_seconds_and_sim_exit_code(simulated: LocalBatch) -> None:
    # Given a simulated job running 0.5 s and exiting 7, and one with the defaults
    client = simulated.client()
    custom_id = submit(
        client, "sim", ECHO_JOB_DEFINITION, parameters={"sim_seconds": "0.5", "sim_exit_code": "7"}
    )
    default_id = submit(client, "sim-default", ECHO_JOB_DEFINITION)
    seen: list[str] = []

    def probe() -> dict[str, Any] | None:
        job = describe(client, custom_id)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        return job if job["status"] in DONE else None

    # When they end
    custom = eventually(probe, interval=0.01)
    default = wait_done(client, default_id)

    # Then each ran for its sim_seconds, through the lifecycle, with its exit code
    assert seen == sorted(seen, key=LIFECYCLE.index)
    assert "RUNNING" in seen
    assert custom["status"] == "FAILED"
    assert custom["container"]["exitCode"] == 7
    assert custom["stoppedAt"] - custom["startedAt"] == pytest.approx(500, abs=2)
    assert custom["createdAt"] <= custom["startedAt"]
    assert default["status"] == "SUCCEEDED"
    assert default["stoppedAt"] - default["startedAt"] == pytest.approx(300, abs=2)
    assert log_messages(simulated, default) == ["simulated attempt 1: ran 0.300s, exit code 0"]


def test_a_job_and_its_last_attempt_share_each_instant_on_the_simulated_runtime(
    simulated: LocalBatch,
) -> None:
    # Given 150 simulated jobs, some failing
    client = simulated.client()
    job_ids = [
        submit(
            client, f"instant-{i}", ECHO_JOB_DEFINITION, parameters={"sim_exit_code": str(i % 2)}
        )
        for i in range(150)
    ]
    # When they have all ended, then each job's instants are those of its last attempt
    assert_one_instant_per_transition(ended_jobs(client, job_ids))


def test_simulated_jobs_terminate_cancel_retry_depend_and_fan_out(simulated: LocalBatch) -> None:
    # Given a long job, a job waiting on it, a retried failing job and an array job
    client = simulated.client()
    long_id = submit(client, "long", ECHO_JOB_DEFINITION, parameters={"sim_seconds": "60"})
    waiting_id = submit(client, "waiting", ECHO_JOB_DEFINITION, dependsOn=[{"jobId": long_id}])
    retried_id = submit(
        client,
        "retried",
        ECHO_JOB_DEFINITION,
        parameters={"sim_exit_code": "1", "sim_seconds": "0.1"},
        retryStrategy={"attempts": 2},
    )
    array_id = submit(client, "sim-array", ECHO_JOB_DEFINITION, arrayProperties={"size": 4})

    # When the waiting job is cancelled and the long one terminated once running
    client.cancel_job(jobId=waiting_id, reason="cancelled")
    wait_for_status(client, long_id, "RUNNING")
    client.terminate_job(jobId=long_id, reason="terminated")

    # Then both are frozen FAILED with their reasons
    long_job, waiting = describe(client, long_id), describe(client, waiting_id)
    assert (long_job["status"], long_job["statusReason"]) == ("FAILED", "terminated")
    assert long_job["attempts"][0]["container"]["exitCode"] == 137
    assert (waiting["status"], waiting["statusReason"]) == ("FAILED", "cancelled")
    # And the failing job was retried, the array job's children all succeeded
    retried = wait_done(client, retried_id)
    assert [a["container"]["exitCode"] for a in retried["attempts"]] == [1, 1]
    array = wait_done(client, array_id)
    assert array["status"] == "SUCCEEDED"
    assert array["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 4
    assert describe(client, f"{array_id}:3")["arrayProperties"] == {"index": 3}


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "definition", "message"),
    [
        ("no-such-queue", ECHO_JOB_DEFINITION, "Job queue no-such-queue does not exist"),
        (JOB_QUEUE, "no-such-definition", "Job definition no-such-definition does not exist"),
    ],
)
def test_unknown_queue_or_definition_is_a_client_exception(
    batch: LocalBatch, queue: str, definition: str, message: str
) -> None:
    # Given a client that never retries
    client = batch.client(**NO_RETRIES)

    # When a job is submitted to an unknown queue or definition
    error = error_of(
        lambda: client.submit_job(jobName="lost", jobQueue=queue, jobDefinition=definition)
    )

    # Then AWS's ClientException (HTTP 400) comes back
    assert error.response["Error"]["Code"] == "ClientException"
    assert error.response["Error"]["Message"] == message
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unknown_job_ids_are_left_out_of_describe_jobs(batch: LocalBatch) -> None:
    # Given one real job id and one unknown
    client = batch.client()
    job_id = submit(client, "known", ECHO_JOB_DEFINITION)

    # When both are described
    jobs = client.describe_jobs(jobs=[job_id, "00000000-0000-0000-0000-000000000000"])["jobs"]

    # Then only the real one is returned
    assert [job["jobId"] for job in jobs] == [job_id]


SUBMIT_FIELDS = {"jobQueue": JOB_QUEUE, "jobDefinition": ECHO_JOB_DEFINITION}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/submitjob", b"this is not json"),
        ("/v1/submitjob", b"[1, 2, 3]"),
        ("/v1/submitjob", b"\xff\xfe\x00"),
        ("/v1/submitjob", json.dumps(SUBMIT_FIELDS).encode()),
        ("/v1/submitjob", json.dumps({**SUBMIT_FIELDS, "jobName": 5}).encode()),
        (
            "/v1/submitjob",
            json.dumps(
                {**SUBMIT_FIELDS, "jobName": "x", "arrayProperties": {"size": "big"}}
            ).encode(),
        ),
        (
            "/v1/submitjob",
            json.dumps({**SUBMIT_FIELDS, "jobName": "x", "arrayProperties": {"size": 1}}).encode(),
        ),
        (
            "/v1/submitjob",
            json.dumps(
                {**SUBMIT_FIELDS, "jobName": "x", "dependsOn": [{"jobId": "nope"}]}
            ).encode(),
        ),
        ("/v1/describejobs", json.dumps({"jobs": "not-a-list"}).encode()),
        ("/v1/describejobs", json.dumps({"jobs": [str(i) for i in range(101)]}).encode()),
        ("/v1/listjobs", json.dumps({}).encode()),
        ("/v1/listjobs", json.dumps({"jobQueue": JOB_QUEUE, "nextToken": "garbage"}).encode()),
        ("/v1/terminatejob", json.dumps({"jobId": "x"}).encode()),
    ],
)
def test_malformed_requests_get_4xx_and_the_server_keeps_answering(
    batch: LocalBatch, path: str, body: bytes
) -> None:
    # Given a raw HTTP client (no SDK validation)
    # When a malformed request is posted
    status = raw_post(batch, path, body)

    # Then it is rejected as the client's fault, and the server still serves valid calls
    assert 400 <= status < 500
    assert batch.client().describe_job_queues(jobQueues=[JOB_QUEUE])["jobQueues"]


# --- the LocalBatch handle -----------------------------------------------------------------


def test_environ_points_sdk_clients_at_the_endpoint(
    batch: LocalBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a process environment made of LocalBatch.environ()
    for name, value in batch.environ().items():
        monkeypatch.setenv(name, value)

    # When a plain boto3 client is created without any endpoint or credentials
    client = boto3.session.Session().client("batch")

    # Then it reaches the local endpoint and its ready-made queue
    queues = client.describe_job_queues(jobQueues=[JOB_QUEUE])["jobQueues"]
    assert [queue["jobQueueName"] for queue in queues] == [JOB_QUEUE]


def test_start_failure_raises_local_stack_error_with_the_server_output(batch: LocalBatch) -> None:
    # Given a port that is already taken by a running endpoint
    taken = LocalBatch(port=batch.port, startup_timeout=20)

    # When a second endpoint is started on it
    with pytest.raises(EmulatorError) as caught:
        taken.start()

    # Then the error carries the server's stderr, and the handle is left stopped
    assert "Address already in use" in str(caught.value)
    assert taken.pid is None


def test_every_region_and_an_assumed_roles_account_run_jobs_of_their_own(
    batch: LocalBatch,
) -> None:
    # Given a client in another region, and one with credentials from STS AssumeRole
    west = batch.client("batch", region="us-west-2")
    role = batch.client("sts").assume_role(
        RoleArn="arn:aws:iam::222222222222:role/jobs", RoleSessionName="test"
    )["Credentials"]
    other_account = boto3.session.Session().client(
        "batch", endpoint_url=batch.environ()["AWS_ENDPOINT_URL_STS"], region_name="us-east-1",
        aws_access_key_id=role["AccessKeyId"], aws_secret_access_key=role["SecretAccessKey"],
        aws_session_token=role["SessionToken"],
    )  # fmt: skip
    # When each submits a job to the ready-made queue
    west_id = sleep_job(west, "west", seconds=0.2)
    other_id = sleep_job(other_account, "other-account", seconds=0.2)
    # Then each job runs where it was submitted, and nowhere else
    assert wait_for_status(west, west_id, "SUCCEEDED")["jobArn"].startswith(
        "arn:aws:batch:us-west-2:"
    )
    done = wait_for_status(other_account, other_id, "SUCCEEDED")
    assert ":222222222222:" in done["jobArn"]
    assert not batch.client().describe_jobs(jobs=[west_id, other_id])["jobs"]
