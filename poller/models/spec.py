"""The job spec: a SubmitJob request validated against poller's rules and AWS's limits."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from poller.errors import InvalidJobSpec

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")  # fullmatch(): no "\n" after $
MAX_TAGS = 50  # AWS Batch's limit on tags per resource
TRACKING_TAG = "poller:tracking-id"  # tag on every Batch job poller submits, to find it again
POLLER_TAGS = 1  # poller's own tracking-id tag, added to every job it submits
DESCRIBE_PAGE = 100  # DescribeJobs takes at most 100 job ids per call
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256  # AWS's tag key and value lengths
MAX_DEPENDS_ON = 20  # AWS Batch's limit on a job's dependencies
NAME = r"[A-Za-z0-9_-]{1,128}"  # a job queue's or job definition's name
ARN_PREFIX = r"arn:aws[a-z-]*:batch:[a-z0-9-]+:\d{12}:"
JOB_QUEUE_RE = re.compile(rf"{NAME}|{ARN_PREFIX}job-queue/{NAME}")  # fullmatch()
JOB_DEFINITION_RE = re.compile(rf"(?:{ARN_PREFIX}job-definition/)?{NAME}(?::[1-9]\d{{0,8}})?")
ARRAY_SIZE_RANGE = (2, 10_000)  # AWS Batch's bounds on arrayProperties.size
MIN_ATTEMPT_SECONDS = 60  # AWS Batch refuses a shorter timeout.attemptDurationSeconds
RETRY_ATTEMPTS_RANGE = (1, 10)  # AWS Batch's bounds on retryStrategy.attempts
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")  # us-east-1, us-gov-west-1; fullmatch()


POSITIONAL = ("job_name", "job_queue", "job_definition")  # submit_job's positional arguments
SUBMIT_OPTIONS = ("poll", "resubmit", "idempotency_key")  # submit_job's keywords beside the spec's


class JobSpec(BaseModel):
    """A validated SubmitJob request in snake_case; nested values keep AWS's own shapes."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    job_name: str
    job_queue: str = Field(min_length=1)
    job_definition: str = Field(min_length=1)
    parameters: dict[str, str] | None = None
    container_overrides: dict[str, Any] | None = None
    node_overrides: dict[str, Any] | None = None
    array_properties: dict[str, Any] | None = None
    depends_on: list[dict[str, Any]] | None = None
    retry_strategy: dict[str, Any] | None = None
    timeout: dict[str, Any] | None = None
    tags: dict[str, str] | None = None
    propagate_tags: bool | None = None
    share_identifier: str | None = None
    scheduling_priority_override: int | None = None
    ecs_properties_override: dict[str, Any] | None = None
    eks_properties_override: dict[str, Any] | None = None
    # Where the job runs (poller's, not SubmitJob's): a profile of the AWS config (its region,
    # its role), and a region over the profile's or the default session's
    aws_profile: str | None = Field(None, min_length=1)
    aws_region: str | None = None

    @field_validator("aws_region")
    @classmethod
    def _aws_region(cls, value: str | None) -> str | None:
        if value is not None and not REGION_RE.fullmatch(value):
            raise ValueError(f"must be an AWS region name such as us-west-2 (got {value!r})")
        return value

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, value: str) -> str:
        if not JOB_NAME_RE.fullmatch(value):
            raise ValueError(
                "must be 1-128 letters, digits, hyphens or underscores, starting with a "
                f"letter or digit (got {value!r})"
            )
        return value

    @field_validator("job_queue")
    @classmethod
    def _job_queue(cls, value: str) -> str:
        if not JOB_QUEUE_RE.fullmatch(value):
            raise ValueError(
                "must be a job queue's name (1-128 letters, digits, hyphens or underscores) or ARN"
            )
        return value

    @field_validator("job_definition")
    @classmethod
    def _job_definition(cls, value: str) -> str:
        if not JOB_DEFINITION_RE.fullmatch(value):
            raise ValueError(
                "must be a job definition's name (1-128 letters, digits, hyphens or "
                "underscores), name:revision, or ARN"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        allowed = MAX_TAGS - POLLER_TAGS
        if len(value) > allowed:
            raise ValueError(
                f"at most {allowed} tags are allowed: AWS allows {MAX_TAGS} and poller adds "
                f"its own (got {len(value)})"
            )
        for key, tag in value.items():
            if not 1 <= len(key) <= MAX_TAG_KEY or len(tag) > MAX_TAG_VALUE:
                raise ValueError(
                    f"tag keys are 1-{MAX_TAG_KEY} characters and values at most "
                    f"{MAX_TAG_VALUE} (key {key[:40]!r})"
                )
            if key.lower().startswith("aws:"):
                raise ValueError(f"tag keys starting with 'aws:' are AWS's own (key {key[:40]!r})")
        return value

    @field_validator("array_properties")
    @classmethod
    def _array_properties(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        size = value.get("size")
        low, high = ARRAY_SIZE_RANGE
        if type(size) is not int or not low <= size <= high:
            raise ValueError(f"size must be an integer from {low} to {high} (got {size!r})")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        seconds = value.get("attemptDurationSeconds")
        if type(seconds) is not int or seconds < MIN_ATTEMPT_SECONDS:
            raise ValueError(
                f"attemptDurationSeconds must be an integer >= {MIN_ATTEMPT_SECONDS} "
                f"(got {seconds!r})"
            )
        return value

    @field_validator("retry_strategy")
    @classmethod
    def _retry_strategy(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None or "attempts" not in value:
            return value
        attempts = value["attempts"]
        low, high = RETRY_ATTEMPTS_RANGE
        if type(attempts) is not int or not low <= attempts <= high:
            raise ValueError(f"attempts must be an integer from {low} to {high} (got {attempts!r})")
        return value

    @field_validator("depends_on")
    @classmethod
    def _depends_on(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None and len(value) > MAX_DEPENDS_ON:
            raise ValueError(
                f"at most {MAX_DEPENDS_ON} dependencies are allowed (got {len(value)})"
            )
        for i, dependency in enumerate(value or []):
            if not isinstance(dependency.get("jobId"), str) or not dependency["jobId"]:
                raise ValueError(f"item {i} needs a jobId string")
        return value


def validate_spec(
    job_name: Any = None, job_queue: Any = None, job_definition: Any = None, **fields: Any
) -> JobSpec:
    """Build a JobSpec from submit_job's arguments; InvalidJobSpec names the first bad field.

    An unknown keyword is named first: a misspelt required one (``job_queu=``) would otherwise
    be reported as the required one missing, without the name it is closest to."""
    known = [*JobSpec.model_fields, *SUBMIT_OPTIONS]
    for name in fields:
        if name not in JobSpec.model_fields:
            raise InvalidJobSpec(
                f"invalid job spec: {name}: {_unknown_argument(name, known)}", field=name
            )
    required = {"job_name": job_name, "job_queue": job_queue, "job_definition": job_definition}
    for name, value in required.items():
        if value is None:
            raise InvalidJobSpec(f"invalid job spec: {name}: required", field=name)
    try:
        return JobSpec(
            job_name=job_name, job_queue=job_queue, job_definition=job_definition, **fields
        )
    except ValidationError as err:
        raise invalid(err, known=known) from None
    except TypeError as err:  # an argument submit_job does not know
        raise InvalidJobSpec(f"invalid job spec: {err}") from None


def invalid(err: ValidationError, *, known: Iterable[str], within: str = "") -> InvalidJobSpec:
    """The InvalidJobSpec for pydantic's first error: it names the field (``within.field``)
    and, for an unknown keyword, the known one it is closest to."""
    first = err.errors()[0]
    location = [str(part) for part in first["loc"]]
    field = ".".join([within, *location] if within else location) or within or "spec"
    message = first["msg"]
    if first["type"] == "extra_forbidden" and len(location) == 1:
        message = _unknown_argument(location[0], known)
    return InvalidJobSpec(f"invalid job spec: {field}: {message}", field=field)


def _unknown_argument(name: str, known: Iterable[str]) -> str:
    """What is wrong with an unknown keyword: the known one it is closest to, if any."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return "unknown argument" + (f"; did you mean {close[0]!r}?" if close else "")
