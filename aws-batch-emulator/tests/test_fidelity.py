"""The local endpoint answers as AWS Batch does: order, members and wire types of its answers.

Each answer under test is read as raw HTTP JSON (so nothing is hidden by botocore's parsing) and
checked against botocore's model of the Batch API: every member must be one the output shape
knows, of the JSON type its shape declares, and never null (AWS omits a member it has no value
for). Jobs are submitted through boto3, as a client of AWS Batch would.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Any

import botocore.session
import pytest
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import (
    COMPUTE_ENVIRONMENT,
    ECHO_JOB_DEFINITION,
    IMAGE,
    JOB_QUEUE,
    LOG_GROUP,
    SLEEP_JOB_DEFINITION,
)
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from waiting import eventually

pytestmark = pytest.mark.integration

DONE = {"SUCCEEDED", "FAILED"}

# JSON types botocore's shape types travel as (restJson1); bool is not a number here.
WIRE_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "structure": (dict,),
    "list": (list,),
    "map": (dict,),
}


@pytest.fixture(scope="module")
def batch() -> Iterator[LocalBatch]:
    """Process runtime with short stages and room for several jobs at once."""
    with LocalBatch(runtime="process", concurrency=8, stage_seconds=0.05) as server:
        yield server


@pytest.fixture(scope="module")
def finished_job(batch: LocalBatch) -> str:
    """A job that has SUCCEEDED, so that lists are not empty (waited for through boto3)."""
    client = batch.client()
    job_id = submit(batch, unique("listed"))
    eventually(
        lambda: client.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "SUCCEEDED" or None
    )
    return job_id


# --- helpers -------------------------------------------------------------------------------


@cache
def operation(name: str) -> OperationModel:
    return botocore.session.get_session().get_service_model("batch").operation_model(name)


def wire_problems(value: Any, shape: Shape, where: str = "$") -> list[str]:
    """Every way `value` (decoded JSON) differs from what `shape` allows on the wire."""
    if value is None:
        return [f"{where}: null (AWS omits the member instead)"]
    wanted = WIRE_TYPES[shape.type_name]
    if isinstance(value, bool) != (shape.type_name == "boolean") or not isinstance(value, wanted):
        return [f"{where}: {type(value).__name__} {value!r}, the model says {shape.type_name}"]
    problems: list[str] = []
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for key, item in value.items():
            if key not in shape.members:
                problems.append(f"{where}.{key}: not a member of {shape.name}")
            else:
                problems += wire_problems(item, shape.members[key], f"{where}.{key}")
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for index, item in enumerate(value):
            problems += wire_problems(item, shape.member, f"{where}[{index}]")
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        for key, item in value.items():
            problems += wire_problems(item, shape.value, f"{where}[{key!r}]")
    return problems


def raw_call(server: LocalBatch, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Call a Batch operation over plain HTTP; return the decoded JSON body of its answer."""
    http = operation(name).http
    request = urllib.request.Request(
        f"{server.endpoint_url}{http['requestUri']}",
        data=json.dumps(body).encode(),
        method=http["method"],
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def checked_call(server: LocalBatch, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """`raw_call`, failing the test if the answer does not fit the operation's output shape."""
    answer = raw_call(server, name, body)
    shape = operation(name).output_shape
    assert shape is not None
    problems = wire_problems(answer, shape)
    assert not problems, f"{name} answer off the model:\n" + "\n".join(problems)
    return answer


def describe(server: LocalBatch, *job_ids: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = checked_call(server, "DescribeJobs", {"jobs": list(job_ids)})[
        "jobs"
    ]
    assert sorted(job["jobId"] for job in jobs) == sorted(job_ids)
    return jobs


def wait_done(server: LocalBatch, *job_ids: str) -> dict[str, dict[str, Any]]:
    """Describe the jobs until every one is SUCCEEDED or FAILED; by job id."""

    def probe() -> dict[str, dict[str, Any]] | None:
        jobs = {job["jobId"]: job for job in describe(server, *job_ids)}
        return jobs if all(job["status"] in DONE for job in jobs.values()) else None

    return eventually(probe)


def submit(server: LocalBatch, name: str, definition: str = ECHO_JOB_DEFINITION, **kw: Any) -> str:
    job_id: str = server.client().submit_job(
        jobName=name, jobQueue=JOB_QUEUE, jobDefinition=definition, **kw
    )["jobId"]
    return job_id


def unique(prefix: str) -> str:
    """A job name no other test uses, so name filters see only this test's jobs."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def requirements(container: dict[str, Any]) -> dict[str, str]:
    return {item["type"]: item["value"] for item in container["resourceRequirements"]}


# --- the wire check itself -----------------------------------------------------------------


def test_the_wire_check_flags_wrong_types_nulls_and_unknown_members() -> None:
    # Given a DescribeJobQueues answer as moto used to give it
    answer = {
        "jobQueues": [
            {
                "jobQueueName": "q",
                "priority": "1",
                "schedulingPolicyArn": None,
                "computeEnvironmentOrder": [{"order": 1.0, "computeEnvironment": "ce"}],
                "state": True,
                "madeUp": 1,
            }
        ]
    }

    # When it is checked against the output shape
    shape = operation("DescribeJobQueues").output_shape
    assert shape is not None
    problems = wire_problems(answer, shape)

    # Then each deviation is named with its place
    assert problems == [
        "$.jobQueues[0].priority: str '1', the model says integer",
        "$.jobQueues[0].schedulingPolicyArn: null (AWS omits the member instead)",
        "$.jobQueues[0].computeEnvironmentOrder[0].order: float 1.0, the model says integer",
        "$.jobQueues[0].state: bool True, the model says string",
        "$.jobQueues[0].madeUp: not a member of JobQueueDetail",
    ]


# --- ListJobs order ------------------------------------------------------------------------


def test_list_jobs_gives_the_newest_job_first_with_and_without_a_filter(batch: LocalBatch) -> None:
    # Given three finished jobs of one name, submitted one after the other
    name = unique("order")
    submitted = [submit(batch, name) for _ in range(3)]
    wait_done(batch, *submitted)
    newest_first = submitted[::-1]

    # When they are listed by a JOB_NAME filter, and by status without a filter
    by_name = checked_call(
        batch,
        "ListJobs",
        {"jobQueue": JOB_QUEUE, "filters": [{"name": "JOB_NAME", "values": [name]}]},
    )["jobSummaryList"]
    by_status = checked_call(batch, "ListJobs", {"jobQueue": JOB_QUEUE, "jobStatus": "SUCCEEDED"})[
        "jobSummaryList"
    ]

    # Then both lists give the newest job first, as AWS does
    assert [job["jobId"] for job in by_name] == newest_first
    assert [job["jobId"] for job in by_status if job["jobId"] in submitted] == newest_first
    created = [job["createdAt"] for job in by_status]
    assert created == sorted(created, reverse=True)


# --- container of DescribeJobs -------------------------------------------------------------


def test_resource_requirement_overrides_and_the_image_show_in_describe_jobs(
    batch: LocalBatch,
) -> None:
    # Given a job overriding its VCPU and MEMORY requirements, and one keeping the definition's
    overridden_id = submit(
        batch,
        unique("bigger"),
        containerOverrides={
            "resourceRequirements": [
                {"type": "VCPU", "value": "2"},
                {"type": "MEMORY", "value": "2048"},
            ]
        },
    )
    plain_id = submit(batch, unique("plain"))

    # When both are described
    jobs = {job["jobId"]: job for job in describe(batch, overridden_id, plain_id)}
    overridden, plain = jobs[overridden_id]["container"], jobs[plain_id]["container"]

    # Then the override replaced the definition's requirements, and the image is the definition's
    assert requirements(overridden) == {"VCPU": "2", "MEMORY": "2048"}
    assert (overridden["vcpus"], overridden["memory"]) == (2, 2048)
    assert requirements(plain) == {"VCPU": "1", "MEMORY": "512"}
    assert (plain["vcpus"], plain["memory"]) == (1, 512)
    assert overridden["image"] == plain["image"] == IMAGE


# --- scheduling members of SubmitJob -------------------------------------------------------


def test_propagate_tags_priority_and_share_identifier_show_in_describe_jobs(
    batch: LocalBatch,
) -> None:
    # Given a job submitted with propagateTags, a scheduling priority and a share identifier
    name = unique("scheduled")
    scheduled_id = submit(
        batch, name, propagateTags=True, schedulingPriorityOverride=7, shareIdentifier="blue"
    )
    plain_id = submit(batch, unique("unscheduled"))

    # When both are described, and the first is listed
    jobs = {job["jobId"]: job for job in describe(batch, scheduled_id, plain_id)}
    [summary] = checked_call(
        batch,
        "ListJobs",
        {"jobQueue": JOB_QUEUE, "filters": [{"name": "JOB_NAME", "values": [name]}]},
    )["jobSummaryList"]

    # Then DescribeJobs shows what was given (schedulingPriority from the override) ...
    scheduled, plain = jobs[scheduled_id], jobs[plain_id]
    assert scheduled["propagateTags"] is True
    assert scheduled["schedulingPriority"] == 7
    assert scheduled["shareIdentifier"] == "blue"
    assert summary["shareIdentifier"] == "blue"
    # ... and for a job given none, the definition's propagateTags and no scheduling members
    assert plain["propagateTags"] is False
    assert "schedulingPriority" not in plain
    assert "shareIdentifier" not in plain


def test_a_scheduling_priority_out_of_range_is_a_client_exception(batch: LocalBatch) -> None:
    # Given a client that never retries
    client = batch.client(retries={"total_max_attempts": 1})

    # When a job is submitted with a priority above AWS's 9999
    with pytest.raises(ClientError) as caught:
        client.submit_job(
            jobName=unique("too-urgent"),
            jobQueue=JOB_QUEUE,
            jobDefinition=ECHO_JOB_DEFINITION,
            schedulingPriorityOverride=10_000,
        )

    # Then AWS's ClientException (HTTP 400) comes back
    assert caught.value.response["Error"]["Code"] == "ClientException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# --- log streams of array children ---------------------------------------------------------


def test_array_children_log_to_streams_cloudwatch_accepts(batch: LocalBatch) -> None:
    # Given an array job of two children echoing their index
    command = ["sh", "-c", "echo index=$AWS_BATCH_JOB_ARRAY_INDEX"]
    parent_id = submit(
        batch, unique("fan"), arrayProperties={"size": 2}, containerOverrides={"command": command}
    )
    child_ids = [f"{parent_id}:0", f"{parent_id}:1"]

    # When the children have run
    children = wait_done(batch, *child_ids)

    # Then each child's stream is <definition>/default/<hex ECS task id>, with no ':' ...
    logs = batch.client("logs")
    stream_names = set()
    for index, child_id in enumerate(child_ids):
        child = children[child_id]
        stream = child["container"]["logStreamName"]
        assert re.fullmatch(rf"{ECHO_JOB_DEFINITION}/default/[0-9a-f]{{32}}", stream), stream
        task_id = stream.rsplit("/", 1)[1]
        [attempt] = child["attempts"]
        assert attempt["container"]["logStreamName"] == stream
        assert attempt["container"]["taskArn"].endswith(f":task/{COMPUTE_ENVIRONMENT}/{task_id}")
        stream_names.add(stream)
        # ... and CloudWatch Logs serves the child's output under that name
        events = logs.get_log_events(
            logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True
        )["events"]
        assert [event["message"] for event in events] == [f"index={index}"]
    assert len(stream_names) == 2


# --- wire types and absent members ---------------------------------------------------------


def test_describe_jobs_answers_fit_the_model_in_every_kind_of_job(batch: LocalBatch) -> None:
    # Given a retried failing job with a timeout, a job depending on it, an array job, and a
    # job still running
    failing_id = submit(
        batch,
        unique("retried"),
        SLEEP_JOB_DEFINITION,
        parameters={"seconds": "0", "exit_code": "3"},
        retryStrategy={"attempts": 2, "evaluateOnExit": [{"onExitCode": "3", "action": "retry"}]},
        timeout={"attemptDurationSeconds": 60},
        tags={"team": "fidelity"},
    )
    dependent_id = submit(batch, unique("dependent"), dependsOn=[{"jobId": failing_id}])
    array_id = submit(batch, unique("array"), arrayProperties={"size": 2})
    running_id = submit(
        batch, unique("running"), SLEEP_JOB_DEFINITION, parameters={"seconds": "30"}
    )

    # When each is described while waiting or running, and once finished
    fresh = describe(batch, failing_id, dependent_id, array_id, running_id)
    eventually(lambda: describe(batch, running_id)[0]["status"] == "RUNNING" or None)
    finished = wait_done(batch, failing_id, dependent_id, array_id, f"{array_id}:1")
    batch.client().terminate_job(jobId=running_id, reason="done with it")
    terminated = wait_done(batch, running_id)[running_id]

    # Then every answer fitted the model (checked by `describe`), integers included
    for job in [*fresh, *finished.values(), terminated]:
        container = job["container"]
        assert type(container["vcpus"]) is int, job["jobId"]
        assert type(container["memory"]) is int, job["jobId"]
        assert type(job["createdAt"]) is int
    assert [a["container"]["exitCode"] for a in finished[failing_id]["attempts"]] == [3, 3]
    assert finished[dependent_id]["statusReason"] == "Dependent Job failed"
    assert terminated["attempts"][0]["container"]["exitCode"] == 137


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("DescribeJobQueues", {}),
        ("DescribeJobQueues", {"jobQueues": [JOB_QUEUE]}),
        ("DescribeJobDefinitions", {}),
        ("DescribeJobDefinitions", {"jobDefinitionName": SLEEP_JOB_DEFINITION}),
        ("DescribeComputeEnvironments", {}),
        ("ListJobs", {"jobQueue": JOB_QUEUE, "jobStatus": "SUCCEEDED"}),
        ("ListJobs", {"jobQueue": JOB_QUEUE, "filters": [{"name": "JOB_NAME", "values": ["*"]}]}),
        ("SubmitJob", {"jobName": "wire", "jobQueue": JOB_QUEUE, "jobDefinition": "poller-echo"}),
    ],
)
def test_answers_fit_the_model_on_the_wire(
    batch: LocalBatch, finished_job: str, name: str, body: dict[str, Any]
) -> None:
    # Given a finished job, so that lists are not empty
    # When the operation is called over plain HTTP
    answer = raw_call(batch, name, body)

    # Then its answer has only members of the output shape, of their JSON types, none null
    shape = operation(name).output_shape
    assert shape is not None
    problems = wire_problems(answer, shape)
    assert not problems, f"{name} answer off the model:\n" + "\n".join(problems)
    assert answer


def test_job_queue_priority_and_compute_environment_order_are_integers(batch: LocalBatch) -> None:
    # Given the ready-made job queue
    # When it is described over plain HTTP
    [queue] = checked_call(batch, "DescribeJobQueues", {"jobQueues": [JOB_QUEUE]})["jobQueues"]

    # Then priority and order are JSON integers, and the absent scheduling policy is left out
    assert type(queue["priority"]) is int
    assert [type(item["order"]) for item in queue["computeEnvironmentOrder"]] == [int]
    assert "schedulingPolicyArn" not in queue
