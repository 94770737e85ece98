"""The safety net's checks made in bulk (real Redis, Batch in memory): each job's observation
applied as its own check would, a task only for the jobs that need one."""

from __future__ import annotations

import time
from datetime import timedelta

from poller.core import event_apply, lifecycle, tracking
from poller.errors import BatchMisconfigured, BatchUnavailable
from poller.models import JobRecord, JobStatus, utcnow
from poller.runtime import ProcessRuntime
from poller.testing import FakeBatch
from poller.worker import safety_net
from tests.fakes import FAKE_TARGET, running, settings

UNTIL = float("inf")  # no deadline


def carried(rt: ProcessRuntime, batch: FakeBatch, count: int, **poll: object) -> list[JobRecord]:
    """``count`` RUNNING jobs Batch events carry."""
    rt.settings = settings(events_queue_url="http://sqs/q", events_poll_max_delay=600)
    rt.store.fleet.note_events_flowing(60, [FAKE_TARGET])
    return [running(rt, batch, f"j{n}", **poll) for n in range(count)]


def test_a_transition_found_in_bulk_is_stored_and_signalled_once(
    rt: ProcessRuntime, batch: FakeBatch, sent: list[tuple[str, str]]
) -> None:
    # Given two carried jobs, one of them ended on Batch
    jobs = carried(rt, batch, 2)
    batch.set_status(str(jobs[1].job_id), JobStatus.SUCCEEDED, exit_code=0)
    sent.clear()
    # When the sweep checks them
    swept = safety_net.sweep(rt, jobs, utcnow(), UNTIL)
    # Then one call described both; the ended one goes to a task (its check produces the result)
    assert (swept.checked, swept.calls, swept.ended) == (2, 1, 1)
    assert [r.tracking_id for r in swept.for_tasks] == ["j1"]
    assert rt.store.get("j1").status is JobStatus.SUCCEEDED
    assert ("job_succeeded", "j1") in sent and sent.count(("job_succeeded", "j1")) == 1
    assert isinstance(lifecycle.check(rt, "j1", 1), lifecycle.Produce)
    # And the one still running goes on, its next safety-net check 600 s on
    going_on = rt.store.get("j0")
    assert (
        going_on.schedule.awaits_events
        and going_on.schedule.checks == 1
        and going_on.schedule.next_check_at
    )
    assert 590 < (going_on.schedule.next_check_at - utcnow()).total_seconds() <= 600


def test_a_record_changed_since_it_was_read_is_left_alone(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a carried job read as due, then moved on by another worker (its check, an event)
    (job,) = carried(rt, batch, 1)
    rt.store.update("j0", lambda r: tracking.rescheduled(r, utcnow() + timedelta(hours=1)))
    # When the sweep gets to it, it changes nothing
    swept = safety_net.sweep(rt, [job], utcnow(), UNTIL)
    assert (swept.checked, swept.for_tasks) == (0, [])
    assert rt.store.get("j0").schedule.checks == 0


def test_jobs_whose_check_does_more_are_left_to_their_task(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given carried jobs: one out of checks (max_checks), one revoked, one stuck in RUNNABLE
    # past stuck_after with give_up_when_stuck (its check terminates the Batch job)
    jobs = carried(rt, batch, 3, max_checks=1)
    rt.store.update("j0", lambda r: tracking.checked(
        r, None, check_no=0, now=utcnow(), next_check_at=utcnow(), limits=rt.limits
    ))  # fmt: skip
    rt.store.update("j1", lambda r: tracking.revoke_requested(r, "revoked"))
    rt.settings = settings(
        events_queue_url="http://sqs/q", events_poll_max_delay=600, stuck_after=1,
        give_up_when_stuck=True,
    )  # fmt: skip
    batch.set_status(str(jobs[2].job_id), JobStatus.RUNNABLE)
    event_apply.apply_events(
        rt, {"j2": [batch.describe([str(jobs[2].job_id)])[str(jobs[2].job_id)]]}
    )
    # When the sweep runs after stuck_after
    records = rt.store.records(["j0", "j1", "j2"])
    swept = safety_net.sweep(rt, records, utcnow() + timedelta(seconds=5), UNTIL)
    # Then none is decided here: each goes to its task, unchanged
    assert sorted(r.tracking_id for r in swept.for_tasks) == ["j0", "j1", "j2"]
    assert swept.checked == 0
    assert rt.store.get("j2").status is JobStatus.RUNNABLE


def test_a_page_batch_cannot_describe_for_now_waits_for_the_next_pass(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given carried jobs, and DescribeJobs throttled
    jobs = carried(rt, batch, 3)
    batch.fail_next("DescribeJobs", BatchUnavailable("ThrottlingException: Rate exceeded"))
    # When the sweep runs, nothing is checked and no task is sent (a hundred tasks would each
    # call DescribeJobs): the jobs stay due for the next pass
    swept = safety_net.sweep(rt, jobs, utcnow(), UNTIL)
    assert (swept.checked, swept.calls, swept.for_tasks) == (0, 0, [])
    # And a refusal (AWS says poller's configuration is wrong) goes to the tasks, which end the
    # jobs once it lasted their grace
    batch.fail_next("DescribeJobs", BatchMisconfigured("AccessDeniedException: no"))
    swept = safety_net.sweep(rt, jobs, utcnow(), UNTIL)
    assert [r.tracking_id for r in swept.for_tasks] == ["j0", "j1", "j2"]


def test_a_job_that_ended_without_its_result_goes_to_its_task(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a carried job whose end event was applied, but whose check (sent by the events
    # consumer to produce the result) was lost
    (job,) = carried(rt, batch, 1)
    batch.set_status(str(job.job_id), JobStatus.SUCCEEDED, exit_code=0)
    view = batch.describe([str(job.job_id)])[str(job.job_id)]
    event_apply.apply_events(rt, {"j0": [view]})
    ended = rt.store.get("j0")
    assert ended.is_terminal and not ended.celery.resolved
    # When the sweep gets to it, it sends its task (which produces the result), no describe
    calls = batch.calls["DescribeJobs"]
    swept = safety_net.sweep(rt, [ended], utcnow(), UNTIL)
    assert [r.tracking_id for r in swept.for_tasks] == ["j0"]
    assert batch.calls["DescribeJobs"] == calls
    assert isinstance(lifecycle.check(rt, "j0", ended.schedule.checks), lifecycle.Produce)


def test_a_sweep_stops_at_its_deadline(rt: ProcessRuntime, batch: FakeBatch) -> None:
    # Given carried jobs, and a pass whose time is up
    jobs = carried(rt, batch, 2)
    # When the sweep starts, it describes nothing: the jobs stay due for the next pass
    swept = safety_net.sweep(rt, jobs, utcnow(), time.monotonic() - 1)
    assert (swept.checked, swept.calls, swept.for_tasks) == (0, 0, [])
