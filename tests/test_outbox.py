"""Signals a worker stored but did not send (it died between the two) are sent by the
reconciler, once, with the event ids they were stored with; against a real Redis."""

from __future__ import annotations

import time
from datetime import timedelta

from poller import lifecycle, reconcile
from poller.models import JobStatus
from poller.runtime import Runtime
from poller.testing import FakeBatch
from tests.fakes import RecordingApp, ended_unclaimed, running


def test_signals_stored_but_never_sent_are_sent_after_the_grace_then_never_again(
    rt: Runtime, batch: FakeBatch, received: list[tuple[str, str, str]]
) -> None:
    # Given a check that stored the job's end, then died before sending its signals
    ended_at = ended_unclaimed(rt, batch, JobStatus.SUCCEEDED)
    version = rt.store.get("t1").version
    received.clear()
    grace = timedelta(seconds=rt.settings.reconcile_grace)
    # When a reconcile pass runs within the grace (a live worker may be sending them now)
    assert reconcile.reconcile(rt, RecordingApp(), now=ended_at).signals_resent == 0
    assert received == []
    # Then the pass after the grace sends them, in order, with the ids they were stored with
    report = reconcile.reconcile(rt, RecordingApp(), now=ended_at + grace + timedelta(seconds=1))
    expected = [
        (name, "t1", f"t1:{version}:{name}")
        for name in ("job_status_changed", "job_succeeded", "job_finished")
    ]
    assert received == expected
    assert report.signals_resent == 3
    # And later passes send nothing more
    received.clear()
    later = ended_at + grace * 10
    assert reconcile.reconcile(rt, RecordingApp(), now=later).signals_resent == 0
    assert received == []


def test_signals_sent_by_their_worker_leave_nothing_to_send_again(
    rt: Runtime, batch: FakeBatch, received: list[tuple[str, str, str]]
) -> None:
    # Given a job submitted, run and ended by its own checks (each sending its signals)
    record = running(rt, batch)
    batch.set_status(str(record.job_id), JobStatus.SUCCEEDED)
    assert isinstance(lifecycle.check(rt, "t1", record.checks), lifecycle.Produce)
    # Then every signal went out once, with an id of its own
    ids = [event_id for _, _, event_id in received]
    assert received[-1][0] == "job_finished" and len(set(ids)) == len(ids)
    # And the outbox holds nothing for the reconciler to send again
    assert rt.store.unsent(time.time() + 3600, limit=100) == {}
