"""Batch state-change events applied in process: a real Redis, Batch faked in memory."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from poller import signals
from poller.core import lifecycle, schedule, tracking
from poller.core.lifecycle import Produce
from poller.models import JobRecord, JobStatus, utcnow
from poller.runtime import ProcessRuntime
from poller.testing import FakeBatch
from poller.worker import batch_events
from tests.fakes import FAKE_TARGET, RecordingApp, admitted, running, settings


def event(record: JobRecord, status: str, **detail: Any) -> str:
    """A "Batch Job State Change" body as EventBridge delivers it to SQS."""
    return json.dumps(
        {
            "version": "0", "id": "e-1", "detail-type": "Batch Job State Change",
            "source": "aws.batch", "account": "123456789012", "time": "2026-11-26T13:00:00Z",
            "region": "us-east-1", "resources": [f"arn:aws:batch:::job/{record.job_id}"],
            "detail": {
                "jobId": record.job_id, "jobName": record.job_name, "jobQueue": "q",
                "status": status, "tags": {lifecycle.TRACKING_TAG: record.tracking_id},
                **detail,
            },
        }
    )  # fmt: skip


@pytest.fixture
def app() -> RecordingApp:
    return RecordingApp()


def test_an_event_moves_the_job_forward_once_and_signals_once(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp, sent: list[tuple[str, str]]
) -> None:
    record = running(rt, batch)
    body = event(record, "STARTING")
    # Given the job recorded SUBMITTED, When its STARTING event arrives twice
    assert batch_events.handle(rt, app, body) == batch_events.APPLIED
    assert batch_events.handle(rt, app, body) == batch_events.DUPLICATE
    # Then it moved once, signalled once, and no check was sent (it has not ended)
    assert rt.store.get("t1").status is JobStatus.STARTING
    assert sent.count(("job_status_changed", "t1")) == 2  # SUBMITTED, then STARTING
    assert app.sent == []


def test_an_older_event_after_a_newer_one_changes_nothing(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp
) -> None:
    record = running(rt, batch)
    assert batch_events.handle(rt, app, event(record, "RUNNING")) == batch_events.APPLIED
    version = rt.store.get("t1").version
    assert batch_events.handle(rt, app, event(record, "RUNNABLE")) == batch_events.DUPLICATE
    assert rt.store.get("t1").version == version


def test_a_terminal_event_sends_the_check_that_produces_the_result_at_once(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp
) -> None:
    record = running(rt, batch)
    # When its SUCCEEDED event arrives (twice: at least once delivery)
    body = event(record, "SUCCEEDED", container={"exitCode": 0}, stoppedAt=1_700_000_000_000)
    assert batch_events.handle(rt, app, body) == batch_events.APPLIED
    # Then the end is recorded, with Batch's details, and a check is sent under its tracking id
    ended = rt.store.get("t1")
    assert ended.status is JobStatus.SUCCEEDED and ended.batch.exit_code == 0
    assert app.sent == [("poller.check_job", ("t1", ended.schedule.checks, 0), "t1")]
    # And that check produces the result without calling AWS
    calls = dict(batch.calls)
    assert isinstance(lifecycle.check(rt, "t1", ended.schedule.checks), Produce)
    assert dict(batch.calls) == calls
    # And a redelivered event, after the result was produced, sends nothing more
    assert batch_events.handle(rt, app, body) == batch_events.DUPLICATE
    assert len(app.sent) == 1


@pytest.mark.parametrize(
    "body",
    ["not json", "[]", '{"source": "aws.batch"}', json.dumps({"source": "aws.ec2", "detail": {}}),
     json.dumps({"source": "aws.batch", "detail-type": "Batch Job State Change", "detail": {}}),
     json.dumps({"source": "aws.batch", "detail-type": "Batch Job State Change",
                 "detail": {"jobId": "j", "status": "BOGUS"}})],
)  # fmt: skip
def test_malformed_bodies_are_malformed(rt: ProcessRuntime, app: RecordingApp, body: str) -> None:
    assert batch_events.handle(rt, app, body) == batch_events.MALFORMED


def test_events_of_jobs_poller_does_not_track_are_unknown(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp
) -> None:
    record = running(rt, batch)
    stranger = record.model_copy(update={"job_id": "someone-elses", "tracking_id": "nope"})
    assert batch_events.handle(rt, app, event(stranger, "RUNNING")) == batch_events.UNKNOWN_JOB
    # An array child carries its parent's tags but is not the job poller tracks
    child = record.model_copy(update={"job_id": f"{record.job_id}:3"})
    assert batch_events.handle(rt, app, event(child, "SUCCEEDED")) == batch_events.UNKNOWN_JOB
    assert rt.store.get("t1").status is JobStatus.SUBMITTED  # neither event moved it


def test_an_event_before_the_submission_is_recorded_is_left_for_redelivery(
    rt: ProcessRuntime, app: RecordingApp
) -> None:
    record = admitted(rt).model_copy(update={"job_id": "not-recorded-yet"})
    assert batch_events.handle(rt, app, event(record, "PENDING")) == batch_events.EARLY


def test_while_events_flow_checks_wait_the_events_cap_without_a_countdown(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    record = running(rt, batch)
    rt.settings = settings(events_queue_url="http://sqs/q", events_poll_max_delay=600)
    # the policy, 1 s x 2^3 (no jitter), as a countdown message
    assert schedule.next_check(rt, record, 3) == (8, False)
    rt.store.fleet.note_events_flowing(60, [FAKE_TARGET])
    assert schedule.next_check(rt, record, 3) == (600, True)  # the events cap; events carry it
    rt.store.fleet.note_events_stopped()
    assert schedule.next_check(rt, record, 3) == (8, False)


class OneBatchQueue:
    """An SQS client holding one batch of messages."""

    def __init__(self, bodies: list[str]) -> None:
        self.messages = [{"Body": b, "ReceiptHandle": str(i)} for i, b in enumerate(bodies)]
        self.deleted: list[str] = []

    def receive_message(self, **_: Any) -> dict[str, Any]:
        messages, self.messages = self.messages, []
        return {"Messages": messages}

    def delete_message_batch(self, **request: Any) -> None:
        self.deleted += [e["ReceiptHandle"] for e in request["Entries"]]


def test_events_flow_whether_fresh_or_a_backlog(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp
) -> None:
    record = running(rt, batch)
    fresh = event(record, "STARTING").replace(
        "2026-11-26T13:00:00Z", utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    # Fresh events: flowing, and the message deleted
    queue = OneBatchQueue([fresh])
    assert batch_events.consume(rt, app, queue, "q") == {batch_events.APPLIED: 1}
    assert rt.store.fleet.events_flowing() and queue.deleted == ["0"]
    assert rt.store.fleet.events_flowing(*FAKE_TARGET)  # from the event's own account and region
    assert not rt.store.fleet.events_flowing(FAKE_TARGET[0], "us-west-2")
    # A backlog (the newest event received is days old) flows too: checking every tracked job
    # at the poll policy's cap while the events catch up is work a large fleet cannot afford
    rt.store.fleet.note_events_stopped()
    old = event(record, "RUNNING")  # published 2026-11-26T13:00:00Z
    batch_events.consume(rt, app, OneBatchQueue([old]), "q")
    assert rt.store.fleet.events_flowing()
    assert rt.store.get("t1").status is JobStatus.RUNNING


def test_a_batch_applies_each_jobs_events_in_order_in_one_transaction(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp, sent: list[tuple[str, str]]
) -> None:
    # Given two tracked jobs and a batch holding both jobs' events, one duplicated, one stale,
    # one of a job poller does not track and one that is not an event
    first, second = running(rt, batch, "t1"), running(rt, batch, "t2")
    stranger = first.model_copy(update={"job_id": "not-poller's", "tracking_id": "nobody"})
    bodies = [
        event(first, "RUNNING"), event(second, "STARTING"), event(first, "RUNNING"),
        event(first, "SUCCEEDED"), event(second, "RUNNABLE"), event(stranger, "RUNNING"), "{}",
    ]  # fmt: skip
    queue = OneBatchQueue(bodies)
    # When one consume call takes the batch
    outcomes = batch_events.consume(rt, app, queue, "q")
    # Then each event has its outcome, and every message is deleted
    assert outcomes == {
        batch_events.APPLIED: 3,
        batch_events.DUPLICATE: 2,
        batch_events.UNKNOWN_JOB: 1,
        batch_events.MALFORMED: 1,
    }
    assert sorted(queue.deleted) == sorted(str(n) for n in range(len(bodies)))
    # And each job moved forward once per transition, with one signal each
    assert rt.store.get("t1").status is JobStatus.SUCCEEDED
    assert rt.store.get("t2").status is JobStatus.STARTING
    assert sent.count(("job_status_changed", "t1")) == 3  # SUBMITTED, RUNNING, SUCCEEDED
    assert sent.count(("job_finished", "t1")) == 1
    # And the finished job's check was sent once, to produce its result
    assert app.sent == [("poller.check_job", ("t1", 0, 0), "t1")]
    assert isinstance(lifecycle.check(rt, "t1", 0), Produce)


def test_a_batch_meeting_a_concurrent_write_is_decided_again_on_the_new_record(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = running(rt, batch)
    observed = tracking.event_observed
    calls: list[JobStatus] = []

    def racing(current: JobRecord, view: Any, **kwargs: Any) -> Any:
        calls.append(current.status)
        if len(calls) == 1:
            # Another worker's check stores RUNNING between this batch's read and its write
            moved = current.model_copy(update={"status": JobStatus.RUNNING, "version": 99})
            rt.store.redis.set(rt.store.key("job", "t1"), moved.model_dump_json())
        return observed(current, view, **kwargs)

    monkeypatch.setattr(tracking, "event_observed", racing)
    outcomes = batch_events.consume(rt, app, OneBatchQueue([event(record, "STARTING")]), "q")
    # Then the batch was decided again on the new record, and nothing went backwards
    assert calls == [JobStatus.SUBMITTED, JobStatus.RUNNING]
    assert outcomes == {batch_events.DUPLICATE: 1}
    assert rt.store.get("t1").status is JobStatus.RUNNING


def test_events_applied_in_one_transaction_keep_distinct_event_ids(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp
) -> None:
    # Given a job and a batch holding three of its transitions
    record = running(rt, batch)
    ids: list[tuple[str, str, int]] = []

    def receiver(sender: str, record: JobRecord, event_id: str, **_: Any) -> None:
        ids.append((event_id, record.status.value, record.version))

    signals.job_status_changed.connect(receiver)
    try:
        bodies = [event(record, status) for status in ("RUNNABLE", "RUNNING", "SUCCEEDED")]
        batch_events.consume(rt, app, OneBatchQueue(bodies), "q")
    finally:
        signals.job_status_changed.disconnect(receiver)
    # Then each transition has its own event id and version, the record the last of them
    version = rt.store.get("t1").version
    assert ids == [
        (f"t1:{version - 2}:job_status_changed", "RUNNABLE", version - 2),
        (f"t1:{version - 1}:job_status_changed", "RUNNING", version - 1),
        (f"t1:{version}:job_status_changed", "SUCCEEDED", version),
    ]


POISON = [
    '{"createdAt": 1e30}',
    json.dumps({"source": "aws.batch", "detail-type": "Batch Job State Change",
                "account": "123456789012", "region": "us-east-1",
                "detail": {"jobId": ["a", "list"], "status": "RUNNING"}}),
    "[" * 100_000 + "]" * 100_000,  # deeper than the JSON parser recurses
    "\udcff not even text",
    "x" * 300_000,  # larger than any event
]  # fmt: skip


def poisoned(record: JobRecord, how: str) -> str:
    """A body that is the job's SUCCEEDED event but for one member."""
    body = json.loads(event(record, "SUCCEEDED"))
    if how == "exit code as text":
        body["detail"]["container"] = {"exitCode": "zero"}
    elif how == "created at 1e30":
        body["detail"]["createdAt"] = 1e30
    elif how == "created after year 9999":
        body["detail"]["createdAt"] = 10**30
    elif how == "unknown status":
        body["detail"]["status"] = "EXPLODED"
    elif how == "region with a newline":
        body["region"] = "us-east-1\n"
    elif how == "no account":
        del body["account"]
    elif how == "account with more than 12 digits":
        body["account"] = "x123456789012\n"
    return json.dumps(body)


HOWS = [
    "exit code as text", "created at 1e30", "created after year 9999", "unknown status",
    "region with a newline", "no account", "account with more than 12 digits",
]  # fmt: skip


def test_a_batch_of_poison_messages_drains_and_the_good_one_among_them_applies(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp
) -> None:
    # Given a tracked job, and a batch of ten where only one message is its good event
    victim, other = running(rt, batch, "t1"), running(rt, batch, "t2")
    bodies = [poisoned(victim, how) for how in HOWS[:5]] + POISON[:4]
    bodies.insert(4, event(other, "RUNNING"))
    assert len(bodies) == 10
    queue = OneBatchQueue(bodies)
    # When one consume call takes the batch
    outcomes = batch_events.consume(rt, app, queue, "q")
    # Then the good event applied, the nine others are counted malformed, and all are deleted
    assert outcomes == {batch_events.APPLIED: 1, batch_events.MALFORMED: 9}
    assert sorted(queue.deleted, key=int) == [str(n) for n in range(10)]
    assert rt.store.get("t2").status is JobStatus.RUNNING
    # And the victim's record is untouched and still reads back
    assert rt.store.get("t1").status is JobStatus.SUBMITTED
    assert rt.store.get("t1").batch.exit_code is None


@pytest.mark.parametrize("how", HOWS)
def test_a_wrong_typed_member_makes_the_event_malformed(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp, how: str
) -> None:
    record = running(rt, batch)
    assert batch_events.handle(rt, app, poisoned(record, how)) == batch_events.MALFORMED
    assert rt.store.get("t1").status is JobStatus.SUBMITTED


@pytest.mark.parametrize("body", POISON)
def test_a_poison_body_is_malformed_never_an_exception(
    rt: ProcessRuntime, app: RecordingApp, body: str
) -> None:
    assert batch_events.handle(rt, app, body) == batch_events.MALFORMED


@pytest.mark.parametrize(
    ("account", "region"),
    [("999999999999", "us-east-1"), ("123456789012", "eu-west-1")],
)
def test_an_event_from_another_account_or_region_is_foreign_and_never_applied(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp, sent: list[tuple[str, str]],
    account: str, region: str,
) -> None:  # fmt: skip
    # Given a job submitted to account 123456789012 in us-east-1, now RUNNING
    record = running(rt, batch)
    assert batch_events.handle(rt, app, event(record, "RUNNING")) == batch_events.APPLIED
    # When a SUCCEEDED event for it arrives from another account or region
    forged = json.loads(event(record, "SUCCEEDED"))
    forged.update(account=account, region=region)
    outcome = batch_events.handle(rt, app, json.dumps(forged))
    # Then it is counted foreign, the record stays RUNNING, and no result is produced
    assert outcome == batch_events.FOREIGN
    assert rt.store.get("t1").status is JobStatus.RUNNING
    assert ("job_finished", "t1") not in sent
    assert app.sent == []


def test_aws_documented_example_event_is_read(rt: ProcessRuntime, batch: FakeBatch) -> None:
    # Given the example on AWS's "Job state change events" page
    body = (Path(__file__).parent / "fixtures" / "batch_state_change_event.json").read_text()
    # When it is parsed
    parsed = batch_events.parse(body)
    # Then poller reads the job, its status, its creation and where the event came from
    assert parsed is not None
    assert parsed.view.job_id == "4c7599ae-0a82-49aa-ba5a-4727fcce14a8"
    assert parsed.view.status is JobStatus.RUNNABLE
    assert parsed.view.created_at is not None
    assert parsed.view.created_at.year == 2022
    assert parsed.view.origin == ("123456789012", "us-east-1")
    assert parsed.tracking_tag is None


def test_with_confirmation_a_forged_end_from_the_right_account_changes_nothing(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp
) -> None:
    # Given POLLER_EVENTS_CONFIRM=terminal, and a job RUNNING on Batch and in its record
    rt.settings = settings(events_confirm="terminal")
    record = running(rt, batch)
    assert batch_events.handle(rt, app, event(record, "RUNNING")) == batch_events.APPLIED
    # When a SUCCEEDED event from the job's own account and region arrives
    outcome = batch_events.handle(rt, app, event(record, "SUCCEEDED"))
    # Then the record does not change, and the job's check is sent now to confirm it
    assert outcome == batch_events.CHECKED
    assert rt.store.get("t1").status is JobStatus.RUNNING
    assert app.sent == [("poller.check_job", ("t1", 0, 0), "t1")]
    # And that check asks DescribeJobs, which says RUNNING: the record stays RUNNING
    batch.calls.clear()
    lifecycle.check(rt, "t1", 0)
    assert batch.calls["DescribeJobs"] == 1
    assert rt.store.get("t1").status is JobStatus.RUNNING


def test_with_confirmation_ends_arriving_together_share_one_describe_call(
    rt: ProcessRuntime, batch: FakeBatch, app: RecordingApp
) -> None:
    # Given three jobs that really ended, and their events in one received batch
    rt.settings = settings(events_confirm="terminal")
    jobs = [running(rt, batch, f"t{n}") for n in range(3)]
    for job in jobs:
        batch.set_status(str(job.job_id), JobStatus.SUCCEEDED)
    queue = OneBatchQueue([event(job, "SUCCEEDED") for job in jobs])
    # When the batch is consumed, and the three checks it sends run
    assert batch_events.consume(rt, app, queue, "q") == {batch_events.CHECKED: 3}
    assert sorted(queue.deleted) == ["0", "1", "2"]
    batch.calls.clear()
    for n in range(3):
        assert isinstance(lifecycle.check(rt, f"t{n}", 0), Produce)
    # Then one coalesced DescribeJobs call confirmed all three, and each ended
    assert batch.calls["DescribeJobs"] == 1
    assert all(rt.store.get(f"t{n}").status is JobStatus.SUCCEEDED for n in range(3))


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ({"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
          "Action": "sqs:SendMessage", "Condition": {"ArnEquals": {"aws:SourceArn": "arn:r"}}},
         False),
        ({"Sid": "any", "Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage"}, True),
        ({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
          "Action": ["sqs:*"]}, True),
        ({"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
          "Action": "sqs:SendMessage"}, True),  # any rule, of any account
        ({"Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage"}, False),
        ({"Effect": "Allow", "Principal": "*", "Action": "sqs:ReceiveMessage"}, False),
    ],
)  # fmt: skip
def test_a_queue_policy_letting_others_send_is_a_problem(
    statement: dict[str, Any], problem: bool
) -> None:
    from poller.aws.events_setup import policy_problems

    found = policy_problems(json.dumps({"Statement": [statement]}))
    assert bool(found) is problem, found


def test_only_the_jobs_of_a_target_whose_events_flow_wait_for_events(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    from poller.core.schedule import next_check

    rt = replace(rt, settings=settings(events_queue_url="https://sqs.local/q"))
    record = running(rt, batch)  # us-east-1, FakeBatch's account
    west = record.model_copy(update={"aws_region": "us-west-2"})
    rt.store.fleet.note_events_flowing(60, [FAKE_TARGET])

    assert next_check(rt, record)[1] is True  # its events flow: the safety net's delay
    delay, by_events = next_check(rt, west)
    assert by_events is False and delay <= rt.settings.poll_max_delay  # polled by its policy
    unknown = record.model_copy(update={"aws_account": None})
    assert next_check(rt, unknown)[1] is False
    # A queue out of reach stops them all at once
    rt.store.fleet.note_events_stopped()
    assert next_check(rt, record)[1] is False
