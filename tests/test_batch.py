"""The boto3 boundary: request mapping and error translation (botocore Stubber)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from poller.aws.batch import BatchClient, BatchJobView, submit_request
from poller.errors import BatchRequestError, BatchUnavailable, SubmitRejected
from poller.models import JobStatus, validate_spec


@pytest.fixture
def stubbed() -> Iterator[tuple[BatchClient, Stubber]]:
    client = boto3.client(
        "batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        yield BatchClient(client), stubber
        stubber.assert_no_pending_responses()


def test_snake_case_fields_map_to_submit_job_and_unset_ones_are_left_out() -> None:
    spec = validate_spec(
        "n", "q", "d", parameters={"a": "1"}, retry_strategy={"attempts": 2},
        scheduling_priority_override=5, propagate_tags=True, tags={"team": "x"},
    )  # fmt: skip
    assert submit_request(spec, {"poller:tracking-id": "t"}) == {
        "jobName": "n", "jobQueue": "q", "jobDefinition": "d", "parameters": {"a": "1"},
        "retryStrategy": {"attempts": 2}, "schedulingPriorityOverride": 5,
        "propagateTags": True, "tags": {"team": "x", "poller:tracking-id": "t"},
    }  # fmt: skip


def test_submit_sends_the_mapped_request(stubbed: tuple[BatchClient, Stubber]) -> None:
    batch, stubber = stubbed
    stubber.add_response(
        "submit_job",
        {"jobName": "n", "jobId": "id-1", "jobArn": "arn:aws:batch:us-east-1:1:job/id-1"},
        {
            "jobName": "n",
            "jobQueue": "q",
            "jobDefinition": "d",
            "containerOverrides": {"command": ["x"]},
        },
    )
    spec = validate_spec("n", "q", "d", container_overrides={"command": ["x"]})
    assert batch.submit(spec) == "id-1"


def test_a_client_error_on_submit_is_a_rejection_with_aws_message(
    stubbed: tuple[BatchClient, Stubber],
) -> None:
    batch, stubber = stubbed
    stubber.add_client_error("submit_job", "ClientException", "Job queue nope does not exist", 400)
    with pytest.raises(SubmitRejected, match="ClientException: Job queue nope does not exist"):
        batch.submit(validate_spec("n", "nope", "d"))


@pytest.mark.parametrize(
    ("code", "status"), [("TooManyRequestsException", 429), ("ServerException", 500)]
)
def test_throttling_and_5xx_are_transient(
    stubbed: tuple[BatchClient, Stubber], code: str, status: int
) -> None:
    batch, stubber = stubbed
    stubber.add_client_error("submit_job", code, "slow down", status)
    with pytest.raises(BatchUnavailable, match=code):
        batch.submit(validate_spec("n", "q", "d"))


def test_describe_parses_the_fields_poller_records(stubbed: tuple[BatchClient, Stubber]) -> None:
    batch, stubber = stubbed
    job = {
        "jobId": "id-1", "jobName": "n", "jobQueue": "q", "status": "FAILED",
        "statusReason": "Essential container in task exited", "startedAt": 1000, "stoppedAt": 2000,
        "createdAt": 500, "jobDefinition": "d",
        "attempts": [{"container": {"exitCode": 2, "logStreamName": "d/default/a", "reason": "OOM"}}],
        "container": {"exitCode": 2, "logStreamName": "d/default/a"},
    }  # fmt: skip
    stubber.add_response("describe_jobs", {"jobs": [job]}, {"jobs": ["id-1", "gone"]})
    views = batch.describe(["id-1", "gone", "id-1"])
    assert set(views) == {"id-1"}
    view = views["id-1"]
    assert isinstance(view, BatchJobView)
    assert (view.status, view.exit_code, view.container_reason, view.attempts) == (
        JobStatus.FAILED,
        2,
        "OOM",
        1,
    )
    assert view.started_at is not None and view.stopped_at is not None
    assert (view.stopped_at - view.started_at).total_seconds() == 1


def test_describe_pages_by_100(stubbed: tuple[BatchClient, Stubber]) -> None:
    batch, stubber = stubbed
    ids = [f"id-{i}" for i in range(150)]
    stubber.add_response("describe_jobs", {"jobs": []}, {"jobs": ids[:100]})
    stubber.add_response("describe_jobs", {"jobs": []}, {"jobs": ids[100:]})
    assert batch.describe(ids) == {}


def test_describe_errors_are_transient(stubbed: tuple[BatchClient, Stubber]) -> None:
    batch, stubber = stubbed
    stubber.add_client_error("describe_jobs", "TooManyRequestsException", "slow", 429)
    with pytest.raises(BatchUnavailable):
        batch.describe(["a"])


def test_terminate_and_find_by_name(stubbed: tuple[BatchClient, Stubber]) -> None:
    batch, stubber = stubbed
    stubber.add_response("terminate_job", {}, {"jobId": "a", "reason": "r"})
    batch.terminate("a", "r")
    stubber.add_response(
        "list_jobs",
        {"jobSummaryList": [{"jobId": "a", "jobName": "n"}]},
        {"jobQueue": "q", "filters": [{"name": "JOB_NAME", "values": ["n"]}]},
    )
    assert batch.find_by_name("q", "n") == ["a"]
    stubber.add_client_error("terminate_job", "ClientException", "no", 400)
    with pytest.raises(BatchRequestError):
        batch.terminate("a", "r")
