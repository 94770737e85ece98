"""Batch Job State Change events: published through EventBridge to SQS, as AWS delivers them.

Every test talks to a `LocalBatch(events=True)` child process through boto3 and reads the events
from its SQS queue, as a consumer on AWS would. Waiting is done by polling with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from aws_batch_emulator import FaultConfig, LocalBatch
from aws_batch_emulator.cli import main as cli
from aws_batch_emulator.resources import (
    ACCOUNT_ID,
    EVENT_BUS,
    EVENTS_PATTERN,
    EVENTS_QUEUE,
    EVENTS_RULE,
    JOB_QUEUE,
    REGION,
    SLEEP_JOB_DEFINITION,
)
from waiting import eventually

pytestmark = pytest.mark.integration

LIFECYCLE = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"]
AFTER_SUBMITTED = ["PENDING", "RUNNABLE", "STARTING", "RUNNING"]
DONE = {"SUCCEEDED", "FAILED"}
EVENT_KEYS = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
]
ISO_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
NO_EVENT_FAULTS = {
    "event_duplicate": 0.0,
    "event_drop": 0.0,
    "event_delay": 0.0,
    "event_delay_seconds": 5.0,
}


# --- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated() -> Iterator[LocalBatch]:
    """Simulated runtime publishing events; stages long enough to watch each with DescribeJobs."""
    with LocalBatch(runtime="simulated", stage_seconds=0.3, sim_seconds=0.4, events=True) as server:
        yield server


@pytest.fixture(scope="module")
def process() -> Iterator[LocalBatch]:
    """Process runtime publishing events."""
    with LocalBatch(runtime="process", stage_seconds=0.3, events=True) as server:
        yield server


@pytest.fixture
def faulty(simulated: LocalBatch) -> Iterator[LocalBatch]:
    """The simulated server with no event faults and zeroed counters, restored after the test."""
    simulated.set_faults(**FaultConfig().to_json())
    simulated.reset_stats()
    yield simulated
    simulated.set_faults(**FaultConfig().to_json())


# --- helpers -------------------------------------------------------------------------------


class Inbox:
    """A server's events queue read as a consumer does: every message received is deleted and
    kept here, filed by job ARN, so no test swallows another test's events."""

    _inboxes: dict[str, Inbox] = {}

    def __init__(self, server: LocalBatch) -> None:
        self._sqs = server.client("sqs")
        self._url = server.events_queue_url
        self.by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)

    @classmethod
    def of(cls, server: LocalBatch) -> Inbox:
        """The one inbox of a server (a queue's messages are read once)."""
        return cls._inboxes.setdefault(server.endpoint_url, cls(server))

    def read(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Receive what the queue holds now (up to 10 messages), file it and return it."""
        messages = self._sqs.receive_message(
            QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        if messages:
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ],
            )
        events = [json.loads(message["Body"]) for message in messages]
        for event in events:
            self.by_job[event["resources"][0]].append(event)
        return events

    def until(
        self, arn: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """The events of job `arn` once `done` holds for them."""

        def probe() -> list[dict[str, Any]] | None:
            self.read(wait_seconds=1)
            events = self.by_job[arn]
            return list(events) if done(events) else None

        return eventually(probe, timeout)

    def until_final(self, arn: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The events of job `arn` once its SUCCEEDED or FAILED event arrived."""
        return self.until(arn, lambda events: any(status(e) in DONE for e in events), timeout)


def status(event: dict[str, Any]) -> str:
    value: str = event["detail"]["status"]
    return value


def statuses(events: list[dict[str, Any]]) -> list[str]:
    return [status(event) for event in events]


def describe(client: Any, job_id: str) -> dict[str, Any]:
    jobs = client.describe_jobs(jobs=[job_id])["jobs"]
    assert len(jobs) == 1, f"job {job_id} not found"
    job: dict[str, Any] = jobs[0]
    return job


def submit(client: Any, name: str, **kwargs: Any) -> dict[str, Any]:
    """SubmitJob of the sleep definition; the answer (jobId, jobArn, jobName)."""
    answer: dict[str, Any] = client.submit_job(
        jobName=name, jobQueue=JOB_QUEUE, jobDefinition=SLEEP_JOB_DEFINITION, **kwargs
    )
    return answer


def sleep_parameters(seconds: float, exit_code: int = 0) -> dict[str, str]:
    """Parameters for either runtime: the process runs `sleep`, the simulation uses sim_*."""
    return {
        "seconds": str(seconds),
        "exit_code": str(exit_code),
        "sim_seconds": str(seconds),
        "sim_exit_code": str(exit_code),
    }


def wait_done(client: Any, job_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        job = describe(client, job_id)
        return job if job["status"] in DONE else None

    return eventually(probe)


def watch_until_done(client: Any, job_id: str) -> dict[str, dict[str, Any]]:
    """The first DescribeJobs item seen in each status of a job, described until it ends."""
    described: dict[str, dict[str, Any]] = {}

    def probe() -> dict[str, dict[str, Any]] | None:
        item = describe(client, job_id)
        described.setdefault(item["status"], item)
        return described if item["status"] in DONE else None

    return eventually(probe, interval=0.01)


# --- resources -----------------------------------------------------------------------------


def test_rule_pattern_target_and_queue_exist_at_start(simulated: LocalBatch) -> None:
    # Given a server started with events
    rules = simulated.client("events")
    sqs = simulated.client("sqs")

    # When its EventBridge rule, the rule's targets and its SQS queue are looked up
    rule = rules.describe_rule(Name=EVENTS_RULE, EventBusName=EVENT_BUS)
    targets = rules.list_targets_by_rule(Rule=EVENTS_RULE, EventBusName=EVENT_BUS)["Targets"]
    queue_url = sqs.get_queue_url(QueueName=EVENTS_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    # Then the rule matches every Batch job state change and sends it to the queue
    assert rule["State"] == "ENABLED"
    assert json.loads(rule["EventPattern"]) == EVENTS_PATTERN
    assert EVENTS_PATTERN == {"source": ["aws.batch"], "detail-type": ["Batch Job State Change"]}
    assert [target["Arn"] for target in targets] == [queue_arn]
    assert queue_arn == f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{EVENTS_QUEUE}"
    assert simulated.events_queue_url == queue_url
    # And SQS and EventBridge are served by a process of their own, on another port
    env = simulated.environ()
    assert (
        env["AWS_ENDPOINT_URL_SQS"] == env["AWS_ENDPOINT_URL_EVENTBRIDGE"] == simulated.events_url
    )
    assert simulated.events_url not in ("", simulated.endpoint_url)
    assert env["AWS_ENDPOINT_URL_BATCH"] == simulated.endpoint_url
    assert simulated.stats()["events"] == {
        "published": 0,
        "duplicated": 0,
        "dropped": 0,
        "delayed": 0,
        "failed": 0,
    }


def test_a_server_without_events_creates_no_queue_and_no_rule() -> None:
    # Given a server started without events
    with LocalBatch(runtime="simulated", stage_seconds=0.05, sim_seconds=0.05) as server:
        client = server.client()

        # When a job runs to its end
        job = submit(client, "no-events", parameters=sleep_parameters(0.05))
        wait_done(client, job["jobId"])

        # Then there is no events queue, no rule, no events counter and no SQS endpoint variable
        assert "QueueUrls" not in server.client("sqs").list_queues()
        assert server.client("events").list_rules()["Rules"] == []
        assert "events" not in server.stats()
        assert server.events_queue_url == ""
        assert "AWS_ENDPOINT_URL_SQS" not in server.environ()


# --- the events of a job -------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["simulated", "process"])
def test_a_job_publishes_one_event_per_transition_after_submitted_as_aws_does(
    runtime: str, request: pytest.FixtureRequest
) -> None:
    # Given a server publishing events, and the job's DescribeJobs items watched by status
    server: LocalBatch = request.getfixturevalue(runtime)
    client = server.client()
    inbox = Inbox.of(server)
    job = submit(client, f"events-{runtime}", parameters=sleep_parameters(0.4))

    # When the job runs to its end, watched with nothing but DescribeJobs (one call a turn, so
    # no stage of 0.3 s passes unseen), and then its events are read from the queue
    described = watch_until_done(client, job["jobId"])
    events = inbox.until_final(job["jobArn"])

    # Then there is one event per status after SUBMITTED, in order, in AWS's shape
    assert statuses(events) == [*AFTER_SUBMITTED, "SUCCEEDED"]
    assert len({event["id"] for event in events}) == len(events)
    for event in events:
        assert list(event) == EVENT_KEYS
        assert uuid.UUID(event["id"])
        assert event["version"] == "0"
        assert event["detail-type"] == "Batch Job State Change"
        assert event["source"] == "aws.batch"
        assert (event["account"], event["region"]) == (ACCOUNT_ID, REGION)
        assert ISO_SECONDS.match(event["time"]), event["time"]
        assert event["resources"] == [job["jobArn"]]
        # And its detail is what DescribeJobs answered while the job was in that status
        assert status(event) in described, f"{status(event)} never described: {list(described)}"
        assert event["detail"] == described[status(event)]
    detail = events[-1]["detail"]
    assert (detail["jobId"], detail["jobName"]) == (job["jobId"], f"events-{runtime}")
    assert detail["jobQueue"].endswith(f":job-queue/{JOB_QUEUE}")
    assert detail["container"]["exitCode"] == 0


def test_each_event_is_published_once_describe_jobs_shows_its_status(
    simulated: LocalBatch,
) -> None:
    # Given a job that fails and is retried once: RUNNING goes back to RUNNABLE
    client = simulated.client()
    inbox = Inbox.of(simulated)
    job = submit(
        client,
        "events-retried",
        parameters=sleep_parameters(0.3, exit_code=3),
        retryStrategy={"attempts": 2},
    )
    expected = [*AFTER_SUBMITTED, "RUNNABLE", "STARTING", "RUNNING", "FAILED"]
    shown_on_arrival: list[str] = []

    # When each event is followed at once by DescribeJobs of its job
    def probe() -> list[dict[str, Any]] | None:
        for event in inbox.read():
            if event["resources"] == [job["jobArn"]]:
                shown_on_arrival.append(describe(client, job["jobId"])["status"])
        events = inbox.by_job[job["jobArn"]]
        return events if any(status(e) in DONE for e in events) else None

    events = eventually(probe)

    # Then every transition of both attempts was published, FAILED last
    assert statuses(events) == expected
    assert [len(event["detail"]["attempts"]) for event in events] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert events[-1]["detail"]["container"]["exitCode"] == 3
    # And when the n-th event arrived, DescribeJobs showed its status or a later one
    assert len(shown_on_arrival) == len(expected)
    for position, shown in enumerate(shown_on_arrival):
        assert shown in expected[position:], (expected[position], shown)


def test_array_children_and_their_parent_publish_their_transitions(
    simulated: LocalBatch,
) -> None:
    # Given an array job of two children
    client = simulated.client()
    inbox = Inbox.of(simulated)
    parent = submit(
        client, "events-array", parameters=sleep_parameters(0.2), arrayProperties={"size": 2}
    )
    child_arns = [f"{parent['jobArn']}:{index}" for index in range(2)]

    # When every child and the parent have ended
    children = [inbox.until_final(arn) for arn in child_arns]
    parent_events = inbox.until_final(parent["jobArn"])

    # Then each child published its own transitions, with its index
    for index, events in enumerate(children):
        assert statuses(events) == [*AFTER_SUBMITTED, "SUCCEEDED"]
        assert {event["detail"]["jobId"] for event in events} == {f"{parent['jobId']}:{index}"}
        assert {event["detail"]["arrayProperties"]["index"] for event in events} == {index}
        assert all(event["resources"] == [child_arns[index]] for event in events)
    # And the parent published the statuses derived from them, with their summary
    assert statuses(parent_events) == ["PENDING", "RUNNING", "SUCCEEDED"]
    final = parent_events[-1]["detail"]
    assert final["arrayProperties"]["size"] == 2
    assert final["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 2
    assert final == describe(client, parent["jobId"])


# --- event faults --------------------------------------------------------------------------


def test_event_drop_publishes_none_of_a_jobs_events(faulty: LocalBatch) -> None:
    # Given every event dropped
    faulty.set_faults(event_drop=1.0)
    client = faulty.client()
    inbox = Inbox.of(faulty)

    # When a job runs to its end
    job = submit(client, "events-dropped", parameters=sleep_parameters(0.1))
    wait_done(client, job["jobId"])

    # Then its five events were counted as dropped, and none reached the queue
    eventually(lambda: faulty.stats()["events"]["dropped"] == 5 or None)
    assert faulty.stats()["events"] == {
        "published": 0,
        "duplicated": 0,
        "dropped": 5,
        "delayed": 0,
        "failed": 0,
    }
    # (each event is counted when its fate is drawn, before it would have been delivered)
    inbox.read()
    assert inbox.by_job[job["jobArn"]] == []


def test_event_duplicate_publishes_each_event_twice_with_one_id(faulty: LocalBatch) -> None:
    # Given every event duplicated
    faulty.set_faults(event_duplicate=1.0)
    client = faulty.client()
    inbox = Inbox.of(faulty)

    # When a job runs to its end and ten messages arrived
    job = submit(client, "events-duplicated", parameters=sleep_parameters(0.1))
    events = inbox.until(job["jobArn"], lambda events: len(events) >= 10)

    # Then each transition arrived twice, both copies the same event
    assert statuses(events) == [s for s in [*AFTER_SUBMITTED, "SUCCEEDED"] for _ in range(2)]
    assert all(first == second for first, second in zip(events[::2], events[1::2], strict=True))
    assert len({event["id"] for event in events}) == 5
    assert faulty.stats()["events"] == {
        "published": 10,
        "duplicated": 5,
        "dropped": 0,
        "delayed": 0,
        "failed": 0,
    }


def test_event_delay_publishes_late_and_out_of_order(faulty: LocalBatch) -> None:
    # Given every event delayed by up to 2 s; seed 23 holds PENDING back ~1.9 s and
    # RUNNABLE ~0.2 s
    faulty.set_faults(event_delay=1.0, event_delay_seconds=2.0, seed=23)
    client = faulty.client()
    inbox = Inbox.of(faulty)
    shown_on_arrival: dict[str, str] = {}

    # When a job runs to its end and its five events arrived
    job = submit(client, "events-delayed", parameters=sleep_parameters(0.3))

    def probe() -> list[dict[str, Any]] | None:
        for event in inbox.read():
            if event["resources"] == [job["jobArn"]]:
                shown_on_arrival[status(event)] = describe(client, job["jobId"])["status"]
        events = inbox.by_job[job["jobArn"]]
        return events if len(events) == 5 else None

    events = eventually(probe)

    # Then all five arrived, counted as delayed, PENDING after RUNNABLE and after the job moved on
    assert sorted(statuses(events), key=LIFECYCLE.index) == [*AFTER_SUBMITTED, "SUCCEEDED"]
    assert statuses(events) != [*AFTER_SUBMITTED, "SUCCEEDED"]
    assert statuses(events).index("RUNNABLE") < statuses(events).index("PENDING")
    assert LIFECYCLE.index(shown_on_arrival["PENDING"]) > LIFECYCLE.index("RUNNABLE")
    eventually(lambda: faulty.stats()["events"]["published"] == 5 or None)
    assert faulty.stats()["events"]["delayed"] == 5


def test_event_counters_reset_and_event_faults_are_validated(faulty: LocalBatch) -> None:
    # Given counted events
    client = faulty.client()
    job = submit(client, "events-counted", parameters=sleep_parameters(0.05))
    Inbox.of(faulty).until_final(job["jobArn"])
    assert faulty.stats()["events"]["published"] == 5

    # When the counters are reset and bad event faults are asked for
    faulty.reset_stats()
    with pytest.raises(ValueError, match="event_drop"):
        faulty.set_faults(event_drop=1.5)
    with pytest.raises(ValueError, match="event_delay_seconds"):
        faulty.set_faults(event_delay_seconds=-1)

    # Then the counters are zero and the event faults in force are unchanged
    assert set(faulty.stats()["events"].values()) == {0}
    assert {name: faulty.faults().to_json()[name] for name in NO_EVENT_FAULTS} == NO_EVENT_FAULTS


def test_cli_takes_events_and_event_faults_from_local_batch() -> None:
    # Given a launcher with events and event faults
    launcher = LocalBatch(
        events=True, faults=FaultConfig(event_duplicate=0.5, event_delay=0.25, event_drop=0.1)
    )

    # When the command line it runs is parsed by the CLI (the same for `poller local-batch`)
    arguments = launcher.command()[3:]  # after `python -m aws_batch_emulator`
    params = cli.make_context("aws-batch-emulator", arguments).params

    # Then the CLI gets the flag and every event fault
    assert params["events"] is True
    assert (params["event_duplicate"], params["event_drop"], params["event_delay"]) == (
        0.5,
        0.1,
        0.25,
    )
    assert params["event_delay_seconds"] == 5.0


def test_the_events_process_ends_with_its_server_however_that_ends() -> None:
    # Given two servers with events, each with SQS and EventBridge in a process of its own
    for ending in ("stop", "killed"):
        server = LocalBatch(runtime="simulated", events=True).start()
        events_url = server.events_url
        assert server.client("sqs").list_queues()["QueueUrls"]
        # When the server is stopped, or killed without a chance to stop its child
        if ending == "killed":
            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)
        server.stop()
        # Then its events process stops listening too (it watches its stdin, a pipe from it)
        deadline = time.monotonic() + 10
        while _listening(events_url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _listening(events_url), ending


def _listening(url: str) -> bool:
    address = urlsplit(url)
    try:
        socket.create_connection((address.hostname, address.port), timeout=1).close()
    except OSError:
        return False
    return True
