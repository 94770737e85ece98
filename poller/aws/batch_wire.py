"""AWS Batch's job detail and its state-change event, parsed strictly: untrusted input.

Both come from outside poller: a DescribeJobs item from AWS (or an endpoint posing as it), an
event body from an SQS queue that other accounts may be allowed to write to. Each is parsed into
a typed model, strict about the fields poller reads (types, AWS's seven job statuses, timestamps
a datetime can hold) and tolerant of the rest: AWS's events page warns that new properties may
appear. Anything that does not fit raises :class:`MalformedInput`, one exception whatever went
wrong (bad JSON, nesting too deep, a wrong type, an overflowing number), so a caller sets that
one item aside and goes on with the others.

The shape is AWS's "Batch Job State Change" event (``source`` ``aws.batch``, ``detail`` being
DescribeJobs' job detail), as on AWS's "Job state change events" page; its example is a test
fixture (``tests/fixtures/batch_state_change_event.json``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from poller.models import REGION_RE, AttemptOutcome, BatchJobView, JobStatus

SOURCE = "aws.batch"
DETAIL_TYPE = "Batch Job State Change"
# EventBridge's (and SQS's) largest message: anything bigger is not AWS's
MAX_EVENT_BYTES = 256 * 1024
MAX_MILLIS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a datetime holds
ACCOUNT_PATTERN = r"^\d{12}$"  # anchored: pydantic's patterns match anywhere otherwise

BatchStatus = Literal[
    "SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"
]  # AWS Batch's own statuses: nothing else is a job's status on the wire
Millis = Annotated[int, Field(strict=True, ge=0, le=MAX_MILLIS)]
Text = Annotated[str, StringConstraints(strict=True, max_length=8192)]
Id = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]


class MalformedInput(ValueError):
    """A job detail or event that is not what AWS sends (the message says what is wrong)."""


class _Lenient(BaseModel):
    """Unknown members are ignored (AWS adds properties); known ones are type-checked."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ResourceRequirement(_Lenient):
    type: Text
    value: Text


class ContainerDetail(_Lenient):
    exit_code: Annotated[int, Field(strict=True)] | None = Field(None, alias="exitCode")
    reason: Text | None = None
    log_stream_name: Text | None = Field(None, alias="logStreamName")
    memory: Annotated[int, Field(strict=True)] | None = None  # deprecated by AWS, still shown
    resource_requirements: list[ResourceRequirement] = Field(
        default_factory=list, alias="resourceRequirements", max_length=10
    )

    @property
    def memory_mib(self) -> int | None:
        """The container's memory: its MEMORY requirement (MiB), else ``memory``."""
        for requirement in self.resource_requirements:
            if requirement.type == "MEMORY" and requirement.value.isdigit():
                return int(requirement.value)
        return self.memory


class AttemptDetail(_Lenient):
    container: ContainerDetail | None = None
    status_reason: Text | None = Field(None, alias="statusReason")
    stopped_at: Millis | None = Field(None, alias="stoppedAt")

    def outcome(self) -> AttemptOutcome:
        """How the attempt ended, in Batch's words."""
        container = self.container or ContainerDetail()
        return AttemptOutcome(self.status_reason, container.reason, container.exit_code)


class ArrayProperties(_Lenient):
    status_summary: dict[Text, Annotated[int, Field(strict=True, ge=0)]] | None = Field(
        None, alias="statusSummary"
    )


class JobDetail(_Lenient):
    """The members of DescribeJobs' job detail poller reads."""

    job_id: Id = Field(alias="jobId")
    status: BatchStatus
    status_reason: Text | None = Field(None, alias="statusReason")
    container: ContainerDetail | None = None
    attempts: list[AttemptDetail] = Field(default_factory=list, max_length=100)
    created_at: Millis | None = Field(None, alias="createdAt")
    started_at: Millis | None = Field(None, alias="startedAt")
    stopped_at: Millis | None = Field(None, alias="stoppedAt")
    array_properties: ArrayProperties | None = Field(None, alias="arrayProperties")
    tags: dict[Text, Text] | None = None

    def view(self) -> BatchJobView:
        """The detail in poller's terms."""
        last = (self.attempts[-1].container if self.attempts else None) or ContainerDetail()
        container = self.container or ContainerDetail()
        exit_code = container.exit_code if container.exit_code is not None else last.exit_code
        summary = self.array_properties.status_summary if self.array_properties else None
        return BatchJobView(
            job_id=self.job_id,
            status=JobStatus(self.status),
            status_reason=self.status_reason,
            exit_code=exit_code,
            container_reason=last.reason or container.reason,
            attempts=len(self.attempts),
            log_stream_name=container.log_stream_name or last.log_stream_name,
            created_at=_from_millis(self.created_at),
            started_at=_from_millis(self.started_at),
            stopped_at=_from_millis(self.stopped_at),
            array_status_summary=dict(summary) if summary else None,
            memory=container.memory_mib,
            attempt_outcomes=tuple(a.outcome() for a in self.attempts if a.stopped_at is not None),
        )


class StateChangeEvent(_Lenient):
    """A "Batch Job State Change" event: where it comes from, and the job's detail."""

    source: Literal["aws.batch"]
    detail_type: Literal["Batch Job State Change"] = Field(alias="detail-type")
    account: Annotated[str, StringConstraints(strict=True, pattern=ACCOUNT_PATTERN)]
    region: Annotated[str, StringConstraints(strict=True, max_length=64)]
    detail: JobDetail

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION_RE.fullmatch(value):  # in full: a trailing newline is not a region
            raise ValueError("not an AWS region name")
        return value


def job_view(item: object) -> BatchJobView:
    """One DescribeJobs item as a view; MalformedInput if it is not a job detail."""
    try:
        return JobDetail.model_validate(item).view()
    except (ValidationError, ValueError, TypeError, OverflowError, RecursionError) as err:
        raise MalformedInput(_first_error(err)) from None


def parse_event(body: str | bytes) -> StateChangeEvent:
    """An SQS message body as a state-change event; MalformedInput if it is not one.

    pydantic parses the JSON itself (in Rust, with a nesting limit): no Python object is built
    for the members poller does not read.
    """
    if len(body) > MAX_EVENT_BYTES:
        raise MalformedInput(f"larger than an event can be ({len(body)} bytes)")
    try:
        return StateChangeEvent.model_validate_json(body)
    except (ValidationError, ValueError, TypeError, OverflowError, RecursionError) as err:
        raise MalformedInput(_first_error(err)) from None


def _first_error(err: Exception) -> str:
    """The first problem, with where it is (``detail.container.exitCode: ...``)."""
    if isinstance(err, ValidationError):
        first = err.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "event"
        return f"{where}: {first['msg']}"
    return f"{type(err).__name__}: {err}"


def _from_millis(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=UTC) if value else None
