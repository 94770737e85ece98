"""AWS Batch's own failures on demand, driven by job parameters, for both local runtimes.

A job asks for a failure with SubmitJob ``parameters`` (which also fill ``Ref::`` placeholders:
a command that does not name them never sees them):

- ``sim_failure``, one of:

  - ``host_terminated``: the attempt reaches RUNNING and, after half its running time, loses its
    host: statusReason ``Host EC2 (instance i-...) terminated.``, no exit code. Only when the
    job's queue is backed by a SPOT compute environment (``computeResources.type == "SPOT"``,
    as `aws_batch_emulator.resources.SPOT_JOB_QUEUE`'s); elsewhere the job runs normally.
  - ``fargate_spot``: the same, with statusReason ``Your Spot Task was interrupted.``. It happens
    on whatever queue the job is in: the local compute environments are EC2 or SPOT ones, none
    is FARGATE_SPOT, so the emulator does not ask for one.
  - ``image_pull``: the attempt goes RUNNABLE -> STARTING -> FAILED and never reaches RUNNING (no
    startedAt, no exit code; the process runtime spawns nothing): statusReason and container
    reason ``CannotPullContainerError: ... docker.io/<image>: not found``.
  - ``stuck``: the job stays RUNNABLE with the MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT
    statusReason, for good, or for ``sim_stuck_seconds`` seconds, after which the reason clears
    and the job goes on (AWS shows it while a compute environment scales up). Only the job's
    first time in RUNNABLE is stuck.

- ``sim_memory_needed`` (MiB): above the job's memory (containerOverrides' MEMORY requirement or
  ``memory``, else the definition's), the attempt reaches RUNNING and is killed after half its
  running time: exit code 137, container reason ``OutOfMemoryError: Container killed due to
  memory usage``, statusReason ``Essential container in task exited``.
- ``sim_failing_attempts`` (default: every attempt): only the first N attempts fail so, later
  ones run normally, so that a retryStrategy can retry into a success. Every failure here is
  retryable, as on AWS, and matched by evaluateOnExit rules against the strings above.

"Running time" is ``sim_seconds`` in the simulated runtime; in the process runtime it is the
``sim_seconds`` parameter if given, else ``seconds`` (poller-sleep's), else ``--sim-seconds``.
A command that ends before its interruption ends as it did.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moto.batch.models import JobQueue

from aws_batch_emulator import resources
from aws_batch_emulator.containers import resource_requirements
from aws_batch_emulator.errors import ClientException
from aws_batch_emulator.jobs import (
    ESSENTIAL_CONTAINER_EXITED,
    KILLED_EXIT_CODE,
    AttemptOutcome,
    LocalJob,
)

SIM_FAILURE_PARAMETER = "sim_failure"
"""Job parameter: which AWS failure the job meets (one of `FAILURES`)."""
SIM_FAILING_ATTEMPTS_PARAMETER = "sim_failing_attempts"
"""Job parameter: how many attempts, from the first, fail (int >= 0; default every one)."""
SIM_STUCK_SECONDS_PARAMETER = "sim_stuck_seconds"
"""Job parameter: how long a ``stuck`` job stays stuck in RUNNABLE (seconds; default forever)."""
SIM_MEMORY_NEEDED_PARAMETER = "sim_memory_needed"
"""Job parameter: MiB the container uses; above the job's memory, the attempt runs out of it."""

HOST_TERMINATED = "host_terminated"
FARGATE_SPOT = "fargate_spot"
IMAGE_PULL = "image_pull"
STUCK = "stuck"
FAILURES = (HOST_TERMINATED, FARGATE_SPOT, IMAGE_PULL, STUCK)
"""Values of ``sim_failure``."""

SPOT = "SPOT"
"""computeResources.type of a Spot compute environment (the only kind whose host is lost)."""
SPOT_TASK_INTERRUPTED = "Your Spot Task was interrupted."
"""statusReason of an attempt whose Fargate Spot task was reclaimed."""
OUT_OF_MEMORY = "OutOfMemoryError: Container killed due to memory usage"
"""container.reason of an attempt killed for using more memory than it was given."""
MISCONFIGURATION = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU)"
    " is higher than that can be met by the CE(s) attached to the job queue."
)
"""statusReason of a RUNNABLE job no compute environment of its queue can place (yet)."""


def host_terminated(instance_id: str) -> str:
    """statusReason of an attempt whose EC2 host (a Spot instance) was terminated."""
    return f"Host EC2 (instance {instance_id}) terminated."


def cannot_pull(image: str) -> str:
    """statusReason and container.reason of an attempt whose image could not be pulled."""
    return (
        "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
        f"failed to resolve ref docker.io/{image}: not found"
    )


@dataclass(frozen=True)
class FailureParameters:
    """The failure parameters of a job, checked."""

    failure: str | None = None
    failing_attempts: int | None = None
    stuck_seconds: float | None = None
    memory_needed: float | None = None


def _number(parameters: Mapping[str, str], name: str) -> float | None:
    raw = parameters.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ClientException(f"parameter {name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ClientException(f"parameter {name} must be >= 0, got {raw!r}")
    return value


def failure_parameters(parameters: Mapping[str, str]) -> FailureParameters:
    """Read the failure parameters (see the module doc); ClientException if one is malformed."""
    failure = parameters.get(SIM_FAILURE_PARAMETER)
    if failure is not None and failure not in FAILURES:
        raise ClientException(
            f"parameter {SIM_FAILURE_PARAMETER} must be one of {' | '.join(FAILURES)}, "
            f"got {failure!r}"
        )
    attempts = _number(parameters, SIM_FAILING_ATTEMPTS_PARAMETER)
    if attempts is not None and not attempts.is_integer():
        raise ClientException(
            f"parameter {SIM_FAILING_ATTEMPTS_PARAMETER} must be an integer, "
            f"got {parameters[SIM_FAILING_ATTEMPTS_PARAMETER]!r}"
        )
    return FailureParameters(
        failure=failure,
        failing_attempts=None if attempts is None else int(attempts),
        stuck_seconds=_number(parameters, SIM_STUCK_SECONDS_PARAMETER),
        memory_needed=_number(parameters, SIM_MEMORY_NEEDED_PARAMETER),
    )


def expected_run_seconds(parameters: Mapping[str, str], default: float) -> float:
    """A process job's running time: ``sim_seconds``, else ``seconds``, else `default`."""
    for name in ("sim_seconds", "seconds"):
        try:
            value = float(parameters[name])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return default


def runs_on_spot(queue: JobQueue) -> bool:
    """Is the queue backed by a SPOT compute environment?"""
    return any(
        (getattr(environment, "compute_resources", None) or {}).get("type") == SPOT
        for environment in queue.environments
    )


def compute_environment_name(queue: JobQueue) -> str:
    """Name of the queue's first compute environment (``AWS_BATCH_CE_NAME``)."""
    first = queue.environments[0] if queue.environments else None
    return str(getattr(first, "name", "")) or resources.COMPUTE_ENVIRONMENT


def job_memory(definition: Mapping[str, Any], overrides: Mapping[str, Any]) -> float | None:
    """The job's memory in MiB: overrides first, resourceRequirements before ``memory``."""
    for requirement in resource_requirements(definition, overrides):
        if requirement["type"] == "MEMORY":
            try:
                return float(requirement["value"])
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Injected:
    """How an attempt fails: its outcome, and when."""

    outcome: AttemptOutcome
    after: float | None
    """Seconds of RUNNING before the attempt is stopped; None: it never reaches RUNNING."""


@dataclass(frozen=True)
class FailurePlan:
    """The failures one job meets, attempt by attempt."""

    failure: str | None
    """``sim_failure`` as it applies to the job (None for a host loss off a Spot queue)."""
    failing_attempts: int | None
    stuck_seconds: float | None
    out_of_memory: bool
    run_seconds: float
    """The attempt's running time: interruptions come after half of it."""
    instance_id: str
    image: str

    @classmethod
    def of(cls, job: LocalJob, run_seconds: float) -> FailurePlan:
        """The plan of a job from its parameters, queue, definition and overrides."""
        read = failure_parameters(job.parameters)
        failure = read.failure
        if failure == HOST_TERMINATED and not runs_on_spot(job.job_queue):
            failure = None
        definition = job.job_definition.container_properties or {}
        memory = job_memory(definition, job.container_overrides or {})
        needed = read.memory_needed
        digest = hashlib.sha256(job.job_id.encode()).hexdigest()
        return cls(
            failure=failure,
            failing_attempts=read.failing_attempts,
            stuck_seconds=read.stuck_seconds,
            out_of_memory=needed is not None and memory is not None and needed > memory,
            run_seconds=run_seconds,
            instance_id=f"i-{digest[:17]}",
            image=str(definition.get("image", "")),
        )

    def _fails(self, number: int) -> bool:
        return self.failing_attempts is None or number <= self.failing_attempts

    def stuck_for(self, number: int) -> float:
        """Seconds attempt `number` stays stuck in RUNNABLE first: 0, some, or math.inf."""
        if self.failure != STUCK or number != 1:
            return 0.0
        return math.inf if self.stuck_seconds is None else self.stuck_seconds

    def injected(self, number: int) -> Injected | None:
        """How attempt `number` fails; None when it runs as it would."""
        if not self._fails(number):
            return None
        half = self.run_seconds / 2
        if self.failure == IMAGE_PULL:
            reason = cannot_pull(self.image)
            return Injected(AttemptOutcome(None, reason, reason), None)
        if self.failure == HOST_TERMINATED:
            return Injected(AttemptOutcome(None, host_terminated(self.instance_id)), half)
        if self.failure == FARGATE_SPOT:
            return Injected(AttemptOutcome(None, SPOT_TASK_INTERRUPTED), half)
        if self.out_of_memory:
            outcome = AttemptOutcome(KILLED_EXIT_CODE, ESSENTIAL_CONTAINER_EXITED, OUT_OF_MEMORY)
            return Injected(outcome, half)
        return None
