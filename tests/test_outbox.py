"""Signals a worker stored but did not send (it died between the two) are sent by the
reconciler, once, with the event ids they were stored with; against a real Redis."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
import redis

from poller.core import lifecycle, outbox, tracking
from poller.models import BatchJobView, JobStatus, utcnow
from poller.runtime import ProcessRuntime
from poller.testing import FakeBatch
from poller.worker import reconcile
from tests.fakes import RecordingApp, admitted, ended_unclaimed, running


def test_signals_stored_but_never_sent_are_sent_after_the_grace_then_never_again(
    rt: ProcessRuntime, batch: FakeBatch, received: list[tuple[str, str, str]]
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
    rt: ProcessRuntime, batch: FakeBatch, received: list[tuple[str, str, str]]
) -> None:
    # Given a job submitted, run and ended by its own checks (each sending its signals)
    record = running(rt, batch)
    batch.set_status(str(record.job_id), JobStatus.SUCCEEDED)
    assert isinstance(lifecycle.check(rt, "t1", record.schedule.checks), lifecycle.Produce)
    # Then every signal went out once, with an id of its own
    ids = [event_id for _, _, event_id in received]
    assert received[-1][0] == "job_finished" and len(set(ids)) == len(ids)
    # And the outbox holds nothing for the reconciler to send again
    assert rt.store.unsent.older_than(time.time() + 3600, limit=100) == {}


def test_only_the_events_stored_before_the_cut_are_sent_with_the_ids_they_were_stored_with(
    rt: ProcessRuntime, received: list[tuple[str, str, str]]
) -> None:
    # Given a job whose submission and first observation were stored by a worker that died
    # before sending either's signals, the observation a little later
    record = admitted(rt)
    now = utcnow()
    rt.store.update("t1", lambda r: tracking.submitted(r, "b-1", now, now))
    cut = time.time()
    time.sleep(0.01)
    view = BatchJobView(job_id="b-1", status=JobStatus.RUNNING)
    rt.store.update(
        "t1",
        lambda r: tracking.checked(
            r, view, check_no=0, now=now, next_check_at=now, limits=rt.limits
        ),
    )
    # When the stale ones are sent (what a pass does with the later one still within its grace)
    assert outbox.resend_stale(rt, cut, until=time.monotonic() + 60) == 2
    # Then only the submission's went out, though the job has a later record
    assert [name for name, _, _ in received] == ["job_submitted", "job_status_changed"]
    assert {event_id.split(":")[1] for _, _, event_id in received} == {str(record.version + 1)}
    # And the later one goes out once it is stale too
    assert outbox.resend_stale(rt, time.time() + 1, until=time.monotonic() + 60) == 1
    assert received[-1][0] == "job_status_changed"


def test_a_failure_to_note_signals_as_sent_is_logged_and_they_are_sent_again_later(
    rt: ProcessRuntime, batch: FakeBatch, received: list[tuple[str, str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Given Redis failing just after a check stored the job's end and sent its signals
    record = running(rt, batch)
    batch.set_status(str(record.job_id), JobStatus.SUCCEEDED)
    received.clear()

    def lost(*_: Any) -> None:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(rt.store.unsent, "sent_each", lost)
    # Then the check still ends the job and produces its result
    assert isinstance(lifecycle.check(rt, "t1", record.schedule.checks), lifecycle.Produce)
    sent_once = list(received)
    assert [name for name, _, _ in sent_once][-1] == "job_finished"
    # And a later pass sends the same signals again, with the same ids (at least once)
    monkeypatch.undo()
    again = outbox.resend_stale(rt, time.time() + 1, until=time.monotonic() + 60)
    assert again == len(sent_once)
    assert received[len(sent_once) :] == sent_once
