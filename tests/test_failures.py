"""Each failure kind from AWS Batch's own strings, and the path that gives the others."""

from __future__ import annotations

import pytest
from celery import Celery

from poller.core import failures, lifecycle
from poller.errors import JobFailed, JobTimedOut
from poller.models import FailureKind, JobRecord, JobStatus
from poller.runtime import ProcessRuntime
from poller.testing import FakeBatch
from tests.fakes import Clock, running, settings


def ended(status: JobStatus, reason: str | None = None, container: str | None = None,
          exit_code: int | None = None, cancel_reason: str | None = None) -> JobRecord:  # fmt: skip
    return JobRecord(
        tracking_id="t", job_name="n", job_queue="q", job_definition="d", status=status,
        status_reason=reason, container_reason=container, exit_code=exit_code,
        cancel_reason=cancel_reason, poll=settings_policy(),
    )  # fmt: skip


def settings_policy() -> object:
    return settings().poll_policy


@pytest.mark.parametrize(
    ("status", "reason", "container", "exit_code", "kind"),
    [
        (JobStatus.FAILED, "Host EC2 (instance i-0abc123) terminated.", None, None,
         FailureKind.HOST_TERMINATED),
        (JobStatus.FAILED, "Your Spot Task was interrupted.", None, None,
         FailureKind.HOST_TERMINATED),
        (JobStatus.FAILED, "Essential container in task exited",
         "OutOfMemoryError: Container killed due to memory usage", 137, FailureKind.OUT_OF_MEMORY),
        (JobStatus.FAILED, "Task failed to start",
         "CannotPullContainerError: pull image manifest has been retried 1 time(s)", None,
         FailureKind.IMAGE_PULL),
        (JobStatus.TIMED_OUT, "stuck in RUNNABLE for over 10s: MISCONFIGURATION:JOB_RESOURCE_"
         "REQUIREMENT - The job resource requirement (vCPU/memory/GPU) is higher than that can "
         "be met by the CE(s) attached to the job queue.", None, None,
         FailureKind.MISCONFIGURATION),
        (JobStatus.FAILED, "Job attempt duration exceeded timeout", None, 137,
         FailureKind.TIMEOUT),
        (JobStatus.FAILED, "Dependent Job failed", None, None, FailureKind.DEPENDENCY_FAILED),
        (JobStatus.FAILED, "Essential container in task exited", None, 3, FailureKind.APP_ERROR),
        (JobStatus.TIMED_OUT, "gave up after 10 checks (max_checks=10)", None, None,
         FailureKind.TIMEOUT),
        (JobStatus.REJECTED, "AWS Batch refused job 'n': no queue", None, None,
         FailureKind.REJECTED),
        (JobStatus.SUCCEEDED, "Essential container in task exited", None, 0, None),
        (JobStatus.RUNNING, None, None, None, None),
    ],
)  # fmt: skip
def test_each_kind_is_read_from_aws_strings(
    status: JobStatus, reason: str | None, container: str | None, exit_code: int | None,
    kind: FailureKind | None,
) -> None:  # fmt: skip
    assert failures.classify(ended(status, reason, container, exit_code)) is kind


def test_a_cancel_is_cancelled_whatever_the_exit_code() -> None:
    record = ended(
        JobStatus.FAILED, "cancelled by ops", None, 143, cancel_reason="cancelled by ops"
    )
    assert failures.classify(record) is FailureKind.CANCELLED


def test_a_stuck_job_is_misconfigured_only_when_batch_says_so() -> None:
    assert failures.stuck_kind("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - x") is (
        FailureKind.MISCONFIGURATION
    )
    assert failures.stuck_kind("waiting for capacity") is FailureKind.STUCK
    assert failures.stuck_kind(None) is FailureKind.STUCK


def test_an_app_error_is_recorded_and_carried_by_jobfailed(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a job whose command exits 3
    record = running(rt, batch)
    batch.set_status(str(record.job_id), JobStatus.FAILED, reason="Essential container in task "
                     "exited", exit_code=3)  # fmt: skip
    # When its check sees it
    lifecycle.check(rt, "t1", 0)
    stored = rt.store.get("t1")
    # Then the record, the result and the error name the kind
    assert stored.failure_kind is FailureKind.APP_ERROR
    assert stored.result()["failure_kind"] == "app_error"
    with pytest.raises(JobFailed) as failed:
        lifecycle.outcome(stored)
    assert failed.value.failure_kind == "app_error"
    assert "kind: app_error" in str(failed.value)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The lifecycle's time, which passes only when the test advances it."""
    moved = Clock()
    monkeypatch.setattr(lifecycle, "utcnow", moved.utcnow)
    return moved


def test_a_vanished_job_is_vanished(rt: ProcessRuntime, batch: FakeBatch, clock: Clock) -> None:
    record = running(rt, batch)
    batch.forget(str(record.job_id))
    lifecycle.check(rt, "t1", 0)  # missing: the grace starts
    clock.advance(1)
    lifecycle.check(rt, "t1", 1)  # still missing past the (test's tiny) grace
    assert rt.store.get("t1").status is JobStatus.FAILED
    assert rt.store.get("t1").failure_kind is FailureKind.VANISHED


def test_a_stuck_job_given_up_keeps_batchs_reason_and_its_kind(
    rt: ProcessRuntime, batch: FakeBatch, clock: Clock
) -> None:
    rt.settings = settings(stuck_after=0.001, give_up_when_stuck=True)
    record = running(rt, batch)
    reason = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - no compute environment can run it"
    batch.set_status(str(record.job_id), JobStatus.RUNNABLE, reason=reason)
    stored = rt.store.get("t1").model_copy(update={"status": JobStatus.SUBMITTED})
    rt.store.redis.set(rt.store.key("job", "t1"), stored.model_dump_json())
    lifecycle.check(rt, "t1", 0)  # RUNNABLE
    clock.advance(1)
    lifecycle.check(rt, "t1", 1)  # still RUNNABLE past stuck_after: given up
    ended_record = rt.store.get("t1")
    assert ended_record.status is JobStatus.TIMED_OUT
    assert ended_record.failure_kind is FailureKind.MISCONFIGURATION
    assert reason in str(ended_record.status_reason)


@pytest.mark.parametrize("error", [JobFailed, JobTimedOut])
def test_the_kind_survives_the_result_backend(error: type[JobFailed]) -> None:
    # Celery stores an error's args and rebuilds it on the caller's side with cls(*args)
    backend = Celery(set_as_current=False).backend
    ended = error("job t: ended FAILED", failure_kind="out_of_memory")
    rebuilt = backend.exception_to_python(backend.prepare_exception(ended, "json"))
    assert isinstance(rebuilt, error)
    assert rebuilt.failure_kind is FailureKind.OUT_OF_MEMORY
    assert str(rebuilt) == "job t: ended FAILED"


@pytest.mark.parametrize(
    ("reason", "container", "exit_code", "kind"),
    [
        ("Host EC2 (instance i-0abc) terminated.", None, None, FailureKind.HOST_TERMINATED),
        ("Essential container in task exited", "OutOfMemoryError: Container killed due to memory usage", 137, FailureKind.OUT_OF_MEMORY),
        ("Essential container in task exited", None, 3, FailureKind.APP_ERROR),
        ("Essential container in task exited", None, 0, None),
    ],
)  # fmt: skip
def test_each_batch_attempt_has_its_own_kind(
    reason: str, container: str | None, exit_code: int | None, kind: FailureKind | None
) -> None:
    from poller.models import AttemptOutcome

    assert failures.attempt_kind(AttemptOutcome(reason, container, exit_code)) is kind
