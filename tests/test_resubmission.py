"""Resubmission and max_runnable, through the lifecycle against a real Redis and FakeBatch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from poller import admission, signals
from poller.core import lifecycle, tracking
from poller.core.lifecycle import Produce, Reschedule
from poller.errors import InvalidJobSpec, JobFailed, JobTimedOut
from poller.models import FailureKind, JobRecord, JobStatus, utcnow
from poller.runtime import ProcessRuntime
from poller.store import Change
from poller.testing import FakeBatch
from tests.fakes import QUEUE, settings

HOST_LOSS = "Host EC2 (instance i-0123456789abcdef0) terminated."
OOM = "OutOfMemoryError: Container killed due to memory usage"
FALLBACK = "fallback"


def submitted(rt: ProcessRuntime, resubmit: dict[str, Any] | None, **kwargs: Any) -> JobRecord:
    args = ("nightly", kwargs.pop("queue", QUEUE), "def")
    fields = {"resubmit": resubmit, **kwargs}
    spec, policy, key, policy_ = admission.validate(rt.settings, args, fields)
    record = lifecycle.admit(rt.store, "t1", spec, policy, key, resubmit=policy_)
    return lifecycle.submit(rt, record)


def end(
    rt: ProcessRuntime, batch: FakeBatch, record: JobRecord, reason: str, code: int | None = None
):  # type: ignore[no-untyped-def]
    batch.set_status(str(record.job_id), JobStatus.FAILED, reason=reason, exit_code=code)
    return lifecycle.check(rt, "t1", rt.store.get("t1").schedule.checks)


@pytest.fixture
def batch() -> FakeBatch:
    return FakeBatch(queues=[QUEUE, FALLBACK])


def test_host_loss_is_resubmitted_on_the_fallback_queue(
    rt: ProcessRuntime, batch: FakeBatch, sent: list[tuple[str, str]]
) -> None:
    first = submitted(rt, {"on": ["host_terminated"], "queue": FALLBACK})
    outcome = end(rt, batch, first, HOST_LOSS)

    assert isinstance(outcome, Reschedule)
    record = rt.store.get("t1")
    assert record.status is JobStatus.SUBMITTED
    assert record.job_id not in (None, first.job_id)
    assert batch.jobs[str(record.job_id)].spec.job_queue == FALLBACK
    assert record.job_queue == FALLBACK
    assert [s.job_id for s in record.submissions] == [first.job_id, record.job_id]
    ended = record.submissions[0]
    assert (ended.status, ended.failure_kind, ended.status_reason) == (
        JobStatus.FAILED, FailureKind.HOST_TERMINATED, HOST_LOSS,
    )  # fmt: skip
    assert ended.job_queue == QUEUE and ended.ended_at is not None
    assert record.submissions[1].status is None
    assert outcome.record.schedule.checks == record.schedule.checks  # the next check's number
    names = [name for name, _ in sent]
    assert names.count("job_submitted") == 2 and "job_resubmitted" in names
    assert "job_failed" not in names and "job_finished" not in names

    batch.set_status(str(record.job_id), JobStatus.SUCCEEDED, exit_code=0)
    done = lifecycle.check(rt, "t1", record.schedule.checks)
    assert isinstance(done, Produce)
    result = lifecycle.outcome(done.record)
    assert result["status"] == "SUCCEEDED" and result["failure_kind"] is None
    assert [s["job_queue"] for s in result["submissions"]] == [QUEUE, FALLBACK]
    assert result["submissions"][0]["failure_kind"] == "host_terminated"


def test_out_of_memory_is_resubmitted_with_more_memory(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    first = submitted(rt, {"on": ["out_of_memory"], "memory_factor": 2})
    lifecycle.check(rt, "t1", 0)  # DescribeJobs shows the definition's 512 MiB
    assert rt.store.get("t1").submissions[0].memory == 512

    end(rt, batch, first, OOM, 137)

    record = rt.store.get("t1")
    job = batch.jobs[str(record.job_id)]
    assert job.spec.job_queue == QUEUE  # no fallback queue: its own
    assert job.spec.container_overrides == {
        "resourceRequirements": [{"type": "MEMORY", "value": "1024"}]
    }
    assert [s.memory for s in record.submissions] == [512, 1024]
    assert record.submissions[0].failure_kind is FailureKind.OUT_OF_MEMORY


def test_a_kind_the_policy_does_not_name_ends_the_job(rt: ProcessRuntime, batch: FakeBatch) -> None:
    first = submitted(rt, {"on": ["host_terminated"], "queue": FALLBACK})
    outcome = end(rt, batch, first, "CannotPullContainerError: pull access denied")

    assert isinstance(outcome, Produce)
    with pytest.raises(JobFailed) as raised:
        lifecycle.outcome(outcome.record)
    assert raised.value.failure_kind == "image_pull"
    assert len(outcome.record.submissions) == 1
    assert batch.calls["SubmitJob"] == 1


def test_resubmissions_stop_at_max(rt: ProcessRuntime, batch: FakeBatch) -> None:
    first = submitted(rt, {"on": ["app_error"], "max": 2})
    end(rt, batch, first, "Essential container in task exited", 3)
    end(rt, batch, rt.store.get("t1"), "Essential container in task exited", 3)
    outcome = end(rt, batch, rt.store.get("t1"), "Essential container in task exited", 3)

    assert isinstance(outcome, Produce)
    record = outcome.record
    assert record.status is JobStatus.FAILED and record.failure_kind is FailureKind.APP_ERROR
    assert len(record.submissions) == 3 and batch.calls["SubmitJob"] == 3
    assert all(s.failure_kind is FailureKind.APP_ERROR for s in record.submissions)


def test_a_cancelled_job_is_never_resubmitted(rt: ProcessRuntime, batch: FakeBatch) -> None:
    submitted(rt, {"on": ["app_error"]})
    lifecycle.cancel(rt, "t1", "not needed")
    outcome = lifecycle.check(rt, "t1", 0)

    assert isinstance(outcome, Produce)
    assert outcome.record.failure_kind is FailureKind.CANCELLED
    assert batch.calls["SubmitJob"] == 1


def test_an_interrupted_resubmission_finds_its_job_and_makes_no_second(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    first = submitted(rt, {"on": ["host_terminated"]})  # same queue, same name, same tag
    batch.lose_next_answer("SubmitJob")  # the resubmission acts, its answer is lost

    with pytest.raises(Exception, match="lost"):
        end(rt, batch, first, HOST_LOSS)
    record = rt.store.get("t1")
    assert record.resubmitting and record.submission.started_at is not None

    # The lease expires (the worker died); the next delivery looks before submitting
    rt.store.update("t1", lambda r: Change(r.with_parts(submission={"lease_until": utcnow()})))
    outcome = lifecycle.check(rt, "t1", record.schedule.checks)

    assert isinstance(outcome, Reschedule)
    assert batch.calls["SubmitJob"] == 2  # the first submission and the one resubmission
    assert outcome.record.job_id not in (None, first.job_id)
    assert len(outcome.record.submissions) == 2


def test_a_refused_resubmission_ends_as_its_last_batch_job(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    first = submitted(rt, {"on": ["host_terminated"], "queue": "no-such-queue"})
    outcome = end(rt, batch, first, HOST_LOSS)

    assert isinstance(outcome, Produce)
    record = outcome.record
    assert record.status is JobStatus.FAILED
    assert record.failure_kind is FailureKind.HOST_TERMINATED
    assert record.job_id == first.job_id
    assert HOST_LOSS in str(record.status_reason) and "resubmission refused" in str(
        record.status_reason
    )


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"on": []}, "resubmit.on"),
        ({"on": ["spot"]}, "resubmit.on.0"),
        ({"on": ["cancelled"]}, "resubmit.on"),
        ({"on": ["app_error"], "max": 0}, "resubmit.max"),
        ({"on": ["app_error"], "queue": "bad queue"}, "resubmit.queue"),
        ({"on": ["app_error"], "memory_factor": 0.5}, "resubmit.memory_factor"),
        ({"on": ["app_error"], "retries": 2}, "resubmit.retries"),
        ("host_terminated", "resubmit"),
    ],
)
def test_a_bad_resubmit_policy_is_refused_naming_the_field(value: Any, field: str) -> None:
    with pytest.raises(InvalidJobSpec) as raised:
        admission.validate(settings(), ("n", QUEUE, "d"), {"resubmit": value})
    assert raised.value.field == field


def test_the_settings_give_the_default_policy() -> None:
    fleet = settings(resubmit={"on": ["host_terminated"], "queue": FALLBACK})
    policy = admission.resubmit_policy(fleet, {})
    assert policy is not None and policy.queue == FALLBACK
    assert admission.resubmit_policy(settings(), {}) is None


MISCONFIGURED = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement"


def test_max_runnable_ends_a_stuck_job_keeping_its_reason(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    record = submitted(rt, None, poll={"max_runnable": 10})
    batch.set_status(str(record.job_id), JobStatus.RUNNABLE, reason=MISCONFIGURED)
    seen = lifecycle.check(rt, "t1", 0)
    assert isinstance(seen, Reschedule)
    assert seen.delay <= 10.5  # the next check comes by the deadline, not the backoff's

    # Ten seconds later (poller's clock: when it first saw RUNNABLE)
    earlier = [
        t.model_copy(update={"observed_at": t.observed_at - timedelta(seconds=11)})
        for t in rt.store.get("t1").history
    ]
    rt.store.update("t1", lambda r: Change(r.model_copy(update={"history": earlier})))
    outcome = lifecycle.check(rt, "t1", 1)

    assert isinstance(outcome, Produce)
    ended = outcome.record
    assert ended.status is JobStatus.TIMED_OUT
    assert ended.failure_kind is FailureKind.MISCONFIGURATION
    assert MISCONFIGURED in str(ended.status_reason)
    assert batch.jobs[str(record.job_id)].status is JobStatus.FAILED  # terminated
    with pytest.raises(JobTimedOut) as raised:
        lifecycle.outcome(ended)
    assert raised.value.failure_kind == "misconfiguration"


def test_a_passing_reason_never_kills_the_job() -> None:
    record = JobRecord(
        tracking_id="t", job_name="n", job_queue="q", job_definition="d",
        status=JobStatus.RUNNABLE, job_id="j", poll=_policy(max_runnable=10),
    )  # fmt: skip
    record = tracking.new_record(record, utcnow() - timedelta(seconds=5))
    runs = _view(record, JobStatus.STARTING)
    change = tracking.checked(
        record, runs, check_no=0, now=utcnow(), next_check_at=utcnow(), limits=_limits()
    )
    assert change is not None and change.record.status is JobStatus.STARTING


def test_the_fleet_settings_stay_the_default_of_max_runnable() -> None:
    assert settings().poll_policy.max_runnable is None
    fleet = settings(stuck_after=30, give_up_when_stuck=True)
    assert fleet.poll_policy.max_runnable == 30


def _policy(**overrides: Any) -> Any:
    from poller.models import PollPolicy

    return PollPolicy(**{**settings().poll_policy.model_dump(), **overrides})


def _limits() -> Any:
    from poller.models import Limits

    return Limits(not_found_grace=60, stuck_after=3600, give_up_when_stuck=False)


def _view(record: JobRecord, status: JobStatus) -> Any:
    from poller.models import BatchJobView

    return BatchJobView(job_id=str(record.job_id), status=status)


def test_signals_say_which_submission_they_are_about(rt: ProcessRuntime, batch: FakeBatch) -> None:
    seen: list[tuple[str, int]] = []

    def note(sender: str, submission: int, **_: Any) -> None:
        seen.append((sender, submission))

    for signal in (signals.job_submitted, signals.job_resubmitted, signals.job_succeeded):
        signal.connect(note, weak=False)
    try:
        first = submitted(rt, {"on": ["host_terminated"], "queue": FALLBACK})
        end(rt, batch, first, HOST_LOSS)
        batch.set_status(str(rt.store.get("t1").job_id), JobStatus.SUCCEEDED, exit_code=0)
        lifecycle.check(rt, "t1", rt.store.get("t1").schedule.checks)
    finally:
        for signal in (signals.job_submitted, signals.job_resubmitted, signals.job_succeeded):
            signal.disconnect(note)
    assert seen == [
        ("job_submitted", 1), ("job_resubmitted", 1), ("job_submitted", 2), ("job_succeeded", 2)
    ]  # fmt: skip


def test_an_observation_of_the_replaced_batch_job_is_never_applied(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    first = submitted(rt, {"on": ["host_terminated"], "queue": FALLBACK})
    end(rt, batch, first, HOST_LOSS)
    # A coalesced check stored what it saw of the old Batch job, under the job's tracking id
    old = batch.describe([str(first.job_id)])[str(first.job_id)]
    rt.store.observations.store_observations(
        {"t1": old}, at=utcnow(), keep_for=60, again_at=utcnow()
    )

    outcome = lifecycle.check(rt, "t1", rt.store.get("t1").schedule.checks)

    assert isinstance(outcome, Reschedule)
    record = rt.store.get("t1")
    assert record.status is JobStatus.SUBMITTED and record.status_reason is None


def test_a_check_in_flight_never_ends_a_job_being_resubmitted(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    first = submitted(rt, {"on": ["out_of_memory"], "memory_factor": 2})
    batch.set_status(str(first.job_id), JobStatus.FAILED, reason=OOM, exit_code=137)
    old = batch.describe([str(first.job_id)])[str(first.job_id)]
    # Another job's coalesced call saw it end (not counted as its check): it is being resubmitted
    now = utcnow()
    rt.store.update(
        "t1", lambda r: tracking.checked(r, old, check_no=0, now=now, next_check_at=now,
                                         limits=rt.limits, own=False),
    )  # fmt: skip
    assert rt.store.get("t1").resubmitting
    # Its own check, which read the record before, applies the same end: nothing changes
    stale = tracking.checked(
        rt.store.get("t1"), old, check_no=0, now=now, next_check_at=now, limits=rt.limits
    )
    assert stale is None
    # And its check resubmits it
    outcome = lifecycle.check(rt, "t1", 0)
    assert isinstance(outcome, Reschedule)
    assert outcome.record.status is JobStatus.SUBMITTED and len(outcome.record.submissions) == 2
