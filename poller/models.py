"""poller's data: job statuses, the validated job spec, the poll policy and the job record.

Everything here is plain data with validation, JSON in and out; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, TypedDict, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from poller.errors import InvalidJobSpec

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")  # fullmatch(): no "\n" after $
MAX_TAGS = 50  # AWS Batch's limit on tags per resource
POLLER_TAGS = 1  # poller's own tracking-id tag, added to every job it submits
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


class JobStatus(str, Enum):
    """Where a tracked job stands: AWS Batch's statuses plus poller's own.

    QUEUED: accepted by poller, not yet submitted. REJECTED: refused by validation or by AWS.
    TIMED_OUT: poller gave up waiting. The others are AWS Batch's own.
    """

    QUEUED = "QUEUED"
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    TIMED_OUT = "TIMED_OUT"

    TERMINAL: ClassVar[frozenset[JobStatus]]
    ACTIVE: ClassVar[frozenset[JobStatus]]

    @property
    def is_terminal(self) -> bool:
        """True for a status a job never leaves."""
        return self in JobStatus.TERMINAL

    @property
    def rank(self) -> int:
        """Position along the lifecycle; a job never moves to a lower rank."""
        return _RANK[self]


JobStatus.TERMINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.TIMED_OUT}
)
JobStatus.ACTIVE = frozenset(set(JobStatus) - JobStatus.TERMINAL)
_RANK = {status: i for i, status in enumerate(JobStatus)}
for _terminal in JobStatus.TERMINAL:
    _RANK[_terminal] = len(JobStatus)  # terminal statuses are final and equal in rank


class PollPolicy(BaseModel):
    """How often and how long a job is checked; every field has a documented default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_delay: float = Field(gt=0, le=86_400)
    max_delay: float = Field(gt=0, le=86_400)
    factor: float = Field(ge=1, le=10)
    jitter: float = Field(ge=0, le=1)
    max_checks: int = Field(ge=1, le=1_000_000)
    max_wait: float = Field(gt=0, allow_inf_nan=False)  # finite: every job ends being waited on
    terminate_on_give_up: bool


class FailureKind(str, Enum):
    """What kind of failure ended a job, from AWS's own strings (:mod:`poller.core.failures`)."""

    HOST_TERMINATED = "host_terminated"  # its EC2 host or Spot capacity was reclaimed
    OUT_OF_MEMORY = "out_of_memory"  # the container was killed for using too much memory
    IMAGE_PULL = "image_pull"  # the container's image could not be pulled
    MISCONFIGURATION = "misconfiguration"  # Batch cannot place it (MISCONFIGURATION:...)
    STUCK = "stuck"  # waited in RUNNABLE past its limit
    TIMEOUT = "timeout"  # an attempt's duration limit, or poller's max_wait / max_checks
    APP_ERROR = "app_error"  # the job's command exited non-zero
    CANCELLED = "cancelled"  # cancelled, terminated or revoked on request
    DEPENDENCY_FAILED = "dependency_failed"  # a job it depends on failed
    VANISHED = "vanished"  # DescribeJobs stopped returning it
    REJECTED = "rejected"  # refused before it ran (spec, AWS, configuration)


POSITIONAL = ("job_name", "job_queue", "job_definition")  # submit_job's positional arguments


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


@dataclass(frozen=True)
class BatchJobView:
    """What DescribeJobs said about one job, in poller's terms."""

    job_id: str
    status: JobStatus
    status_reason: str | None = None
    exit_code: int | None = None
    container_reason: str | None = None
    attempts: int = 0
    log_stream_name: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    array_status_summary: dict[str, int] | None = None
    # Where an event says it comes from: (account, region); None for DescribeJobs' answers,
    # asked of the job's own target
    origin: tuple[str, str] | None = None


@dataclass(frozen=True)
class Limits:
    """The time limits a check applies, from settings."""

    not_found_grace: float
    stuck_after: float
    give_up_when_stuck: bool


class Transition(BaseModel):
    """One status a job was seen in, and when poller saw it."""

    status: JobStatus
    observed_at: datetime


class JobResult(TypedDict):
    """A finished job, as its submission's Celery result gives it (JSON types only).

    ``submit_job.delay(...).get()``, the argument the next chain step receives and
    :meth:`poller.JobHandle.wait` all give this. Timestamps are ISO 8601 strings in UTC.
    """

    tracking_id: str  # the submission's Celery task id
    job_id: str | None  # the AWS Batch job id (None if it was never submitted)
    job_name: str
    job_queue: str
    job_definition: str
    status: str  # a JobStatus value: SUCCEEDED, FAILED, REJECTED or TIMED_OUT
    status_reason: str | None
    exit_code: int | None
    attempts: int
    log_stream_name: str | None
    created_at: str | None  # Batch: the job was created
    started_at: str | None  # Batch: its (last) attempt started
    stopped_at: str | None  # Batch: it stopped
    submitted_at: str | None  # poller: SubmitJob answered
    finished_at: str | None  # poller: the end was noticed and recorded
    array_status_summary: dict[str, int] | None  # an array job: children per status
    failure_kind: str | None  # a FailureKind value; None for SUCCEEDED


class JobRecord(BaseModel):
    """Everything poller knows about one tracked job; stored as JSON in Redis."""

    tracking_id: str
    job_name: str
    job_queue: str
    job_definition: str
    status: JobStatus = JobStatus.QUEUED
    job_id: str | None = None
    status_reason: str | None = None
    exit_code: int | None = None
    container_reason: str | None = None
    attempts: int = 0
    log_stream_name: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    checks: int = 0
    array_status_summary: dict[str, int] | None = None
    history: list[Transition] = Field(default_factory=list)
    spec: dict[str, Any] = Field(default_factory=dict)
    poll: PollPolicy
    idempotency_key: str | None = None
    stuck_notified: bool = False
    cancel_reason: str | None = None
    revoked: bool = False  # its Celery task was revoked: the job is cancelled, its result REVOKED
    missing_since: datetime | None = None
    waiting_reason: str | None = None  # an AWS error about poller's configuration, while it lasts
    waiting_since: datetime | None = None
    next_check_at: datetime | None = None
    # No check message waits for next_check_at: Batch events carry the job, and the reconciler
    # sends its check when it is due (polling's safety net without a countdown held per job).
    awaits_events: bool = False
    submit_started_at: datetime | None = None
    submit_lease_until: datetime | None = None
    resolved: bool = False  # the job's Celery result was produced (exactly once)
    canvas: dict[str, Any] | None = None
    # The job's AWS target: the profile it named, the region it runs in (the override until it
    # is submitted, then the one it was submitted to), the account (from its ARN)
    aws_profile: str | None = None
    aws_region: str | None = None
    aws_account: str | None = None
    failure_kind: FailureKind | None = None  # set when it ends other than SUCCEEDED
    version: int = 0

    def result(self) -> JobResult:
        """This job's public result fields (what ``.get()`` returns once it has ended)."""
        fields = self.model_dump(mode="json", include=set(JobResult.__annotations__))
        return cast(JobResult, fields)

    @property
    def is_terminal(self) -> bool:
        """True once the job has reached a status it never leaves."""
        return self.status.is_terminal

    @property
    def target_key(self) -> str:
        """Its AWS target as a key (:func:`target_key`)."""
        return target_key(self.aws_profile, self.aws_region)

    def describe_failure(self) -> str:
        """One line naming the Batch job id, statusReason, exit code and container reason."""
        parts = [f"Batch job {self.job_id or '(not submitted)'} ended {self.status.value}"]
        if self.status_reason:
            parts.append(f"reason: {self.status_reason}")
        if self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        if self.container_reason:
            parts.append(f"container: {self.container_reason}")
        if self.failure_kind is not None:
            parts.append(f"kind: {self.failure_kind.value}")
        return "; ".join(parts)


def target_key(profile: str | None, region: str | None) -> str:
    """An AWS target as a key: ``""`` for the default session's region unnamed,
    ``<profile>@<region>`` otherwise. Jobs with one key are described with one client."""
    if profile is None and region is None:
        return ""
    return f"{profile or ''}@{region or ''}"


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (records never hold naive datetimes)."""
    return datetime.now(UTC)


def validate_spec(
    job_name: Any = None, job_queue: Any = None, job_definition: Any = None, **fields: Any
) -> JobSpec:
    """Build a JobSpec from submit_job's arguments; InvalidJobSpec names the first bad field."""
    required = {"job_name": job_name, "job_queue": job_queue, "job_definition": job_definition}
    for name, value in required.items():
        if value is None:
            raise InvalidJobSpec(f"invalid job spec: {name}: required", field=name)
    try:
        return JobSpec(
            job_name=job_name, job_queue=job_queue, job_definition=job_definition, **fields
        )
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "spec"
        raise InvalidJobSpec(f"invalid job spec: {field}: {first['msg']}", field=field) from None
    except TypeError as err:  # an argument submit_job does not know
        raise InvalidJobSpec(f"invalid job spec: {err}") from None


def validate_poll(
    overrides: Any, defaults: dict[str, Any], max_delay_limit: tuple[float, str]
) -> PollPolicy:
    """Merge a job's ``poll`` overrides into the defaults; InvalidJobSpec names a bad field.
    ``max_delay_limit``: the broker's longest countdown, and the rule that sets it."""
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidJobSpec("invalid job spec: poll: must be a mapping", field="poll")
    try:
        policy = PollPolicy(**{**defaults, **(overrides or {})})
    except ValidationError as err:
        first = err.errors()[0]
        field = "poll." + ".".join(str(part) for part in first["loc"])
        raise InvalidJobSpec(f"invalid job spec: {field}: {first['msg']}", field=field) from None
    if policy.max_delay < policy.initial_delay:
        raise InvalidJobSpec(
            "invalid job spec: poll.max_delay: must be >= poll.initial_delay",
            field="poll.max_delay",
        )
    limit, rule = max_delay_limit
    if policy.max_delay >= limit:
        raise InvalidJobSpec(
            f"invalid job spec: poll.max_delay: must be below {rule}", field="poll.max_delay"
        )
    return policy
