"""poller's data: job statuses, the validated job spec (``spec``), the poll and resubmit
policies, the job record and result.

Everything here is plain data with validation, JSON in and out; no I/O. It may import
``poller.errors`` only (import-linter's contracts in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self, TypedDict, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from poller.errors import InvalidJobSpec
from poller.models.spec import (
    DESCRIBE_PAGE,
    JOB_QUEUE_RE,
    MAX_TAGS,
    POLLER_TAGS,
    POSITIONAL,
    REGION_RE,
    SUBMIT_OPTIONS,
    TRACKING_TAG,
    JobSpec,
    invalid,
    validate_spec,
)
from poller.status import FailureKind, FailureKindName, JobStatus, TerminalStatusName

__all__ = [
    "DESCRIBE_PAGE",
    "JOB_QUEUE_RE",
    "MAX_TAGS",
    "POLLER_TAGS",
    "POSITIONAL",
    "REGION_RE",
    "SUBMIT_OPTIONS",
    "TRACKING_TAG",
    "AttemptOutcome",
    "BatchJobView",
    "BatchState",
    "CeleryState",
    "FailureKind",
    "JobRecord",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "Limits",
    "PollOptions",
    "PollPolicy",
    "ResubmitOptions",
    "ResubmitPolicy",
    "Schedule",
    "Submission",
    "SubmissionState",
    "Transition",
    "target_key",
    "utcnow",
    "validate_poll",
    "validate_resubmit",
    "validate_spec",
]


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
    # Seconds a job may wait in RUNNABLE before poller terminates it (its statusReason kept);
    # None: never. Defaults to stuck_after when give_up_when_stuck is set.
    max_runnable: float | None = Field(None, gt=0, allow_inf_nan=False)
    # Checks land on the fleet's tick grid, so checks due together share DescribeJobs calls
    align: bool = True


NEVER_RESUBMITTED = frozenset({FailureKind.CANCELLED, FailureKind.REJECTED})
"""Ends a resubmit policy may not name: a user's stop, or a refusal a new job would repeat."""


class ResubmitPolicy(BaseModel):
    """When poller submits a new Batch job for a tracked job that failed (``resubmit=``).

    ``on``: the failure kinds that resubmit; ``max``: resubmissions at most; ``queue``: the job
    queue of the resubmissions (default: the job's own); ``memory_factor``: the memory of a job
    that ran out of it is multiplied by this (container overrides' ``resourceRequirements``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    on: tuple[FailureKind, ...] = Field(min_length=1)
    max: int = Field(1, ge=1, le=10)
    queue: str | None = None
    memory_factor: float = Field(1.0, ge=1, le=16, allow_inf_nan=False)

    @field_validator("on")
    @classmethod
    def _on(cls, value: tuple[FailureKind, ...]) -> tuple[FailureKind, ...]:
        forbidden = sorted(kind.value for kind in NEVER_RESUBMITTED.intersection(value))
        if forbidden:
            raise ValueError(f"{', '.join(forbidden)} never resubmit (a stop or a refusal)")
        return value

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is not None and not JOB_QUEUE_RE.fullmatch(value):
            raise ValueError("must be a job queue's name or ARN")
        return value


class Submission(BaseModel):
    """One Batch job submitted for a tracked job: the first, or a resubmission."""

    number: int  # 1 for the first submission
    job_id: str
    job_queue: str
    memory: int | None = None  # MiB: the override sent, else what DescribeJobs showed
    submitted_at: datetime
    # How it ended (None while it runs)
    status: JobStatus | None = None
    failure_kind: FailureKind | None = None
    status_reason: str | None = None
    exit_code: int | None = None
    ended_at: datetime | None = None
    attempt_kinds: list[FailureKind | None] = Field(default_factory=list)  # Batch's retries


@dataclass(frozen=True)
class AttemptOutcome:
    """How one of a Batch job's attempts ended, in Batch's words."""

    status_reason: str | None
    container_reason: str | None
    exit_code: int | None


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
    memory: int | None = None  # MiB, from the container's resourceRequirements (or memory)
    attempt_outcomes: tuple[AttemptOutcome, ...] = ()
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


class PollOptions(TypedDict, total=False):
    """``submit_job``'s ``poll=``: any of :class:`PollPolicy`'s fields, over the settings'
    defaults (``POLLER_POLL_*``)."""

    initial_delay: float
    max_delay: float
    factor: float
    jitter: float
    max_checks: int
    max_wait: float
    terminate_on_give_up: bool
    max_runnable: float | None
    align: bool


class ResubmitOptions(TypedDict, total=False):
    """``submit_job``'s ``resubmit=``: a :class:`ResubmitPolicy` as a mapping (``on`` is
    required)."""

    on: Sequence[FailureKind | FailureKindName]
    max: int
    queue: str | None
    memory_factor: float


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
    status: TerminalStatusName  # a terminal JobStatus's value
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
    failure_kind: FailureKindName | None  # a FailureKind's value; None for SUCCEEDED
    submissions: list[dict[str, Any]]  # each Batch job submitted (Submission), the last is job_id


class BatchState(BaseModel):
    """Batch's view of the job's current Batch job, as its last observation showed it."""

    exit_code: int | None = None
    container_reason: str | None = None
    attempts: int = 0
    log_stream_name: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    array_status_summary: dict[str, int] | None = None
    # The kind of each ended attempt of the current Batch job (None: it succeeded)
    attempt_kinds: list[FailureKind | None] = Field(default_factory=list)


class Schedule(BaseModel):
    """When the job is looked at next, and what the looks so far have noted."""

    checks: int = 0  # checks applied; the next check message carries this number (its fence)
    next_check_at: datetime | None = None
    # No check message waits for next_check_at: Batch events carry the job, and the reconciler
    # sends its check when it is due (polling's safety net without a countdown held per job).
    awaits_events: bool = False
    missing_since: datetime | None = None  # Batch has not returned the job since then
    stuck_notified: bool = False  # job_stuck was sent
    waiting_reason: str | None = None  # an AWS error about poller's configuration, while it lasts
    waiting_since: datetime | None = None


class SubmissionState(BaseModel):
    """The SubmitJob call in progress or to come: its turn, its lease, its failures, and
    whether the job is being resubmitted (a Batch job of it ended in a kind that resubmits)."""

    turn_at: datetime | None = None  # its SubmitJob's turn in the fleet's call budget
    started_at: datetime | None = None  # an attempt took the lease then (kept after the call)
    lease_until: datetime | None = None
    failures: int = 0  # transient AWS errors on SubmitJob in a row (then REJECTED)
    resubmitting: bool = False  # between a Batch job's end that resubmits and the new SubmitJob


class CeleryState(BaseModel):
    """What ties the job to Celery: its task's canvas, a revocation, a cancel, its result."""

    canvas: dict[str, Any] | None = None
    cancel_reason: str | None = None
    revoked: bool = False  # its Celery task was revoked: the job is cancelled, its result REVOKED
    resolved: bool = False  # the job's Celery result was produced (exactly once)


_PARTS: dict[str, tuple[type[BaseModel], dict[str, str]]] = {
    "batch": (BatchState, {name: name for name in BatchState.model_fields}),
    "schedule": (Schedule, {name: name for name in Schedule.model_fields}),
    "submission": (
        SubmissionState,
        {f"submit_{name}": name for name in ("turn_at", "started_at", "lease_until", "failures")}
        | {"resubmitting": "resubmitting"},
    ),
    "celery": (CeleryState, {name: name for name in CeleryState.model_fields}),
}
"""Each part of a record, and its fields by their names in the stored (flat) JSON."""


class JobRecord(BaseModel):
    """Everything poller knows about one tracked job; stored as JSON in Redis.

    The job itself (its request, target, status and outcome) is at the top; the rest is in
    parts by concern: ``batch`` (Batch's view of its current Batch job), ``schedule`` (its
    checks), ``submission`` (the SubmitJob call and a resubmission under way) and ``celery``
    (its task's canvas, revocation and result). Stored, a record is one flat JSON object
    (the parts' fields among the job's, ``submit_``-prefixed for the submission's), the shape
    every release reads and writes; built from keywords, the flat names work too.
    """

    tracking_id: str
    job_name: str
    job_queue: str
    job_definition: str
    spec: dict[str, Any] = Field(default_factory=dict)
    poll: PollPolicy
    resubmit: ResubmitPolicy | None = None
    idempotency_key: str | None = None
    # The job's AWS target: the profile it named, the region it runs in (the override until it
    # is submitted, then the one it was submitted to), the account (from its ARN)
    aws_profile: str | None = None
    aws_region: str | None = None
    aws_account: str | None = None
    status: JobStatus = JobStatus.QUEUED
    status_reason: str | None = None  # Batch's statusReason, or why poller ended the job
    job_id: str | None = None  # its current Batch job (None before SubmitJob answered)
    failure_kind: FailureKind | None = None  # set when it ends other than SUCCEEDED
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    history: list[Transition] = Field(default_factory=list)
    # Every Batch job submitted for it, in order; the last is job_id's (or, while it is being
    # resubmitted, the one that ended)
    submissions: list[Submission] = Field(default_factory=list)
    batch: BatchState = Field(default_factory=BatchState)
    schedule: Schedule = Field(default_factory=Schedule)
    submission: SubmissionState = Field(default_factory=SubmissionState)
    celery: CeleryState = Field(default_factory=CeleryState)
    version: int = 0

    @model_validator(mode="before")
    @classmethod
    def _parts_from_flat(cls, data: Any) -> Any:
        """Gather the parts' fields from the flat shape (stored JSON, keywords)."""
        if not isinstance(data, dict):
            return data
        if "submission" in data and _FLAT_NAMES.isdisjoint(data):
            return data  # in parts already
        data = dict(data)
        for part, (_, names) in _PARTS.items():
            fields = dict(data.get(part) or {})
            fields.update({name: data.pop(flat) for flat, name in names.items() if flat in data})
            data[part] = fields
        # A record stored before the state was explicit implied it: no current Batch job, an
        # earlier one, and not ended
        data["submission"].setdefault(
            "resubmitting",
            data.get("job_id") is None
            and bool(data.get("submissions"))
            and str(getattr(data.get("status"), "value", data.get("status")))
            not in JobStatus.TERMINAL,
        )
        return data

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The stored shape: the parts' fields among the job's."""
        dumped: dict[str, Any] = handler(self)
        for part in _SAME_NAMES:
            dumped.update(dumped.pop(part, None) or {})
        submission = dumped.pop("submission", None) or {}
        dumped.update(
            {flat: submission[name] for flat, name in _SUBMISSION_NAMES if name in submission}
        )
        return dumped

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """pydantic's copy, refusing a field the record does not have (a part's field among
        them: use :meth:`with_parts`), which pydantic would set silently."""
        unknown = set(update or ()) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"JobRecord has no field {', '.join(sorted(unknown))}")
        return super().model_copy(update=update, deep=deep)

    def with_parts(self, **changes: dict[str, Any]) -> JobRecord:
        """A copy with fields of its parts changed: ``with_parts(schedule={"checks": 2})``; the
        parts named are copies, so the copy never changes this record."""
        update = {
            part: getattr(self, part).model_copy(update=fields) for part, fields in changes.items()
        }
        return self.model_copy(update=update)

    def result(self) -> JobResult:
        """This job's public result fields (what ``.get()`` returns once it has ended)."""
        stored = self.model_dump(mode="json")
        return cast(JobResult, {name: stored[name] for name in JobResult.__annotations__})

    @property
    def is_terminal(self) -> bool:
        """True once the job has reached a status it never leaves."""
        return self.status.is_terminal

    @property
    def resubmitting(self) -> bool:
        """True between a Batch job's end that resubmits and the new job's SubmitJob."""
        return self.submission.resubmitting and not self.is_terminal

    @property
    def target_key(self) -> str:
        """Its AWS target as a key (:func:`target_key`)."""
        return target_key(self.aws_profile, self.aws_region)

    def describe_failure(self) -> str:
        """One line naming the Batch job id, statusReason, exit code and container reason."""
        parts = [f"Batch job {self.job_id or '(not submitted)'} ended {self.status.value}"]
        if self.status_reason:
            parts.append(f"reason: {self.status_reason}")
        if self.batch.exit_code is not None:
            parts.append(f"exit code {self.batch.exit_code}")
        if self.batch.container_reason:
            parts.append(f"container: {self.batch.container_reason}")
        if self.failure_kind is not None:
            parts.append(f"kind: {self.failure_kind.value}")
        return "; ".join(parts)


_FLAT_NAMES = frozenset(flat for _, names in _PARTS.values() for flat in names)
_SAME_NAMES = ("batch", "schedule", "celery")  # parts whose fields are stored under their names
_SUBMISSION_NAMES = tuple(_PARTS["submission"][1].items())


def target_key(profile: str | None, region: str | None) -> str:
    """An AWS target as a key: ``""`` for the default session's region unnamed,
    ``<profile>@<region>`` otherwise. Jobs with one key are described with one client."""
    if profile is None and region is None:
        return ""
    return f"{profile or ''}@{region or ''}"


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (records never hold naive datetimes)."""
    return datetime.now(UTC)


def validate_poll(
    overrides: Any, defaults: PollPolicy, max_delay_limit: tuple[float, str]
) -> PollPolicy:
    """Merge a job's ``poll`` overrides into the defaults; InvalidJobSpec names a bad field.
    ``max_delay_limit``: the broker's longest countdown, and the rule that sets it."""
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidJobSpec("invalid job spec: poll: must be a mapping", field="poll")
    try:
        policy = PollPolicy(**{**defaults.model_dump(), **(overrides or {})})
    except ValidationError as err:
        raise invalid(err, known=PollPolicy.model_fields, within="poll") from None
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


def validate_resubmit(value: Any, default: ResubmitPolicy | None) -> ResubmitPolicy | None:
    """A job's ``resubmit`` (a mapping, None for the default); InvalidJobSpec names a bad field."""
    if value is None:
        return default
    if not isinstance(value, dict):
        raise InvalidJobSpec("invalid job spec: resubmit: must be a mapping", field="resubmit")
    try:
        return ResubmitPolicy(**value)
    except ValidationError as err:
        raise invalid(err, known=ResubmitPolicy.model_fields, within="resubmit") from None
