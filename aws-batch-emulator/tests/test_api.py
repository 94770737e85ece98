"""The Batch API in front of moto: what it answers itself, what it makes of moto's answers and
errors, and that moto's operations and the emulator's act on the same backends.

The first tests run `BatchApi` in process, with a stand-in for moto's Batch app that answers or
raises what each test needs. The others talk HTTP to a `LocalBatch` server.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.api import BatchApi
from aws_batch_emulator.errors import ClientException
from aws_batch_emulator.resources import (
    ACCOUNT_ID,
    COMPUTE_ENVIRONMENT,
    ECHO_JOB_DEFINITION,
    JOB_QUEUE,
    REGION,
)
from aws_batch_emulator.runtime import BatchRuntime
from aws_batch_emulator.settings import RuntimeSettings
from moto.batch import exceptions as moto_errors
from waiting import eventually
from werkzeug.test import Client, TestResponse

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

AUTH = (
    f"AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/batch/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


class StandIn:
    """moto's Batch app, as far as the front can tell: `answer` runs for each call it gets."""

    def __init__(self, answer: Callable[[], tuple[int, str]]) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.calls += 1
        status, body = self.answer()
        start_response(f"{status} X", [("Content-Type", "text/html; charset=utf-8")])
        return [body.encode()]


@pytest.fixture
def runtime() -> Iterator[BatchRuntime]:
    engine = BatchRuntime(RuntimeSettings("simulated", 4, 0.05, 0.3))
    yield engine
    engine.shutdown()


def post(app: BatchApi, path: str, body: Any) -> TestResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Client(app).post(path, data=data, headers={"Authorization": AUTH})


def body(response: TestResponse) -> Any:
    return json.loads(response.get_data())


def lock_is_held(runtime: BatchRuntime) -> bool:
    """True when a thread other than the caller's holds the default backend's lock."""
    lock = runtime.backend(ACCOUNT_ID, REGION).lock
    held: list[bool] = []

    def probe() -> None:
        free = lock.acquire(blocking=False)
        if free:
            lock.release()
        held.append(not free)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return held[0]


def test_moto_answers_under_the_backend_lock_and_its_answer_is_put_on_the_wire(
    runtime: BatchRuntime,
) -> None:
    # Given moto answering DescribeJobQueues with a numeric string and a null, as text/html
    held: list[bool] = []

    def answer() -> tuple[int, str]:
        held.append(lock_is_held(runtime))
        return 200, '{"jobQueues": [{"jobQueueName": "q", "priority": "5", "tags": null}]}'

    front = BatchApi(runtime, StandIn(answer))

    # When the front is asked
    response = post(front, "/v1/describejobqueues", {"jobQueues": ["q"]})

    # Then moto ran under the caller's backend lock, and its answer is conformed JSON
    assert held == [True]
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert body(response) == {"jobQueues": [{"jobQueueName": "q", "priority": 5}]}


@pytest.mark.parametrize(
    ("raised", "status", "code", "message"),
    [
        (moto_errors.ClientException("no such queue"), 400, "ClientException", "no such queue"),
        (moto_errors.InvalidParameterValueException("bad"), 400, "InvalidParameterValue", "bad"),
        (ClientException("no such job"), 400, "ClientException", "no such job"),
        (KeyError("state"), 400, "ClientException", "Invalid request: KeyError('state')"),
        (RuntimeError("a bug"), 500, "InternalFailure", "Internal failure of the local endpoint"),
    ],
)
def test_whatever_moto_raises_is_answered_as_a_batch_json_error(
    runtime: BatchRuntime, raised: Exception, status: int, code: str, message: str
) -> None:
    # Given moto raising an error, of its own or of the emulator's backend
    def answer() -> tuple[int, str]:
        raise raised

    front = BatchApi(runtime, StandIn(answer))

    # When an operation moto answers is called
    response = post(front, "/v1/createjobqueue", {"jobQueueName": "q", "priority": 1})

    # Then Batch's JSON error comes back: the caller's fault as 400, anything else as 500
    assert response.status_code == status
    assert response.headers["X-Amzn-ErrorType"] == code
    assert body(response) == {"__type": code, "message": message}


def test_job_operations_are_answered_without_moto(runtime: BatchRuntime) -> None:
    # Given a front whose moto app would fail the test
    moto_batch = StandIn(lambda: pytest.fail("moto was asked"))
    front = BatchApi(runtime, moto_batch)

    # When a job is submitted, described, listed and cancelled, and an unknown route called
    job = {"jobName": "here", "jobQueue": JOB_QUEUE, "jobDefinition": ECHO_JOB_DEFINITION}
    job_id = body(post(front, "/v1/submitjob", job))["jobId"]
    described = body(post(front, "/v1/describejobs", {"jobs": [job_id]}))
    listed = body(post(front, "/v1/listjobs", {"jobQueue": JOB_QUEUE, "jobStatus": "SUBMITTED"}))
    cancelled = post(front, "/v1/canceljob", {"jobId": job_id, "reason": "test"})
    unknown = post(front, "/v1/nosuchoperation", {})

    # Then the local backend answered them all, and moto none
    assert [item["jobName"] for item in described["jobs"]] == ["here"]
    assert [item["jobId"] for item in listed["jobSummaryList"]] == [job_id]
    assert (cancelled.status_code, body(cancelled)) == (200, {})
    assert (unknown.status_code, body(unknown)["__type"]) == (404, "UnknownOperationException")
    assert moto_batch.calls == 0


# --- against a server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated() -> Iterator[LocalBatch]:
    with LocalBatch(runtime="simulated", stage_seconds=0.05, sim_seconds=0.2) as server:
        yield server


def finished(client: Any, job_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        [job] = client.describe_jobs(jobs=[job_id])["jobs"]
        return job if job["status"] in ("SUCCEEDED", "FAILED") else None

    return eventually(probe)


def new_resources_take_a_job(client: Any, name: str) -> dict[str, Any]:
    """Register a definition and create a queue (moto's operations), run a job on them (ours)."""
    [environment] = client.describe_compute_environments(computeEnvironments=[COMPUTE_ENVIRONMENT])[
        "computeEnvironments"
    ]
    definition = client.register_job_definition(
        jobDefinitionName=f"{name}-def",
        type="container",
        containerProperties={"image": "local/sh", "command": ["true"], "vcpus": 1, "memory": 64},
    )["jobDefinitionArn"]
    queue = client.create_job_queue(
        jobQueueName=f"{name}-queue",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}],
    )["jobQueueArn"]  # fmt: skip
    job_id = client.submit_job(jobName=name, jobQueue=queue, jobDefinition=definition)["jobId"]
    return finished(client, job_id)


@pytest.mark.integration
def test_moto_and_the_emulator_share_the_backend_of_every_account_and_region(
    simulated: LocalBatch,
) -> None:
    # Given a client of an assumed role's account, in a region of its own
    role = simulated.client("sts").assume_role(
        RoleArn="arn:aws:iam::333333333333:role/jobs", RoleSessionName="test"
    )["Credentials"]
    client = boto3.session.Session().client(
        "batch", endpoint_url=simulated.endpoint_url, region_name="eu-west-1",
        aws_access_key_id=role["AccessKeyId"], aws_secret_access_key=role["SecretAccessKey"],
        aws_session_token=role["SessionToken"],
    )  # fmt: skip

    # When it creates a queue and a definition through moto and runs a job on them
    job = new_resources_take_a_job(client, "elsewhere")

    # Then the job ran there, on the resources moto created
    assert job["status"] == "SUCCEEDED"
    assert job["jobArn"].startswith("arn:aws:batch:eu-west-1:333333333333:job/")
    assert job["jobQueue"].endswith(":job-queue/elsewhere-queue")


@pytest.mark.integration
def test_motos_reset_leaves_the_emulators_jobs_and_resources() -> None:
    with LocalBatch(runtime="simulated", stage_seconds=0.05, sim_seconds=0.2) as server:
        # Given a finished job
        client = server.client()
        before = client.submit_job(
            jobName="before", jobQueue=JOB_QUEUE, jobDefinition=ECHO_JOB_DEFINITION
        )["jobId"]
        finished(client, before)

        # When moto's state is reset
        request = urllib.request.Request(f"{server.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

        # Then the job, the ready-made queue, and moto's operations on them are all still there
        assert [job["jobId"] for job in client.describe_jobs(jobs=[before])["jobs"]] == [before]
        assert new_resources_take_a_job(client, "after-reset")["status"] == "SUCCEEDED"


@pytest.mark.integration
def test_moto_answers_json_sent_with_another_content_type(simulated: LocalBatch) -> None:
    # Given a request body of JSON, typed as a form (as curl and urllib send it by default)
    request = urllib.request.Request(
        f"{simulated.endpoint_url}/v1/describejobqueues",
        data=json.dumps({"jobQueues": [JOB_QUEUE]}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    # When it goes to an operation moto answers
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())

    # Then moto reads it as the JSON it is
    assert [queue["jobQueueName"] for queue in answer["jobQueues"]] == [JOB_QUEUE]
