"""An in-memory AWS Batch for fast tests of code that uses poller's :class:`~poller.aws.batch.Batch`.

Jobs stay in the status a test puts them in (:meth:`FakeBatch.set_status`); faults are queued per
operation (:meth:`FakeBatch.fail_next`), including the worst one, an answer lost after AWS acted
(:meth:`FakeBatch.lose_next_answer`). Calls are counted per operation, as AWS would bill them.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from poller.core.resubmission import memory_override
from poller.errors import BatchUnavailable, SubmitRejected
from poller.models import DESCRIBE_PAGE, BatchJobView, JobSpec, JobStatus, utcnow


@dataclass
class FakeJob:
    """One job the fake holds."""

    job_id: str
    spec: JobSpec
    tags: dict[str, str]
    status: JobStatus = JobStatus.SUBMITTED
    status_reason: str | None = None
    exit_code: int | None = None
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    memory: int = 512  # MiB: the job definition's, unless the container overrides ask more

    def view(self) -> BatchJobView:
        """What DescribeJobs says of it."""
        return BatchJobView(
            job_id=self.job_id,
            status=self.status,
            status_reason=self.status_reason,
            exit_code=self.exit_code,
            created_at=self.created_at,
            started_at=self.started_at,
            stopped_at=self.stopped_at,
            memory=self.memory,
        )

    def move(self, status: JobStatus, reason: str | None, exit_code: int | None) -> None:
        """Go to ``status``, stamping startedAt (RUNNING) and stoppedAt (an end) as Batch does."""
        self.status, self.status_reason, self.exit_code = status, reason, exit_code
        if status is JobStatus.RUNNING and self.started_at is None:
            self.started_at = utcnow()
        if status.is_terminal and self.stopped_at is None:
            self.stopped_at = utcnow()


class FakeBatch:
    """AWS Batch in memory: a :class:`poller.aws.batch.Batch` for tests that need no server."""

    def __init__(self, queues: Iterable[str] = ("poller-local",)) -> None:
        self.jobs: dict[str, FakeJob] = {}
        """Every job submitted, by job id (forgotten ones too)."""
        self.calls: Counter[str] = Counter()
        """Calls per operation (``SubmitJob``, ``DescribeJobs``, ``ListJobs``, ``TerminateJob``)."""
        self.queues = set(queues)
        self.account = "123456789012"
        """The account jobs go to (the local endpoint's), as a job's ARN tells BatchClient."""
        self.region = "us-east-1"
        """The region jobs go to, likewise: Batch events of these jobs come from both."""
        self.on_submit: Callable[[FakeJob], None] | None = None
        """Called with the new job inside SubmitJob, before it answers (to race it)."""
        self._faults: defaultdict[str, list[Exception]] = defaultdict(list)
        self._lost: Counter[str] = Counter()
        self._forgotten: set[str] = set()
        self._ids = itertools.count(1)

    # --- controls ---------------------------------------------------------------------------

    def set_status(
        self,
        job_id: str,
        status: JobStatus,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Move a job to ``status`` (any order: Batch's own order is not enforced here)."""
        self.jobs[job_id].move(status, reason, exit_code)

    def fail_next(self, operation: str, error: Exception, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``operation`` with ``error`` (nothing is done)."""
        self._faults[operation].extend([error] * times)

    def lose_next_answer(self, operation: str) -> None:
        """The next call of ``operation`` acts, then its answer is lost (BatchUnavailable)."""
        self._lost[operation] += 1

    def forget(self, job_id: str) -> None:
        """DescribeJobs stops returning the job (AWS forgets finished jobs after about a day)."""
        self._forgotten.add(job_id)

    # --- the Batch protocol -----------------------------------------------------------------

    def submit(self, spec: JobSpec, extra_tags: dict[str, str] | None = None) -> str:
        """SubmitJob: a new job SUBMITTED; SubmitRejected for an unknown queue."""
        self._call("SubmitJob")
        if spec.job_queue not in self.queues:
            raise SubmitRejected(f"ClientException: job queue {spec.job_queue!r} does not exist")
        job = FakeJob(
            f"fake-{next(self._ids):06d}", spec, {**(spec.tags or {}), **(extra_tags or {})}
        )
        job.memory = memory_override(spec.model_dump()) or job.memory
        self.jobs[job.job_id] = job
        if self.on_submit is not None:
            self.on_submit(job)
        self._answer("SubmitJob")
        return job.job_id

    def describe(self, job_ids: Iterable[str]) -> dict[str, BatchJobView]:
        """DescribeJobs, one call per 100 distinct ids; unknown ids are absent."""
        ids = list(dict.fromkeys(job_ids))
        views: dict[str, BatchJobView] = {}
        for start in range(0, len(ids), DESCRIBE_PAGE):
            self._call("DescribeJobs")
            page = ids[start : start + DESCRIBE_PAGE]
            views.update({i: self.jobs[i].view() for i in page if self._known(i)})
            self._answer("DescribeJobs")
        return views

    def find_tagged(
        self, job_queue: str, job_name: str, tag: str, value: str, exclude: Collection[str] = ()
    ) -> str | None:
        """ListJobs by name, then the tags: the job an interrupted submit may have created."""
        self._call("ListJobs")
        for job in self.jobs.values():
            same = job.spec.job_queue == job_queue and job.spec.job_name == job_name
            mine = job.tags.get(tag) == value and job.job_id not in exclude
            if same and mine and self._known(job.job_id):
                return job.job_id
        return None

    def terminate(self, job_id: str, reason: str) -> None:
        """TerminateJob: an unfinished job ends FAILED with ``reason``."""
        self._call("TerminateJob")
        job = self.jobs[job_id]
        if not job.status.is_terminal:
            job.move(JobStatus.FAILED, reason, None)
        self._answer("TerminateJob")

    def _known(self, job_id: str) -> bool:
        return job_id in self.jobs and job_id not in self._forgotten

    def _call(self, operation: str) -> None:
        self.calls[operation] += 1
        if self._faults[operation]:
            raise self._faults[operation].pop(0)

    def _answer(self, operation: str) -> None:
        if self._lost[operation]:
            self._lost[operation] -= 1
            raise BatchUnavailable(f"{operation}: the answer was lost (read timeout)")
