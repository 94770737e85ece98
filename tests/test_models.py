from __future__ import annotations

from typing import Any

import pytest

from poller import admission
from poller.errors import InvalidJobSpec
from poller.models import JobStatus, PollPolicy, validate_poll, validate_spec
from poller.settings import Settings

GOOD = {"job_name": "report-1", "job_queue": "q", "job_definition": "d"}
POLL = PollPolicy(
    initial_delay=5.0, max_delay=60.0, factor=2.0, jitter=0.2,
    max_checks=100, max_wait=3600.0, terminate_on_give_up=False,
)  # fmt: skip


def test_statuses_split_into_terminal_and_active() -> None:
    assert {"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT"} == JobStatus.TERMINAL
    assert set(JobStatus) == JobStatus.ACTIVE | JobStatus.TERMINAL
    assert JobStatus.RUNNING.rank > JobStatus.RUNNABLE.rank > JobStatus.SUBMITTED.rank
    assert JobStatus("RUNNING") == "RUNNING"


def test_a_valid_spec_keeps_aws_shapes() -> None:
    spec = validate_spec(
        **GOOD, parameters={"seconds": "1"}, container_overrides={"command": ["echo", "hi"]}
    )
    assert spec.container_overrides == {"command": ["echo", "hi"]}


LIMIT = (3600.0, "the broker's limit")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"job_name": ""}, "job_name"),
        ({"job_name": "-starts-with-hyphen"}, "job_name"),
        ({"job_name": "x" * 129}, "job_name"),
        ({"job_name": "has space"}, "job_name"),
        ({"job_queue": ""}, "job_queue"),
        ({"job_definition": None}, "job_definition"),
        ({"parameters": {"n": 1}}, "parameters.n"),
        ({"tags": {f"k{i}": "v" for i in range(51)}}, "tags"),
        ({"tags": {f"k{i}": "v" for i in range(50)}}, "tags"),  # poller adds the 50th
        ({"tags": {"aws:created-by": "me"}}, "tags"),
        ({"tags": {"AWS:x": "me"}}, "tags"),
        ({"tags": {"k" * 129: "v"}}, "tags"),
        ({"tags": {"k": "v" * 257}}, "tags"),
        ({"job_queue": "q" * 100_000}, "job_queue"),
        ({"job_queue": "queue with spaces"}, "job_queue"),
        ({"job_queue": "q\n"}, "job_queue"),
        ({"job_definition": "d:0"}, "job_definition"),
        ({"job_definition": "d:latest"}, "job_definition"),
        ({"job_name": "report\n"}, "job_name"),
        ({"aws_region": "us-east-1\n"}, "aws_region"),
        ({"depends_on": [{"jobId": f"j{i}"} for i in range(21)]}, "depends_on"),
        ({"depends_on": [{"jobId": f"j{i}"} for i in range(1000)]}, "depends_on"),
        ({"array_properties": {"size": 1}}, "array_properties"),
        ({"array_properties": {"size": 10_001}}, "array_properties"),
        ({"timeout": {"attemptDurationSeconds": 59}}, "timeout"),
        ({"retry_strategy": {"attempts": 11}}, "retry_strategy"),
        ({"retry_strategy": {"attempts": 0}}, "retry_strategy"),
        ({"depends_on": [{"type": "N_TO_N"}]}, "depends_on"),
        ({"no_such_field": 1}, "no_such_field"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    # Given a spec that breaks one of Batch's rules
    # When it is validated
    with pytest.raises(InvalidJobSpec) as caught:
        validate_spec(**{**GOOD, **change})
    # Then the error names that field
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"initial_delay": 0}, "poll.initial_delay"),
        ({"factor": 0.5}, "poll.factor"),
        ({"jitter": 2}, "poll.jitter"),
        ({"max_checks": 0}, "poll.max_checks"),
        ({"bogus": 1}, "poll.bogus"),
        ({"max_delay": 1.0, "initial_delay": 2.0}, "poll.max_delay"),
        ({"max_delay": 4000.0}, "poll.max_delay"),
        ({"max_wait": float("inf")}, "poll.max_wait"),
        ({"max_wait": float("nan")}, "poll.max_wait"),
    ],
)
def test_bad_poll_policies_are_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidJobSpec) as caught:
        validate_poll(change, POLL, max_delay_limit=LIMIT)
    assert caught.value.field == field


def test_poll_overrides_merge_into_defaults() -> None:
    policy = validate_poll({"max_checks": 3}, POLL, max_delay_limit=LIMIT)
    assert policy.max_checks == 3
    assert policy.initial_delay == 5.0


def test_poll_must_be_a_mapping() -> None:
    with pytest.raises(InvalidJobSpec, match="poll"):
        validate_poll([1], POLL, max_delay_limit=LIMIT)


@pytest.mark.parametrize(
    ("args", "fields", "field", "says"),
    [
        (("n", "q"), {}, "job_definition", "job_definition: required"),
        (
            ("n", "q", "d"),
            {"container_overrides": {"memroy": 4096}},
            "container_overrides",
            'Unknown parameter in containerOverrides: "memroy"',
        ),
        (
            ("n", "q", "d"),
            {
                "retry_strategy": {
                    "attempts": 2,
                    "evaluateOnExit": [{"onExitCode": 1, "action": "EXIT"}],
                }
            },
            "retry_strategy",
            "Invalid type for parameter retryStrategy.evaluateOnExit[0].onExitCode",
        ),
    ],
    ids=["missing-definition", "unknown-nested-key", "nested-type"],
)
def test_a_missing_field_or_a_bad_nested_aws_value_is_refused_naming_it(
    args: tuple[str, ...], fields: dict[str, Any], field: str, says: str
) -> None:
    # Nested values are checked against botocore's own model of SubmitJob, before sending
    with pytest.raises(InvalidJobSpec) as refused:
        admission.validate(Settings(), args, fields)
    assert refused.value.field == field
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"job_queue": "arn:aws:batch:us-east-1:123456789012:job-queue/q_1"}, None),
        ({"job_definition": "d:12"}, None),
        ({"job_definition": "arn:aws:batch:eu-west-1:123456789012:job-definition/d:3"}, None),
        ({"tags": {f"k{i}": "v" * 256 for i in range(49)}}, None),
        ({"depends_on": [{"jobId": f"j{i}"} for i in range(20)]}, None),
    ],
)
def test_aws_limits_are_accepted_up_to_the_limit(change: dict[str, Any], field: None) -> None:
    validate_spec(**{**GOOD, **change})


def test_a_request_over_aws_30_kib_is_refused_in_the_caller_naming_the_largest_field() -> None:
    # Given parameters making the SubmitJob request larger than AWS accepts (30 KiB)
    big = {f"p{i}": "x" * 1000 for i in range(40)}
    # When it is validated, Then nothing is sent and the error names the parameters
    with pytest.raises(InvalidJobSpec, match="30720") as refused:
        admission.validate(Settings(), ("n", "q", "d"), {"parameters": big})
    assert refused.value.field == "parameters"


def test_a_wrong_typed_environment_value_is_refused_without_quoting_it() -> None:
    overrides = {"environment": [{"name": "TOKEN", "value": 987654321}]}
    with pytest.raises(InvalidJobSpec) as refused:
        admission.validate(Settings(), ("n", "q", "d"), {"container_overrides": overrides})
    assert refused.value.field == "container_overrides"
    assert "987654321" not in str(refused.value)


def test_a_misspelt_keyword_is_named_with_the_one_it_is_closest_to() -> None:
    # A misspelt required keyword is named as unknown, not as the required one missing
    with pytest.raises(
        InvalidJobSpec, match="job_queu: unknown argument; did you mean 'job_queue'"
    ):
        validate_spec("nightly", job_queu="q", job_definition="d")
    with pytest.raises(
        InvalidJobSpec, match="paramters: unknown argument; did you mean 'parameters'"
    ):
        validate_spec("nightly", "q", "d", paramters={"day": "1"})
