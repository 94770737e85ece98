"""The reconciler's pass, in process: lost messages re-sent, finished jobs' results produced."""

from __future__ import annotations

from datetime import timedelta

import pytest

from poller.core import lifecycle, tracking
from poller.models import JobStatus, utcnow
from poller.runtime import ProcessRuntime
from poller.testing import FakeBatch
from poller.worker import reconcile
from tests.fakes import FAKE_TARGET, RecordingApp, admitted, ended_unclaimed, running, settings


def test_a_finished_job_whose_result_was_never_produced_gets_a_check(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a job whose end was stored by a worker that died before producing its result, and
    # whose message is lost too
    now = ended_unclaimed(rt, batch, JobStatus.FAILED)
    # When a reconcile pass runs after the grace
    app = RecordingApp()
    later = now + timedelta(seconds=rt.settings.reconcile_grace + 1)
    report = reconcile.reconcile(rt, app, now=later)
    # Then it sent the job's check, which produces the result
    assert report.checks_resent == 1
    assert app.sent == [("poller.check_job", ("t1", 1, 0), "t1")]
    assert isinstance(lifecycle.check(rt, "t1", 1), lifecycle.Produce)
    # And once produced, the job leaves the index: later passes send nothing
    assert reconcile.reconcile(rt, app, now=later + timedelta(hours=1)).checks_resent == 0


def test_while_events_flow_a_job_has_no_countdown_and_its_check_is_made_in_bulk_when_due(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given events flowing when a job is submitted
    rt.settings = settings(events_queue_url="http://sqs/q", events_poll_max_delay=600)
    rt.store.fleet.note_events_flowing(60, [FAKE_TARGET])
    record = running(rt, batch)
    # Then Batch events carry it: no countdown message, its safety-net check due in 600 s
    assert record.schedule.awaits_events
    assert record.schedule.next_check_at is not None
    due = record.schedule.next_check_at
    assert (due - utcnow()).total_seconds() == pytest.approx(600, abs=5)
    # When a pass runs before that, it does nothing (no message was lost)
    app = RecordingApp()
    assert (
        reconcile.reconcile(rt, app, now=due - timedelta(seconds=1)) == reconcile.ReconcileReport()
    )
    # When a pass runs once it is due (no grace: no message is on its way), it makes the check
    # itself: one DescribeJobs call, the check counted, the next one 600 s later, no task
    calls = batch.calls["DescribeJobs"]
    report = reconcile.reconcile(rt, app, now=due + timedelta(seconds=1))
    assert (report.checks_swept, report.checks_due, report.checks_resent) == (1, 0, 0)
    assert app.sent == [] and batch.calls["DescribeJobs"] == calls + 1
    record = rt.store.get("t1")
    assert (
        record.schedule.checks == 1
        and record.schedule.awaits_events
        and record.status is JobStatus.RUNNING
    )
    assert record.schedule.next_check_at is not None
    assert (record.schedule.next_check_at - due).total_seconds() == pytest.approx(600, abs=5)
    # When the job has ended by its next safety-net check, that check finds it and sends the
    # job's check task, which produces the result
    assert record.job_id is not None
    batch.set_status(record.job_id, JobStatus.SUCCEEDED)
    report = reconcile.reconcile(rt, app, now=record.schedule.next_check_at + timedelta(seconds=1))
    assert (report.checks_swept, report.checks_due) == (0, 1)
    assert app.sent == [("poller.check_job", ("t1", 2, 0), "t1")]
    assert rt.store.get("t1").status is JobStatus.SUCCEEDED
    assert isinstance(lifecycle.check(rt, "t1", 2), lifecycle.Produce)


def test_once_events_stopped_checks_go_back_to_tasks_and_countdowns(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a job Batch events carry, its safety-net check due, when events stop flowing
    rt.settings = settings(events_queue_url="http://sqs/q", events_poll_max_delay=600)
    rt.store.fleet.note_events_flowing(60, [FAKE_TARGET])
    running(rt, batch)
    outcome = lifecycle.check(rt, "t1", 0)  # a check while events flow: the next one alike
    assert isinstance(outcome, lifecycle.Reschedule) and outcome.record.schedule.awaits_events
    record = outcome.record
    assert record.schedule.next_check_at is not None
    rt.store.fleet.note_events_stopped()
    # When a pass runs once it is due, it sends the job's check as a task (no bulk check)
    app = RecordingApp()
    report = reconcile.reconcile(rt, app, now=record.schedule.next_check_at + timedelta(seconds=1))
    assert (report.checks_swept, report.checks_due) == (0, 1)
    assert app.sent == [("poller.check_job", ("t1", 1, 0), "t1")]
    # And that check goes back to a countdown message, with the poll policy's delay
    outcome = lifecycle.check(rt, "t1", 1)
    assert isinstance(outcome, lifecycle.Reschedule) and not outcome.record.schedule.awaits_events
    assert outcome.delay == 4  # the poll policy for check 2: 1 s x 2^2


def test_a_pass_checks_every_due_job_in_bulk_a_page_at_a_time_skipping_those_within_the_grace(
    rt: ProcessRuntime, batch: FakeBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two jobs whose countdown checks are due but within the grace (their messages are on
    # their way), then seven jobs Batch events carry, all due, read three at a time, two of
    # them ended on Batch
    monkeypatch.setattr(reconcile, "BATCH", 3)
    counting = [running(rt, batch, f"c{n}") for n in range(2)]
    rt.settings = settings(events_queue_url="http://sqs/q", events_poll_max_delay=600)
    rt.store.fleet.note_events_flowing(60, [FAKE_TARGET])
    carried = [running(rt, batch, f"e{n}") for n in range(7)]
    assert not any(r.schedule.awaits_events for r in counting) and all(
        r.schedule.awaits_events for r in carried
    )
    for ended in (carried[1], carried[5]):
        assert ended.job_id is not None
        batch.set_status(ended.job_id, JobStatus.FAILED)
    due = max(r.schedule.next_check_at for r in carried if r.schedule.next_check_at) + timedelta(
        seconds=1
    )
    for record in counting:  # due just before the carried ones, within the grace at ``due``
        when = due - timedelta(seconds=30)
        rt.store.update(record.tracking_id, lambda r, when=when: tracking.rescheduled(r, when))
    # When one pass runs
    app = RecordingApp()
    calls = batch.calls["DescribeJobs"]
    report = reconcile.reconcile(rt, app, now=due)
    # Then it checked every carried job, a DescribeJobs call per page read, and sent a task only
    # for the two that ended; nothing for the others
    assert (report.checks_swept, report.checks_due, report.checks_resent) == (5, 2, 0)
    assert sorted(task_id for _, _, task_id in app.sent) == ["e1", "e5"]
    assert batch.calls["DescribeJobs"] - calls == 3  # a call for each read holding carried jobs
    assert all(rt.store.get(f"e{n}").schedule.checks == 1 for n in range(7))


@pytest.mark.parametrize(("waiting", "resent"), [(0, 5), (3, 2), (5, 0), (50, 0)])
def test_submissions_overdue_during_a_backlog_are_resent_only_beyond_the_waiting_messages(
    rt: ProcessRuntime, monkeypatch: pytest.MonkeyPatch, waiting: int, resent: int
) -> None:
    # Given five accepted jobs never submitted, overdue by far more than the backlog's grace,
    # and ``waiting`` messages in poller's queues (maybe their submissions)
    for n in range(5):
        admitted(rt, f"q{n}")
    monkeypatch.setattr(reconcile, "waiting_messages", lambda app, settings: waiting)
    later = utcnow() + timedelta(seconds=rt.settings.reconcile_grace * 100)
    # When a pass runs
    app = RecordingApp()
    report = reconcile.reconcile(rt, app, now=later)
    # Then only as many as cannot all be waiting are sent again, the oldest first
    assert report.submits_resent == resent
    assert [task_id for _, _, task_id in app.sent] == [f"q{n}" for n in range(resent)]
