"""AWS Batch state-change events (EventBridge -> SQS from the local endpoint) on real servers:
Redis, the endpoint's SQS and EventBridge, and real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import (
    EVENT_BUS,
    EVENTS_RULE,
    EVENTS_TARGET_ID,
    JOB_QUEUE,
    SLEEP_JOB_DEFINITION,
)
from celery import chain

from poller import JobHandle, submit_job
from poller.models import JobRecord, JobStatus
from poller.runtime import get_store
from poller.testing.worker import Worker
from tests.conftest import configured_for, eventually
from tests.faults.conftest import FaultStack
from tests.faults.slow_receiver import ENTERED_KEY
from tests.integration.signal_recorder import ON_POLLER_QUEUE, note_after

pytestmark = pytest.mark.integration

POLLER = [str(Path(sys.executable).parent / "poller")]


@pytest.fixture(scope="module")
def fault_batch() -> Iterator[LocalBatch]:
    """The fault stack's endpoint, publishing Batch events to its SQS queue."""
    with LocalBatch(runtime="simulated", stage_seconds=0.1, sim_seconds=1.0, events=True) as batch:
        yield batch


@pytest.fixture
def events_stack(stack: FaultStack, request: pytest.FixtureRequest) -> Iterator[FaultStack]:
    """The fault stack with an events queue of its own, the rule's target for this test: no
    event of an earlier test reaches it, late or held unacked by a stopped worker (such a
    message would stay invisible for the queue's 30 s visibility timeout)."""
    sqs = stack.batch.client("sqs")
    url = sqs.create_queue(QueueName=f"events-{request.node.name[5:70]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    stack.batch.client("events").put_targets(
        Rule=EVENTS_RULE,
        EventBusName=EVENT_BUS,
        Targets=[{"Id": EVENTS_TARGET_ID, "Arn": arn["QueueArn"]}],
    )
    stack.batch.set_faults(event_duplicate=0.0, event_drop=0.0, event_delay=0.0)
    stack.env["POLLER_EVENTS_QUEUE_URL"] = url
    stack.env["POLLER_EVENTS_POLL_MAX_DELAY"] = "6"  # below the stack's visibility timeout (8)
    with configured_for(stack.env):
        yield stack


def events_queue(stack: FaultStack) -> str:
    return stack.env["POLLER_EVENTS_QUEUE_URL"]


def history_ranks_never_go_down(record: JobRecord) -> bool:
    ranks = [t.status.rank for t in record.history]
    return ranks == sorted(ranks)


def queue_counts(stack: FaultStack) -> dict[str, str]:
    return stack.batch.client("sqs").get_queue_attributes(
        QueueUrl=events_queue(stack),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]


def wait_drained(stack: FaultStack, timeout: float = 30) -> None:
    """Wait until the events queue holds no message, visible or in flight; if it still does,
    fail with what it holds, the events counted and what the workers logged."""
    try:
        eventually(lambda: all(int(v) == 0 for v in queue_counts(stack).values()), timeout, 0.5)
    except AssertionError:
        logs = "\n".join(f"--- {w.node_name}:\n{w.log_tail(60)}" for w in stack.workers)
        counts = get_store().fleet.event_counts()
        raise AssertionError(
            f"events queue not drained in {timeout}s: {queue_counts(stack)}; counted {counts}\n"
            f"{logs}"
        ) from None


def test_job_ends_are_applied_from_their_events_without_describing_them(
    events_stack: FaultStack, report: Any
) -> None:
    # Given checks that would run only after two minutes (visibility timeout above that), and
    # two events queues (one per region, say), the events arriving in the second
    other = events_stack.batch.client("sqs").create_queue(QueueName="events-other-region")
    slow_polls = {
        "POLLER_VISIBILITY_TIMEOUT": "600", "POLLER_POLL_INITIAL_DELAY": "120",
        "POLLER_POLL_MAX_DELAY": "120", "POLLER_EVENTS_POLL_MAX_DELAY": "300",
        "POLLER_EVENTS_QUEUE_URL": f"{other['QueueUrl']},{events_queue(events_stack)}",
    }  # fmt: skip
    env = {**events_stack.env, **slow_polls}
    with configured_for(env):
        events_stack.start_worker(**slow_polls)
        events_stack.batch.reset_stats()
        # When 10 jobs of 1-3 s run, one of them in a chain
        ids = events_stack.submit(10, "evented", seconds=(1.0, 3.0))
        params = {"sim_seconds": "1.5", "seconds": "1.5"}
        chained = chain(
            submit_job.s("evented-chain", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=params),
            note_after.s().set(**ON_POLLER_QUEUE),
        ).delay()
        results = [submit_job.AsyncResult(i).get(timeout=30) for i in ids]
        after = chained.get(timeout=30)
    # Then every Celery result resolved from the job's events, long before any check ran
    assert [r["status"] for r in results] == ["SUCCEEDED"] * 10
    # And the chain's next step ran after its job, as soon as the job's end event came
    assert after["status"] == "SUCCEEDED"
    calls = events_stack.batch.stats()["calls"]
    counts = get_store().fleet.event_counts()
    report("events only", jobs=10, describe_jobs=calls.get("DescribeJobs", 0), events=counts)
    # (a submission delivered again while the first was calling SubmitJob, as under load, looks
    # for the job the first created: one ListJobs and its DescribeJobs, never a status check)
    assert calls.get("DescribeJobs", 0) <= calls.get("ListJobs", 0)
    assert counts.get("applied", 0) >= 10 * 4  # PENDING .. SUCCEEDED, at least
    assert all(events_stack.finished_signals()[i] == 1 for i in ids)


def test_duplicated_delayed_and_dropped_events_end_every_job_once(
    events_stack: FaultStack, report: Any
) -> None:
    # Given 30 % of events duplicated, 30 % late (out of order), 10 % never published
    events_stack.batch.set_faults(
        event_duplicate=0.3, event_delay=0.3, event_delay_seconds=3.0, event_drop=0.1, seed=7
    )
    events_stack.start_worker()
    # When 30 jobs run
    ids = events_stack.submit(30, "faulty-events", seconds=(1.0, 4.0))
    records = events_stack.wait_all_terminal(ids, timeout=120)
    # Then every job ended SUCCEEDED (the dropped ends caught by polling), with one
    # job_finished each, and no record's history goes backwards
    assert {r.status for r in records} == {JobStatus.SUCCEEDED}
    finished = events_stack.wait_finished_signals(ids)
    assert all(finished[i] == 1 for i in ids)
    assert events_stack.signals_sent_again() == 0
    assert all(history_ranks_never_go_down(r) for r in records)
    wait_drained(events_stack)
    published = events_stack.batch.stats()["events"]
    counts = get_store().fleet.event_counts()
    report("faulty events", jobs=30, published=published, handled=counts)
    assert published["duplicated"] > 0 and published["delayed"] > 0 and published["dropped"] > 0
    assert counts.get("duplicate", 0) > 0 and counts.get("applied", 0) > 0


def test_events_a_killed_worker_held_come_back_and_are_applied_once(
    events_stack: FaultStack, report: Any
) -> None:
    # Given a worker whose event consumer is stuck in a receiver, holding received messages,
    # and an events queue that redelivers after 3 s
    sqs = events_stack.batch.client("sqs")
    url = events_queue(events_stack)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "3"})
    try:
        stuck = Worker(events_stack.env, includes=["tests.faults.slow_receiver"], concurrency=4)
        events_stack.workers.append(stuck)
        stuck.start()
        ids = events_stack.submit(5, "slow", seconds=(2.0, 3.0))
        store = get_store()
        eventually(lambda: store.redis.get(store.key(ENTERED_KEY)), timeout=30, interval=0.1)
        # When that worker is killed -9 and another takes over
        stuck.kill()
        events_stack.start_worker()
        records = events_stack.wait_all_terminal(ids, timeout=90)
        wait_drained(events_stack)
    finally:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "30"})
    # Then every job ended once, nothing went backwards, and every event published was handled
    published = events_stack.batch.stats()["events"]["published"]
    counts = get_store().fleet.event_counts()
    report("killed consumer", jobs=5, published=published, handled=counts)
    assert {r.status for r in records} == {JobStatus.SUCCEEDED}
    assert all(events_stack.finished_signals()[i] <= 1 for i in ids)
    assert all(history_ranks_never_go_down(r) for r in records)
    assert sum(counts.values()) >= published


def test_malformed_and_unknown_events_are_counted_and_deleted(events_stack: FaultStack) -> None:
    # Given a worker consuming the queue
    worker = events_stack.start_worker()
    sqs = events_stack.batch.client("sqs")
    url = events_queue(events_stack)
    unknown = {
        "version": "0", "id": "x", "detail-type": "Batch Job State Change", "source": "aws.batch",
        "account": "123456789012", "time": "2026-11-26T13:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"jobId": "not-ours", "status": "RUNNING", "tags": {}},
    }  # fmt: skip
    # When malformed bodies and an event of a job poller does not track arrive
    for body in ["not json", json.dumps({"source": "aws.ec2"}), json.dumps(unknown)]:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    # Then they are counted, deleted, and the worker lives on
    eventually(
        lambda: get_store().fleet.event_counts() == {"malformed": 2, "unknown_job": 1}, timeout=30
    )
    wait_drained(events_stack)
    assert worker.is_running, worker.log_tail()
    assert "Batch event ignored" in worker.log.read_text()


def test_an_unreachable_queue_leaves_polling_in_charge(events_stack: FaultStack) -> None:
    # Given a worker whose events queue does not exist
    missing = events_queue(events_stack).rsplit("/", 1)[0] + "/no-such-queue"
    worker = events_stack.start_worker(POLLER_EVENTS_QUEUE_URL=missing)
    # When jobs run
    ids = events_stack.submit(5, "no-events", seconds=(1.0, 2.0))
    records = events_stack.wait_all_terminal(ids, timeout=60)
    # Then polling ended them, the worker said once why events do not come, and lives on (its
    # events process may say it after jobs of 1-2 s ended, on a busy machine)
    assert {r.status for r in records} == {JobStatus.SUCCEEDED}
    eventually(lambda: "polling takes over" in worker.log.read_text() or None)
    assert worker.log.read_text().count("polling takes over") == 1
    assert worker.is_running, worker.log_tail()
    assert not get_store().fleet.events_flowing()


def test_events_setup_is_idempotent(events_stack: FaultStack) -> None:
    env = {**os.environ, **events_stack.batch.environ()}
    command = [*POLLER, "events", "setup", "--queue-name", "setup-test"]
    # When `poller events setup` runs twice
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    # Then the first created the queues, rule and target and printed the URL to set
    assert "create SQS queue setup-test" in first.stderr
    assert "create EventBridge rule" in first.stderr
    url = first.stdout.strip().removeprefix("POLLER_EVENTS_QUEUE_URL=")
    assert url.endswith("/setup-test")
    # And the second changed nothing
    actions = [line for line in second.stderr.splitlines() if line and "Set this" not in line]
    assert actions and all(line.startswith("unchanged") for line in actions), second.stderr
    assert second.stdout == first.stdout
    # And the rule targets the queue, which lets EventBridge send from that rule only
    events = events_stack.batch.client("events")
    (target,) = events.list_targets_by_rule(Rule="poller-batch-job-state-change")["Targets"]
    sqs = events_stack.batch.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert target["Arn"] == attributes["QueueArn"]
    policy = json.loads(attributes["Policy"])["Statement"][0]
    assert policy["Principal"] == {"Service": "events.amazonaws.com"}
    assert policy["Condition"]["ArnEquals"]["aws:SourceArn"].endswith(
        "rule/poller-batch-job-state-change"
    )
    assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"].endswith("setup-test-dlq")


def test_events_setup_sets_up_in_the_region_it_is_given(events_stack: FaultStack) -> None:
    env = {**os.environ, **events_stack.batch.environ()}
    command = [*POLLER, "events", "setup", "--queue-name", "west-test", "--region", "us-west-2"]
    # When `poller events setup --region us-west-2` runs
    subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    # Then the queue and the rule are in that region, not in the default one
    west = events_stack.batch.client("sqs", region="us-west-2")
    arn = west.get_queue_attributes(
        QueueUrl=west.get_queue_url(QueueName="west-test")["QueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert arn.startswith("arn:aws:sqs:us-west-2:")
    rule = events_stack.batch.client("events", region="us-west-2").describe_rule(
        Name="poller-batch-job-state-change"
    )
    assert ":us-west-2:" in rule["Arn"]
    home = events_stack.batch.client("sqs").list_queues(QueueNamePrefix="west-test")
    assert not home.get("QueueUrls")
    # And an unknown profile is refused naming the option
    refused = subprocess.run(
        [*POLLER, "events", "setup", "--profile", "nope"], env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "--profile" in refused.stderr


def send_bodies(stack: FaultStack, bodies: list[str]) -> None:
    """Put message bodies straight into the events queue, as anyone allowed to send could."""
    stack.batch.client("sqs").send_message_batch(
        QueueUrl=events_queue(stack),
        Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies)],
    )


def running_job(stack: FaultStack, name: str) -> JobRecord:
    """A job that runs for a minute, once its record says RUNNING."""
    (tracking_id,) = stack.submit(1, name, seconds=(60.0, 60.0))

    def running() -> JobRecord | None:
        record = get_store().get(tracking_id)
        return record if record.status is JobStatus.RUNNING else None

    return eventually(running, timeout=30, interval=0.3)


def test_forged_job_ends_never_end_a_running_job(events_stack: FaultStack) -> None:
    from tests.test_batch_events import event

    # Given a worker consuming events, and a job RUNNING on Batch
    events_stack.start_worker()
    job = running_job(events_stack, "forged")
    # When a SUCCEEDED event for it arrives from another account, and one from another region
    forged = [json.loads(event(job, "SUCCEEDED")) for _ in range(2)]
    forged[0]["account"], forged[1]["region"] = "999999999999", "eu-west-1"
    send_bodies(events_stack, [json.dumps(body) for body in forged])
    wait_drained(events_stack)
    # Then both are counted foreign, and the record is still RUNNING
    # (counted just after the messages are deleted)
    eventually(lambda: get_store().fleet.event_counts().get("foreign", 0) == 2, timeout=10)
    assert get_store().get(job.tracking_id).status is JobStatus.RUNNING


def test_with_confirmation_a_forged_end_from_the_jobs_own_account_changes_nothing(
    events_stack: FaultStack,
) -> None:
    from tests.test_batch_events import event

    # Given a worker confirming job ends (POLLER_EVENTS_CONFIRM=terminal), a job RUNNING
    events_stack.start_worker(POLLER_EVENTS_CONFIRM="terminal")
    job = running_job(events_stack, "forged-right")
    # When a SUCCEEDED event for it arrives from its own account and region
    right = json.loads(event(job, "SUCCEEDED"))
    right.update(account=job.aws_account, region=job.aws_region)
    checks_before = get_store().get(job.tracking_id).schedule.checks
    send_bodies(events_stack, [json.dumps(right)])
    wait_drained(events_stack)
    # Then the job's check ran at once, DescribeJobs said RUNNING, and the record stays RUNNING
    eventually(lambda: get_store().fleet.event_counts().get("checked", 0) == 1, timeout=10)
    eventually(lambda: get_store().get(job.tracking_id).schedule.checks > checks_before, timeout=20)
    assert get_store().get(job.tracking_id).status is JobStatus.RUNNING


def test_a_batch_of_poison_messages_drains_and_the_next_job_succeeds(
    events_stack: FaultStack,
) -> None:
    from tests.test_batch_events import POISON, poisoned

    # Given a worker consuming events, and a job RUNNING on Batch
    events_stack.start_worker()
    victim = running_job(events_stack, "victim")
    # When ten poison messages arrive in one batch, five of them the victim's own events
    # with one wrong member each
    hows = ["exit code as text", "created at 1e30", "unknown status", "region with a newline"]
    # (SQS itself refuses a body that is not Unicode text: that one is for the unit tests)
    bodies = [poisoned(victim, how) for how in hows] + POISON[:3]
    bodies += ['{"source": "aws.batch", "detail": []}', "[]", '{"detail": {"exitCode": 1e400}}']
    send_bodies(events_stack, bodies)
    # Then the queue drains, each counted malformed, and the victim's record still reads
    wait_drained(events_stack)
    eventually(lambda: get_store().fleet.event_counts().get("malformed", 0) == 10, timeout=10)
    assert get_store().get(victim.tracking_id).status is JobStatus.RUNNING
    # And the next job succeeds
    (after,) = events_stack.submit(1, "after-poison", seconds=(1.0, 1.0))
    assert submit_job.AsyncResult(after).get(timeout=60)["status"] == "SUCCEEDED"


def test_a_queue_anyone_may_send_to_is_named_by_check_and_dead_letters_are_counted(
    events_stack: FaultStack,
) -> None:
    from prometheus_client import generate_latest

    from poller.monitoring.exporter import registry_for
    from poller.settings import Settings

    env = {**os.environ, **events_stack.batch.environ(), **events_stack.env}
    setup = [*POLLER, "events", "setup", "--queue-name", "guarded"]
    url = subprocess.run(setup, env=env, capture_output=True, text=True, check=True).stdout
    url = url.strip().removeprefix("POLLER_EVENTS_QUEUE_URL=")
    check_env = {**env, "POLLER_EVENTS_QUEUE_URL": url}
    check = [*POLLER, "check"]
    # Given the queue `poller events setup` made: `poller check` finds nothing to say of it
    first = subprocess.run(check, env=check_env, capture_output=True, text=True)
    events_line = next(line for line in first.stdout.splitlines() if line.startswith("events"))
    assert "WARNING" not in events_line, first.stdout  # the report is stdout
    # When its policy also lets anyone send
    sqs = events_stack.batch.client("sqs")
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
                        ["Attributes"]["Policy"])  # fmt: skip
    policy["Statement"].append(
        {"Sid": "open", "Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage",
         "Resource": "*"}
    )  # fmt: skip
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    # Then `poller check` warns, naming the statement
    second = subprocess.run(check, env=check_env, capture_output=True, text=True)
    assert "WARNING" in second.stdout and "open lets" in second.stdout, second.stdout
    # And a message in its dead-letter queue shows in the exporter's metrics
    dlq = sqs.get_queue_url(QueueName="guarded-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody="{}")
    settings = Settings(events_queue_url=url)
    text = generate_latest(registry_for(get_store(), settings)).decode()
    assert 'poller_events_dead_letters{queue="guarded"} 1.0' in text, text


def test_a_job_in_a_region_whose_events_reach_no_queue_is_polled(
    events_stack: FaultStack, report: Any
) -> None:
    # Given events flowing from us-east-1 (its rule feeds the queue), and safety-net checks of
    # carried jobs only every five minutes
    slow_net = {"POLLER_VISIBILITY_TIMEOUT": "600", "POLLER_EVENTS_POLL_MAX_DELAY": "300"}
    with configured_for({**events_stack.env, **slow_net}):
        events_stack.start_worker(**slow_net)
        east = events_stack.submit(1, "east", seconds=(1.0, 1.0))[0]
        submit_job.AsyncResult(east).get(timeout=30)
        assert get_store().fleet.events_flowing("123456789012", "us-east-1")
        # When a 3-second job runs in us-west-2, whose events reach no queue poller reads
        started = time.monotonic()
        params = {"sim_seconds": "3", "seconds": "3"}
        west = submit_job.delay(
            "west", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=params, aws_region="us-west-2"
        )
        # Then its checks follow its poll policy, and it ends within 40 s (not after 300)
        result = west.get(timeout=40)
        took = time.monotonic() - started
    report("job outside the events' region", seconds=f"{took:.1f}")
    assert result["status"] == "SUCCEEDED"
    assert not JobHandle(west.id).record.schedule.awaits_events
    assert not get_store().fleet.events_flowing("123456789012", "us-west-2")
