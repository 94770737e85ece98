"""The reconciler's pass, in process: lost messages re-sent, finished jobs' results produced."""

from __future__ import annotations

from datetime import timedelta

from poller import lifecycle, reconcile
from poller.models import JobStatus
from poller.runtime import Runtime
from poller.testing import FakeBatch
from tests.fakes import RecordingApp, ended_unclaimed


def test_a_finished_job_whose_result_was_never_produced_gets_a_check(
    rt: Runtime, batch: FakeBatch
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
