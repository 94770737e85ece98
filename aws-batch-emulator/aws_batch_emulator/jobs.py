"""Job models of the local Batch endpoint: moto's `Job` with a lifecycle driven by us.

moto's own `Job` either runs Docker or (``batch_simple``) finishes at once. `LocalJob` keeps
moto's construction, ARNs and tags, and replaces the status, timestamps, attempts and describe
output with values driven by a local runtime (see `aws_batch_emulator.process` and
`aws_batch_emulator.simulated`). `aws_batch_emulator.array_jobs` derives an array job's state from its children.

Every method that reads or changes job state expects the compute environment's lock
(`LocalCompute.lock`) to be held.

Each status a job reaches after SUBMITTED is reported (`LocalJob.announce`) to the compute
environment's change listener, when there is one (a server publishing events), with the job's
DescribeJobs item of that moment. An array child's reports also update its parent's status.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moto.batch.models import BatchBackend, Job, JobDefinition, JobQueue

from aws_batch_emulator.changes import JobChange
from aws_batch_emulator.compute import LocalCompute
from aws_batch_emulator.containers import container_detail

SUBMITTED = "SUBMITTED"
PENDING = "PENDING"
RUNNABLE = "RUNNABLE"
STARTING = "STARTING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
STATUSES = (SUBMITTED, PENDING, RUNNABLE, STARTING, RUNNING, SUCCEEDED, FAILED)
"""Every Batch job status, in lifecycle order."""
TERMINAL = frozenset({SUCCEEDED, FAILED})
"""Statuses a job never leaves."""
CANCELLABLE = frozenset({SUBMITTED, PENDING, RUNNABLE})
"""Statuses in which CancelJob fails a job (it is a no-op later, as on AWS)."""

ESSENTIAL_CONTAINER_EXITED = "Essential container in task exited"
"""statusReason AWS gives a job whose container exited by itself, whatever the exit code."""
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
"""statusReason of an attempt killed by timeout.attemptDurationSeconds."""
DEPENDENCY_FAILED = "Dependent Job failed"
"""statusReason of a job failed because one of its dependencies failed."""
KILLED_EXIT_CODE = 137
"""Exit code a container reports when SIGKILLed (128 + 9)."""

_TASK_ID_NAMESPACE = uuid.UUID("5f0c6bd2-8f43-4c55-9a57-6b1f3c1e2a10")
"""Namespace of the ECS task ids made up for array children (any fixed UUID)."""


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt ended."""

    exit_code: int | None
    """Container exit code (None if the container never started)."""
    status_reason: str
    """The attempt's statusReason."""
    container_reason: str | None = None
    """container.reason: why the container was stopped by Batch (timeout, TerminateJob)."""
    retryable: bool = True
    """False when AWS never retries this kind of end (timeout, TerminateJob)."""

    @property
    def succeeded(self) -> bool:
        """True for a clean exit 0 that nobody killed."""
        return self.exit_code == 0 and self.container_reason is None


def epoch_ms(seconds: float) -> int:
    """Epoch seconds -> the epoch milliseconds Batch reports."""
    return int(seconds * 1000)


def substitute_parameters(command: Sequence[str], parameters: Mapping[str, str]) -> list[str]:
    """Replace every ``Ref::<name>`` whose name is a parameter, anywhere in each argument.

    moto only replaces the first placeholder of an argument, which breaks
    ``sh -c "sleep Ref::seconds; exit Ref::exit_code"``; unknown names stay as they are (AWS).
    """
    if not parameters:
        return list(command)
    # Longest names first, so Ref::ab is not read as Ref::a followed by "b".
    names = "|".join(re.escape(name) for name in sorted(parameters, key=len, reverse=True))
    pattern = re.compile(f"Ref::({names})")
    return [pattern.sub(lambda match: parameters[match.group(1)], part) for part in command]


def _rule_matches(rule: Mapping[str, Any], outcome: AttemptOutcome) -> bool:
    """Does an evaluateOnExit rule match an attempt? (AWS patterns: glob with a trailing *)."""
    checks = (
        ("onExitCode", "" if outcome.exit_code is None else str(outcome.exit_code)),
        ("onReason", outcome.container_reason or ""),
        ("onStatusReason", outcome.status_reason),
    )
    return all(fnmatch.fnmatchcase(value, str(rule[key])) for key, value in checks if key in rule)


class LocalJob(Job):
    """A moto Job whose status, timestamps and attempts come from the local runtime."""

    def __init__(
        self,
        *,
        backend: BatchBackend,
        compute: LocalCompute,
        name: str,
        job_def: JobDefinition,
        queue: JobQueue,
        parameters: dict[str, str] | None = None,
        container_overrides: dict[str, Any] | None = None,
        eks_properties_override: dict[str, Any] | None = None,
        depends_on: list[dict[str, str]] | None = None,
        dependencies: Sequence[LocalJob] = (),
        timeout: dict[str, int] | None = None,
        retry_strategy: dict[str, Any] | None = None,
        array_properties: dict[str, Any] | None = None,
        provided_job_id: str | None = None,
        tags: dict[str, str] | None = None,
        propagate_tags: bool | None = None,
        scheduling_priority: int | None = None,
        share_identifier: str | None = None,
    ) -> None:
        super().__init__(
            name,
            job_def,
            queue,
            backend,
            log_backend=backend.logs_backend,
            container_overrides=container_overrides,
            eks_properties_override=eks_properties_override,
            depends_on=depends_on,
            parameters=parameters,
            all_jobs=backend._jobs,
            timeout=timeout,
            array_properties=array_properties or {},
            provided_job_id=provided_job_id,
            tags=tags,
        )
        self.compute = compute
        self._status: str = SUBMITTED
        # The last status reported to the compute's listener: AWS sends no event for SUBMITTED.
        self._announced = SUBMITTED
        self.array_parent: LocalJob | None = None
        """The parent of an array child (set by `aws_batch_emulator.array_jobs.ArrayParentJob.adopt`)."""
        self.created_s = time.time()
        self.started_s: float | None = None
        self.stopped_s: float | None = None
        self.container_reason: str | None = None
        self.dependencies = list(dependencies)
        self.retry_strategy: dict[str, Any] = dict(retry_strategy or job_def.retry_strategy or {})
        index = self.array_properties.get("index")
        self.array_index: int | None = index if isinstance(index, int) else None
        # SubmitJob's propagateTags overrides the definition's; None: set by neither.
        self.propagate_tags = job_def.propagate_tags if propagate_tags is None else propagate_tags
        self.scheduling_priority = scheduling_priority
        self.share_identifier = share_identifier
        # AWS names the log stream <definition>/default/<ECS task id>. moto uses the job id, but an
        # array child's id holds a ':', which CloudWatch Logs forbids in stream names: children
        # get a hex task id of their own (stable for a given child id).
        self.task_id = (
            self.job_id
            if self.array_index is None
            else uuid.uuid5(_TASK_ID_NAMESPACE, self.job_id).hex
        )
        self._stream_name = f"{job_def.name}/default/{self.task_id}"

    # moto's ManagedState computes status on read; ours is set by the runtime (or by refresh()).
    @property
    def status(self) -> str:
        """Current status (call `refresh` first for runtimes that compute it lazily)."""
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value

    @property
    def is_final(self) -> bool:
        """True once the job is SUCCEEDED or FAILED."""
        return self.job_stopped

    @property
    def max_attempts(self) -> int:
        """retryStrategy.attempts, within AWS's 1..10."""
        try:
            attempts = int(self.retry_strategy.get("attempts", 1))
        except (TypeError, ValueError):
            attempts = 1
        return min(max(attempts, 1), 10)

    @property
    def stage_seconds(self) -> float:
        """How long each pre-RUNNING stage lasts."""
        return self.compute.settings.stage_seconds

    def launch(self) -> None:
        """Start the job's lifecycle after it is registered with the backend."""

    def refresh(self) -> None:
        """Bring lazily computed state up to date (no-op for jobs driven by a thread)."""

    def shutdown(self) -> None:
        """Release OS resources (processes) because the server stops."""

    def announce(self, at: float | None = None) -> None:
        """Report the status to the compute's listener if it changed since the last report.

        Call it once the job's state is whole (status, attempts, timestamps): the report carries
        the DescribeJobs item of this moment. `at` is when the status was reached (default now).
        """
        listener = self.compute.listener
        if listener is None or self._status == self._announced:
            return
        self._announced = self._status
        compute = self.compute
        listener.job_changed(
            JobChange(
                account_id=compute.account_id,
                region=compute.region_name,
                job_arn=self.arn,
                status=self._status,
                at=time.time() if at is None else at,
                # Serialized now, under the lock: the job changes on after this.
                description=json.dumps(self.describe_as_is()),
            )
        )
        if self.array_parent is not None:
            self.array_parent.child_changed(self)

    def child_changed(self, child: LocalJob) -> None:
        """One of this job's array children reported a status change (array parents only)."""

    def stage_status(self, now: float) -> str:
        """SUBMITTED for the first stage after submission, PENDING afterwards."""
        return SUBMITTED if now < self.created_s + self.stage_seconds else PENDING

    def dependency_state(self) -> tuple[str, float]:
        """("failed" | "waiting" | "ready", time of the latest relevant dependency end)."""
        verdict, latest = "ready", 0.0
        for dependency in self.dependencies:
            dependency.refresh()
            if dependency.status == FAILED:
                return "failed", dependency.stopped_s or time.time()
            if dependency.status != SUCCEEDED:
                verdict = "waiting"
            latest = max(latest, dependency.stopped_s or 0.0)
        return verdict, latest

    def should_retry(self, attempt_number: int, outcome: AttemptOutcome) -> bool:
        """Apply retryStrategy: attempts left, then the first matching evaluateOnExit rule."""
        if outcome.succeeded or not outcome.retryable or attempt_number >= self.max_attempts:
            return False
        for rule in self.retry_strategy.get("evaluateOnExit") or []:
            if isinstance(rule, Mapping) and _rule_matches(rule, outcome):
                return str(rule.get("action", "")).upper() == "RETRY"
        return True

    def cancel(self, reason: str) -> None:
        """CancelJob: fail a job that has not reached STARTING; otherwise do nothing (AWS)."""
        self.refresh()
        if self._status in CANCELLABLE and not self.is_final:
            self.finish(FAILED, reason)

    def terminate(self, reason: str) -> None:
        """TerminateJob: fail any job that is not finished yet."""
        self.refresh()
        if not self.is_final:
            self.finish(FAILED, reason)

    def finish(
        self,
        status: str,
        reason: str | None,
        *,
        at: float | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Move to a terminal status and wake whoever waits on the backend."""
        self._status = status
        self.job_stopped = True
        self.stopped_s = time.time() if at is None else at
        self.job_stopped_reason = reason
        self.exit_code = exit_code
        self.compute.changed.notify_all()
        self.announce(self.stopped_s)

    def begin_attempt(self, started: float | None) -> dict[str, Any]:
        """Record an attempt reaching RUNNING (AWS AttemptDetail shape); ``started`` None: its
        container never started (no startedAt, no log stream: an image that cannot be pulled)."""
        self.log_stream_name = self._stream_name if started is not None else self.log_stream_name
        self.started_s, self.exit_code, self.container_reason = started, None, None
        container: dict[str, Any] = {
            "containerInstanceArn": self.compute.container_instance_arn,
            "taskArn": self.compute.task_arn(self.task_id),
            "networkInterfaces": [],
        }
        record: dict[str, Any] = {"container": container}
        if started is not None:
            container["logStreamName"] = self.log_stream_name
            record["startedAt"] = epoch_ms(started)
        self.latest_attempt = record
        self.attempts.append(record)
        return record

    def end_attempt(self, record: dict[str, Any], stopped: float, outcome: AttemptOutcome) -> None:
        """Record how an attempt ended."""
        record["stoppedAt"] = epoch_ms(stopped)
        record["statusReason"] = outcome.status_reason
        if outcome.exit_code is not None:
            record["container"]["exitCode"] = outcome.exit_code
        if outcome.container_reason is not None:
            record["container"]["reason"] = outcome.container_reason
        self.exit_code = outcome.exit_code
        self.container_reason = outcome.container_reason

    def _get_attempt_duration(self) -> int | None:
        # moto indexes timeout["attemptDurationSeconds"] blindly; `timeout: {}` is valid input.
        for source in (self.timeout, self.job_definition.timeout):
            if source and source.get("attemptDurationSeconds") is not None:
                return int(source["attemptDurationSeconds"])
        return None

    def _add_parameters_to_command(self, command: str | list[str]) -> list[str]:
        return substitute_parameters(
            [command] if isinstance(command, str) else command, self.parameters
        )

    def _get_container_property(self, p: str, default: Any) -> Any:
        # moto appends to the override's environment list on every describe; build a fresh one.
        if p == "environment":
            return [{"name": key, "value": value} for key, value in self.environment().items()]
        if p == "command":
            return self.command()
        return super()._get_container_property(p, default)

    def _container_details(self) -> dict[str, Any]:
        # moto's details lack the image, resource requirements and other definition members.
        return container_detail(
            super()._container_details(),
            self.job_definition.container_properties or {},
            self.container_overrides,
        )

    def command(self) -> list[str]:
        """Container command: override or definition command, with Ref:: parameters filled."""
        definition = self.job_definition.container_properties or {}
        command = self.container_overrides.get("command") or definition.get("command") or []
        return substitute_parameters([str(part) for part in command], self.parameters)

    def environment(self) -> dict[str, str]:
        """Container environment: definition, then containerOverrides, then AWS_BATCH_JOB_ID."""
        merged: dict[str, str] = {}
        definition = self.job_definition.container_properties or {}
        for source in (definition.get("environment"), self.container_overrides.get("environment")):
            for item in source or []:
                merged[str(item["name"])] = str(item.get("value", ""))
        merged["AWS_BATCH_JOB_ID"] = self.job_id
        return merged

    def describe_short(self) -> dict[str, Any]:
        """ListJobs summary, with our status, timestamps, container and array fields."""
        self.refresh()
        result = super().describe_short()
        self._amend(result)
        result.pop("container", None)
        if self.share_identifier is not None:
            result["shareIdentifier"] = self.share_identifier
        container = self._container_outcome(detail=False)
        if container:
            result["container"] = container
        array = self._array_properties(detail=False)
        if array:
            result["arrayProperties"] = array
        return result

    def describe(self) -> dict[str, Any]:
        """DescribeJobs detail, with our status, timestamps, attempts and array fields."""
        self.refresh()
        return self.describe_as_is()

    def describe_as_is(self) -> dict[str, Any]:
        """`describe` without bringing lazily computed state up to date first."""
        result = super().describe()
        self._amend(result)
        container = result.get("container")
        if isinstance(container, dict):
            container.update(self._container_outcome(detail=True))
        result["attempts"] = copy.deepcopy(self.attempts)
        array = self._array_properties(detail=True)
        if array:
            result["arrayProperties"] = array
        if self.retry_strategy:
            result["retryStrategy"] = self._retry_strategy_out()
        self._scheduling_fields(result)
        return result

    def _scheduling_fields(self, result: dict[str, Any]) -> None:
        """SubmitJob's propagateTags, schedulingPriorityOverride and shareIdentifier, as AWS shows
        them (recorded only: the local queue schedules first come first served)."""
        if self.propagate_tags is not None:
            result["propagateTags"] = bool(self.propagate_tags)
        if self.scheduling_priority is not None:
            result["schedulingPriority"] = self.scheduling_priority
        if self.share_identifier is not None:
            result["shareIdentifier"] = self.share_identifier

    def _amend(self, result: dict[str, Any]) -> None:
        result["status"] = self._status
        result["createdAt"] = epoch_ms(self.created_s)
        for key, value in (("startedAt", self.started_s), ("stoppedAt", self.stopped_s)):
            if value is None:
                result.pop(key, None)
            else:
                result[key] = epoch_ms(value)
        if self.job_stopped_reason:
            result["statusReason"] = self.job_stopped_reason
        else:
            result.pop("statusReason", None)

    def _container_outcome(self, *, detail: bool) -> dict[str, Any]:
        outcome: dict[str, Any] = {}
        if detail and self.log_stream_name:
            outcome["logStreamName"] = self.log_stream_name
        if self.is_final and self.exit_code is not None:
            outcome["exitCode"] = self.exit_code
        if self.is_final and self.container_reason:
            outcome["reason"] = self.container_reason
        return outcome

    def _array_properties(self, *, detail: bool) -> dict[str, Any]:
        return {} if self.array_index is None else {"index": self.array_index}

    def _retry_strategy_out(self) -> dict[str, Any]:
        strategy = copy.deepcopy(self.retry_strategy)
        for rule in strategy.get("evaluateOnExit") or []:
            if isinstance(rule, dict) and "action" in rule:
                rule["action"] = str(rule["action"]).upper()
        return strategy
