"""The lifecycle engine of the local Batch endpoint: moto's Batch backend with local jobs.

`LocalBatchBackend` is moto's `BatchBackend` whose jobs are `ProcessJob`s (``process`` runtime)
or `SimulatedJob`s (``simulated`` runtime), looked up by id rather than by scanning every job.
`BatchRuntime` holds one backend per account and region, and keeps each in moto's registry of
Batch backends, where moto's Batch handlers look it up: the operations moto answers (queues,
definitions, ...) act on the backend whose jobs the emulator runs (`aws_batch_emulator.api`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from moto.batch.models import BatchBackend, Job, JobDefinition, JobQueue, batch_backends

from aws_batch_emulator.array_jobs import ArrayParentJob
from aws_batch_emulator.changes import ChangeListener
from aws_batch_emulator.compute import LocalCompute
from aws_batch_emulator.defaults import create_default_resources
from aws_batch_emulator.errors import ClientException
from aws_batch_emulator.failures import failure_parameters
from aws_batch_emulator.jobs import RUNNING, STATUSES, LocalJob
from aws_batch_emulator.process import ProcessJob
from aws_batch_emulator.settings import RuntimeSettings
from aws_batch_emulator.simulated import SimulatedJob, simulation_parameters

logger = logging.getLogger(__name__)

MAX_DESCRIBE_JOBS = 100
"""DescribeJobs accepts at most this many job ids (as AWS)."""
ARRAY_SIZE_RANGE = (2, 10_000)
"""Allowed arrayProperties.size (as AWS)."""
SCHEDULING_PRIORITY_RANGE = (0, 9999)
"""Allowed schedulingPriorityOverride (as AWS)."""
# AWS: up to 128 letters, digits, hyphens and underscores, starting alphanumeric (moto wants 2+).
JOB_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class LocalBatchBackend(BatchBackend):
    """moto's Batch backend with locally run jobs. Callers hold `lock` around every call."""

    def __init__(
        self,
        region_name: str,
        account_id: str,
        settings: RuntimeSettings,
        listener: ChangeListener | None = None,
    ) -> None:
        super().__init__(region_name, account_id)
        self.compute = LocalCompute(settings, region_name, account_id, listener)

    @property
    def settings(self) -> RuntimeSettings:
        """Options of the runtime."""
        return self.compute.settings

    @property
    def lock(self) -> threading.RLock:
        """The lock guarding every job of this backend (`LocalCompute.lock`)."""
        return self.compute.lock

    def find_job(self, identifier: str) -> LocalJob | None:
        """Job by id or ARN, in constant time."""
        if identifier.startswith("arn:") and ":job/" in identifier:
            identifier = identifier.split(":job/", 1)[1]
        job = self._jobs.get(identifier)
        return job if isinstance(job, LocalJob) else None

    def submit_job(
        self,
        job_name: str,
        job_def_id: str,
        job_queue: str,
        array_properties: dict[str, Any],
        depends_on: list[dict[str, str]] | None = None,
        container_overrides: dict[str, Any] | None = None,
        eks_properties_override: dict[str, Any] | None = None,
        timeout: dict[str, int] | None = None,
        parameters: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        retry_strategy: dict[str, Any] | None = None,
        propagate_tags: bool | None = None,
        scheduling_priority: int | None = None,
        share_identifier: str | None = None,
    ) -> tuple[str, str, str]:
        """SubmitJob: validate as AWS does, create the job (and array children), start them."""
        job_def, queue = self._submission_targets(job_name, job_def_id, job_queue)
        size = _array_size(array_properties)
        _check_scheduling_priority(scheduling_priority)
        job_class = self._job_class()
        common: dict[str, Any] = {
            "propagate_tags": propagate_tags,
            "scheduling_priority": scheduling_priority,
            "share_identifier": share_identifier,
            "backend": self,
            "compute": self.compute,
            "name": job_name,
            "job_def": job_def,
            "queue": queue,
            "parameters": parameters,
            "container_overrides": container_overrides,
            "eks_properties_override": eks_properties_override,
            "depends_on": depends_on,
            "dependencies": self._dependencies(depends_on),
            "timeout": timeout,
            "retry_strategy": retry_strategy,
        }
        merged_parameters = {**job_def.parameters, **(parameters or {})}
        failure_parameters(merged_parameters)
        if job_class is SimulatedJob:
            simulation_parameters(merged_parameters, self.settings.sim_seconds)
        if size is None:
            job: LocalJob = job_class(**common, tags=tags)
            self._jobs[job.job_id] = job
            job.launch()
            return job_name, job.job_id, job.arn
        parent = ArrayParentJob(**common, tags=tags, array_properties={"size": size})
        self._jobs[parent.job_id] = parent
        parent.adopt(self._children(parent, job_class, common, size))
        for child in parent.children:
            child.launch()
        return job_name, parent.job_id, parent.arn

    def _submission_targets(
        self, job_name: str, job_def_id: str, job_queue: str
    ) -> tuple[JobDefinition, JobQueue]:
        if JOB_NAME_PATTERN.match(job_name) is None:
            raise ClientException(
                f"Job name {job_name!r} does not match {JOB_NAME_PATTERN.pattern}"
            )
        job_def = self.get_job_definition(job_def_id)
        if job_def is None:
            raise ClientException(f"Job definition {job_def_id} does not exist")
        if job_def.type != "container" or job_def.container_properties is None:
            raise ClientException("The local Batch endpoint runs container job definitions only")
        queue = self.get_job_queue(job_queue)
        if queue is None:
            raise ClientException(f"Job queue {job_queue} does not exist")
        return job_def, queue

    def _job_class(self) -> type[LocalJob]:
        return SimulatedJob if self.settings.runtime == "simulated" else ProcessJob

    def _dependencies(self, depends_on: list[dict[str, str]] | None) -> list[LocalJob]:
        found: list[LocalJob] = []
        for dependency in depends_on or []:
            job = self.find_job(str(dependency.get("jobId", "")))
            if job is None:
                raise ClientException(f"Dependent job {dependency.get('jobId')!r} does not exist")
            found.append(job)
        return found

    def _children(
        self, parent: ArrayParentJob, job_class: type[LocalJob], common: dict[str, Any], size: int
    ) -> list[LocalJob]:
        queue: JobQueue = common["queue"]
        mark = len(queue.jobs)
        children = [
            job_class(
                **common,
                array_properties={"index": index},
                provided_job_id=f"{parent.job_id}:{index}",
            )
            for index in range(size)
        ]
        # moto's Job adds itself to the queue; ListJobs by queue shows parents only (AWS).
        del queue.jobs[mark:]
        for child in children:
            self._jobs[child.job_id] = child
        return children

    def describe_jobs(self, jobs: list[str] | None) -> list[dict[str, Any]]:
        """DescribeJobs: look each id (or ARN) up directly; unknown ids are left out (AWS)."""
        if not jobs:
            return []
        if len(jobs) > MAX_DESCRIBE_JOBS:
            raise ClientException(
                f"jobs may contain at most {MAX_DESCRIBE_JOBS} job IDs, got {len(jobs)}"
            )
        described: list[dict[str, Any]] = []
        seen: set[str] = set()
        # One snapshot, as AWS answers: no job moves on while the others are read (a job that
        # ended mid-call let the next one run and end before it, 1 CI run in 3 under load)
        with self.lock:
            for identifier in jobs:
                job = self.find_job(identifier)
                if job is not None and job.job_id not in seen:
                    seen.add(job.job_id)
                    described.append(job.describe())
        return described

    def list_jobs(
        self,
        job_queue_name: str | None,
        array_job_id: str | None,
        job_status: str | None = None,
        filters: list[dict[str, Any]] | None = None,
    ) -> list[Job]:
        """ListJobs as AWS: RUNNING jobs unless jobStatus is given; filters ignore jobStatus."""
        if job_status is not None and job_status not in STATUSES:
            raise ClientException(f"jobStatus must be one of {' | '.join(STATUSES)}")
        keep = _filter_predicate(filters) if filters else _status_predicate(job_status or RUNNING)
        listed: list[Job] = []
        for job in self._list_candidates(job_queue_name, array_job_id):
            job.refresh()
            if keep(job):
                listed.append(job)
        return listed

    def _list_candidates(
        self, job_queue_name: str | None, array_job_id: str | None
    ) -> list[LocalJob]:
        """The jobs to list, in AWS's order: a queue's newest first, an array's by index."""
        if array_job_id:
            parent = self.find_job(array_job_id)
            return list(parent.children) if isinstance(parent, ArrayParentJob) else []
        if not job_queue_name:
            raise ClientException("jobQueue or arrayJobId must be provided")
        queue = self.get_job_queue(job_queue_name)
        if queue is None:
            raise ClientException(f"Job queue {job_queue_name} does not exist")
        # A queue holds its jobs in submission order.
        return [job for job in reversed(queue.jobs) if isinstance(job, LocalJob)]

    def cancel_job(self, job_id: str, reason: str) -> None:
        """CancelJob: fail the job if it has not reached STARTING (a no-op otherwise)."""
        job = self._job_to_stop(job_id, reason)
        if job is not None:
            job.cancel(reason)

    def terminate_job(self, job_id: str, reason: str) -> None:
        """TerminateJob: fail the job, killing its command if it runs."""
        job = self._job_to_stop(job_id, reason)
        if job is not None:
            job.terminate(reason)

    def _job_to_stop(self, job_id: str, reason: str) -> LocalJob | None:
        if not job_id:
            raise ClientException("'jobId' is a required field (cannot be an empty string)")
        if not reason:
            raise ClientException("'reason' is a required field (cannot be an empty string)")
        return self.find_job(job_id)

    def reset(self) -> None:
        """Keep everything: moto's reset (``POST /moto-api/reset``) would rebuild the backend from
        its region and account alone, without the runtime; it lives as long as the server."""

    def shutdown(self) -> None:
        """Kill every running job command and stop the timer thread."""
        with self.lock:
            for job in list(self._jobs.values()):
                if isinstance(job, LocalJob):
                    job.shutdown()
        self.compute.close()


def _array_size(array_properties: Mapping[str, Any] | None) -> int | None:
    if not array_properties or array_properties.get("size") is None:
        return None
    size = array_properties["size"]
    low, high = ARRAY_SIZE_RANGE
    if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
        raise ClientException(
            f"arrayProperties.size must be between {low} and {high}, got {size!r}"
        )
    return size


def _check_scheduling_priority(priority: int | None) -> None:
    low, high = SCHEDULING_PRIORITY_RANGE
    if priority is not None and not low <= priority <= high:
        raise ClientException(
            f"schedulingPriorityOverride must be between {low} and {high}, got {priority!r}"
        )


def _status_predicate(status: str) -> Callable[[LocalJob], bool]:
    return lambda job: job.status == status


def _glob(value: str, pattern: str) -> bool:
    """AWS ListJobs filter values match exactly or, with a trailing *, by prefix."""
    if pattern.endswith("*"):
        return value.lower().startswith(pattern[:-1].lower())
    return value.lower() == pattern.lower()


def _filter_predicate(filters: list[dict[str, Any]]) -> Callable[[LocalJob], bool]:
    """The ListJobs filter (AWS accepts one) as a predicate over jobs."""
    if len(filters) != 1:
        raise ClientException("ListJobs accepts exactly one filter")
    name, values = filters[0].get("name"), [str(v) for v in filters[0].get("values") or []]
    if not values:
        raise ClientException("the filter needs at least one value")

    def by_definition(job: LocalJob) -> bool:
        definition = job.job_definition
        names = (definition.arn, definition.name, f"{definition.name}:{definition.revision}")
        return any(_glob(candidate, value) for candidate in names for value in values)

    predicates: dict[str, Callable[[LocalJob], bool]] = {
        "JOB_NAME": lambda job: any(_glob(job.job_name, value) for value in values),
        "JOB_DEFINITION": by_definition,
        "BEFORE_CREATED_AT": lambda job: job.created_s * 1000 < _number(values[0]),
        "AFTER_CREATED_AT": lambda job: job.created_s * 1000 > _number(values[0]),
    }
    if name not in predicates:
        raise ClientException(f"filter name must be one of {', '.join(predicates)}, got {name!r}")
    return predicates[str(name)]


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ClientException(f"filter value {value!r} must be epoch milliseconds") from None


class BatchRuntime:
    """One `LocalBatchBackend` per (account, region), each with the ready-made resources.

    `listener`, if given, is told of every job status change after SUBMITTED, in every backend.
    """

    def __init__(self, settings: RuntimeSettings, listener: ChangeListener | None = None) -> None:
        self.settings = settings
        self.listener = listener
        self._backends: dict[tuple[str, str], LocalBatchBackend] = {}
        self._lock = threading.Lock()

    def backend(self, account_id: str, region_name: str) -> LocalBatchBackend:
        """The backend of an account and region, created with its resources on first use, and
        in moto's registry (so moto's Batch app must be built before: it reads its URL rules off
        the backend it finds there)."""
        key = (account_id, region_name)
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = LocalBatchBackend(region_name, account_id, self.settings, self.listener)
                with backend.lock:
                    create_default_resources(backend)
                self._backends[key] = backend
            # Checked on every call: moto's reset empties its registry. dict.get, as moto's
            # lookup would create a backend of its own there.
            registry = batch_backends[account_id]
            if registry.get(region_name) is not backend:
                registry[region_name] = backend
            return backend

    def shutdown(self) -> None:
        """Kill every running job command of every backend."""
        with self._lock:
            backends = list(self._backends.values())
        for backend in backends:
            backend.shutdown()
