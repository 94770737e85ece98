"""AWS Batch's own failures, asked for with job parameters, in both runtimes.

Host loss on the Spot queue, Fargate Spot interruption, image pull failure, a job stuck in
RUNNABLE, running out of memory, and retryStrategy retrying them: each is checked through boto3
against a `LocalBatch` child process (with events on, to see every status a job went through),
with the exact strings AWS gives. Waiting is done by polling with a deadline.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import (
    JOB_QUEUE,
    LOG_GROUP,
    SLEEP_JOB_DEFINITION,
    SPOT_COMPUTE_ENVIRONMENT,
    SPOT_JOB_QUEUE,
)
from botocore.exceptions import ClientError
from waiting import eventually

pytestmark = pytest.mark.integration

DONE = {"SUCCEEDED", "FAILED"}
ESSENTIAL_EXITED = "Essential container in task exited"
HOST_TERMINATED = re.compile(r"^Host EC2 \(instance i-[0-9a-f]{17}\) terminated\.$")
SPOT_INTERRUPTED = "Your Spot Task was interrupted."
CANNOT_PULL = (
    "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
    "failed to resolve ref docker.io/local/sh: not found"
)
OUT_OF_MEMORY = "OutOfMemoryError: Container killed due to memory usage"
MISCONFIGURATION = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) "
    "is higher than that can be met by the CE(s) attached to the job queue."
)


@pytest.fixture(scope="module", params=["simulated", "process"])
def batch(request: pytest.FixtureRequest) -> Iterator[LocalBatch]:
    """Each runtime, with short stages, jobs of 1 s (sim_seconds, or poller-sleep's `seconds`
    default) and events, to see every status a job reached."""
    with LocalBatch(
        runtime=request.param, concurrency=8, stage_seconds=0.05, sim_seconds=1.0, events=True
    ) as server:
        yield server


# --- helpers -------------------------------------------------------------------------------


_EVENTS: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))


def statuses_of(server: LocalBatch, job_arn: str) -> list[str]:
    """Every status job `job_arn` was reported in (its events), once it is SUCCEEDED or FAILED."""
    sqs, filed = server.client("sqs"), _EVENTS[server.endpoint_url]

    def probe() -> list[str] | None:
        messages = sqs.receive_message(
            QueueUrl=server.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        for message in messages:
            event = json.loads(message["Body"])
            filed[event["resources"][0]].append(event["detail"])
            sqs.delete_message(
                QueueUrl=server.events_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        seen = [detail["status"] for detail in filed[job_arn]]
        return seen if DONE & set(seen) else None

    return eventually(probe)


def runnable_reasons(server: LocalBatch, job_arn: str) -> list[str | None]:
    """statusReason of each RUNNABLE change of a finished job's events."""
    statuses_of(server, job_arn)
    details = _EVENTS[server.endpoint_url][job_arn]
    return [d.get("statusReason") for d in details if d["status"] == "RUNNABLE"]


def submit(
    server: LocalBatch, parameters: dict[str, str], queue: str = JOB_QUEUE, **kwargs: Any
) -> tuple[str, str]:
    """(job id, job ARN) of a poller-sleep job."""
    answer = server.client().submit_job(
        jobName=f"failure-{uuid.uuid4().hex[:8]}",
        jobQueue=queue,
        jobDefinition=SLEEP_JOB_DEFINITION,
        parameters=parameters,
        **kwargs,
    )
    return answer["jobId"], answer["jobArn"]


def describe(server: LocalBatch, job_id: str) -> dict[str, Any]:
    [job] = server.client().describe_jobs(jobs=[job_id])["jobs"]
    return dict(job)


def wait_for_status(server: LocalBatch, job_id: str, *statuses: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        job = describe(server, job_id)
        return job if job["status"] in statuses else None

    return eventually(probe, interval=0.01)


def wait_done(server: LocalBatch, job_id: str) -> dict[str, Any]:
    return wait_for_status(server, job_id, *DONE)


def assert_interrupted(job: dict[str, Any]) -> None:
    """The job ran, lost its only attempt halfway through its 1 s, with no exit code."""
    assert job["status"] == "FAILED"
    assert "exitCode" not in job["container"]
    [attempt] = job["attempts"]
    assert attempt["statusReason"] == job["statusReason"]
    assert "exitCode" not in attempt["container"]
    assert attempt["startedAt"] == job["startedAt"]
    assert 450 <= attempt["stoppedAt"] - attempt["startedAt"] < 1000


# --- host and Spot interruptions -----------------------------------------------------------


def test_a_host_is_lost_only_under_a_spot_queue(batch: LocalBatch) -> None:
    # Given the same host-loss job on the Spot queue and on the ready-made (on-demand) queue
    spot_id, spot_arn = submit(batch, {"sim_failure": "host_terminated"}, SPOT_JOB_QUEUE)
    plain_id, plain_arn = submit(batch, {"sim_failure": "host_terminated"})

    # When both end
    spot, plain = wait_done(batch, spot_id), wait_done(batch, plain_id)

    # Then the Spot job ran, and lost its host halfway with AWS's reason and no exit code
    assert "RUNNING" in statuses_of(batch, spot_arn)
    assert HOST_TERMINATED.match(spot["statusReason"]), spot["statusReason"]
    assert_interrupted(spot)
    assert describe(batch, spot_id)["statusReason"] == spot["statusReason"]  # stable instance
    # And the on-demand job ran normally (the unknown parameters left its command alone)
    assert (plain["status"], plain["statusReason"]) == ("SUCCEEDED", ESSENTIAL_EXITED)
    assert plain["container"]["exitCode"] == 0
    assert statuses_of(batch, plain_arn)[-1] == "SUCCEEDED"


def test_a_fargate_spot_task_is_interrupted_on_any_queue(batch: LocalBatch) -> None:
    # Given a Fargate Spot interruption on the ready-made queue
    job_id, job_arn = submit(batch, {"sim_failure": "fargate_spot"})

    # When it ends
    job = wait_done(batch, job_id)

    # Then it ran and was interrupted halfway, with AWS's reason and no exit code
    assert "RUNNING" in statuses_of(batch, job_arn)
    assert job["statusReason"] == SPOT_INTERRUPTED
    assert_interrupted(job)


# --- image pull ----------------------------------------------------------------------------


def test_an_image_pull_failure_never_reaches_running(batch: LocalBatch, tmp_path: Path) -> None:
    # Given a job whose image cannot be pulled, with a command that would leave a file
    marker = tmp_path / "ran"
    job_id, job_arn = submit(
        batch,
        {"sim_failure": "image_pull"},
        containerOverrides={"command": ["sh", "-c", f"touch {marker}"]},
    )

    # When it ends
    job = wait_done(batch, job_id)

    # Then it went RUNNABLE -> STARTING -> FAILED, and its command never ran
    assert statuses_of(batch, job_arn) == ["PENDING", "RUNNABLE", "STARTING", "FAILED"]
    assert not marker.exists()
    # And the job and its container give the pull error, with no exit code and no start
    assert job["statusReason"] == job["container"]["reason"] == CANNOT_PULL
    assert "exitCode" not in job["container"]
    assert "startedAt" not in job
    assert "logStreamName" not in job["container"]
    [attempt] = job["attempts"]
    assert "startedAt" not in attempt
    assert attempt["stoppedAt"] == job["stoppedAt"]
    assert attempt["statusReason"] == attempt["container"]["reason"] == CANNOT_PULL
    assert "exitCode" not in attempt["container"]


# --- memory --------------------------------------------------------------------------------


def test_a_job_needing_more_memory_than_it_has_is_killed_out_of_memory(
    batch: LocalBatch,
) -> None:
    # Given jobs needing 1024 MiB: with the definition's 512, with a MEMORY requirement
    # override of 2048, with a (deprecated) memory override of 2048; and one needing 512
    needs = {"sim_memory_needed": "1024"}
    short_id, short_arn = submit(batch, needs)
    override = {"resourceRequirements": [{"type": "MEMORY", "value": "2048"}]}
    enough_id, _ = submit(batch, needs, containerOverrides=override)
    legacy_id, _ = submit(batch, needs, containerOverrides={"memory": 2048})
    fits_id, _ = submit(batch, {"sim_memory_needed": "512"})

    # When they end
    short, enough = wait_done(batch, short_id), wait_done(batch, enough_id)
    legacy, fits = wait_done(batch, legacy_id), wait_done(batch, fits_id)

    # Then the short one ran and was killed halfway: exit code 137 and AWS's reasons
    assert "RUNNING" in statuses_of(batch, short_arn)
    assert (short["status"], short["statusReason"]) == ("FAILED", ESSENTIAL_EXITED)
    assert short["container"]["exitCode"] == 137
    assert short["container"]["reason"] == OUT_OF_MEMORY
    [attempt] = short["attempts"]
    assert attempt["container"]["exitCode"] == 137
    assert attempt["container"]["reason"] == OUT_OF_MEMORY
    assert attempt["statusReason"] == ESSENTIAL_EXITED
    assert 450 <= attempt["stoppedAt"] - attempt["startedAt"] < 1000
    # And the others had enough memory, the override showing where poller reads it
    for job in (enough, legacy, fits):
        assert (job["status"], job["container"]["exitCode"]) == ("SUCCEEDED", 0)
    assert {"type": "MEMORY", "value": "2048"} in enough["container"]["resourceRequirements"]
    assert enough["container"]["memory"] == 2048


# --- stuck in RUNNABLE ---------------------------------------------------------------------


def test_a_stuck_job_shows_misconfiguration_until_it_clears(batch: LocalBatch) -> None:
    # Given a job stuck in RUNNABLE for 1 s
    job_id, job_arn = submit(batch, {"sim_failure": "stuck", "sim_stuck_seconds": "1"})

    # When it is described while RUNNABLE, then once it ends
    stuck = wait_for_status(batch, job_id, "RUNNABLE")
    job = wait_done(batch, job_id)

    # Then it showed AWS's MISCONFIGURATION reason, in DescribeJobs and in its RUNNABLE event
    assert stuck["statusReason"] == MISCONFIGURATION
    assert runnable_reasons(batch, job_arn) == [MISCONFIGURATION]
    # And the reason cleared after 1 s, and the job went on normally
    assert (job["status"], job["statusReason"]) == ("SUCCEEDED", ESSENTIAL_EXITED)
    assert job["startedAt"] - job["createdAt"] >= 1000
    assert statuses_of(batch, job_arn)[-3:] == ["STARTING", "RUNNING", "SUCCEEDED"]


def test_a_job_stuck_for_good_ends_only_when_terminated_or_cancelled(batch: LocalBatch) -> None:
    # Given two jobs stuck in RUNNABLE with no end in sight
    terminated_id, _ = submit(batch, {"sim_failure": "stuck"})
    cancelled_id, _ = submit(batch, {"sim_failure": "stuck"})
    for job_id in (terminated_id, cancelled_id):
        wait_for_status(batch, job_id, "RUNNABLE")

    # When they have waited longer than a normal job lives
    time.sleep(1.5)

    # Then they are still RUNNABLE with the MISCONFIGURATION reason
    for job_id in (terminated_id, cancelled_id):
        job = describe(batch, job_id)
        assert (job["status"], job["statusReason"]) == ("RUNNABLE", MISCONFIGURATION)

    # And TerminateJob and CancelJob end them FAILED with the reasons given
    client = batch.client()
    client.terminate_job(jobId=terminated_id, reason="stuck for too long")
    client.cancel_job(jobId=cancelled_id, reason="no capacity")
    terminated, cancelled = wait_done(batch, terminated_id), wait_done(batch, cancelled_id)
    assert (terminated["status"], terminated["statusReason"]) == ("FAILED", "stuck for too long")
    assert (cancelled["status"], cancelled["statusReason"]) == ("FAILED", "no capacity")
    assert terminated["attempts"] == cancelled["attempts"] == []


# --- retryStrategy -------------------------------------------------------------------------


def test_retry_strategy_retries_aws_failures_by_their_reasons(batch: LocalBatch) -> None:
    # Given a host loss retried by statusReason, an image pull retried by reason (each failing
    # its first attempt only), and an out-of-memory job whose rule says EXIT
    host_id, _ = submit(
        batch,
        {"sim_failure": "host_terminated", "sim_failing_attempts": "1"},
        SPOT_JOB_QUEUE,
        retryStrategy={
            "attempts": 3,
            "evaluateOnExit": [
                {"onStatusReason": "Host EC2*", "action": "RETRY"},
                {"onReason": "*", "action": "EXIT"},
            ],
        },
    )
    pull_id, _ = submit(
        batch,
        {"sim_failure": "image_pull", "sim_failing_attempts": "1"},
        retryStrategy={
            "attempts": 2,
            "evaluateOnExit": [{"onReason": "CannotPullContainerError:*", "action": "retry"}],
        },
    )
    oom_id, _ = submit(
        batch,
        {"sim_memory_needed": "4096"},
        retryStrategy={
            "attempts": 3,
            "evaluateOnExit": [{"onReason": "OutOfMemoryError*", "action": "EXIT"}],
        },
    )

    # When they end
    host, pull, oom = (wait_done(batch, job_id) for job_id in (host_id, pull_id, oom_id))

    # Then the host loss and the pull failure were retried into a success
    assert host["status"] == pull["status"] == "SUCCEEDED"
    first, second = host["attempts"]
    assert HOST_TERMINATED.match(first["statusReason"])
    assert "exitCode" not in first["container"]
    assert second["container"]["exitCode"] == 0
    first, second = pull["attempts"]
    assert first["container"]["reason"] == CANNOT_PULL
    assert "startedAt" not in first
    assert second["container"]["exitCode"] == 0
    assert pull["startedAt"] == second["startedAt"]
    # And the out-of-memory job ended at its first attempt, as its rule says
    assert oom["status"] == "FAILED"
    [attempt] = oom["attempts"]
    assert attempt["container"]["reason"] == OUT_OF_MEMORY


# --- input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sim_failure", "meteor_strike"),
        ("sim_failing_attempts", "one"),
        ("sim_failing_attempts", "1.5"),
        ("sim_stuck_seconds", "-1"),
        ("sim_memory_needed", "lots"),
    ],
)
def test_a_bad_failure_parameter_is_refused_at_submit(
    batch: LocalBatch, name: str, value: str
) -> None:
    # Given a job name nobody used
    job_name = f"refused-{uuid.uuid4().hex[:8]}"
    client = batch.client()

    # When a job is submitted with a malformed failure parameter
    with pytest.raises(ClientError) as caught:
        client.submit_job(
            jobName=job_name,
            jobQueue=JOB_QUEUE,
            jobDefinition=SLEEP_JOB_DEFINITION,
            parameters={name: value},
        )

    # Then it is refused as ClientException naming the parameter, and no job was created
    error = caught.value.response["Error"]
    assert error["Code"] == "ClientException"
    assert name in error["Message"]
    listed = client.list_jobs(
        jobQueue=JOB_QUEUE, filters=[{"name": "JOB_NAME", "values": [job_name]}]
    )
    assert listed["jobSummaryList"] == []


# --- the Spot queue ------------------------------------------------------------------------


def test_the_spot_queue_is_a_managed_spot_environment_in_every_region(batch: LocalBatch) -> None:
    for region in ("us-east-1", "eu-west-1"):
        # Given the endpoint's resources of a region
        client = batch.client(region=region)

        # When the Spot queue and its compute environment are described
        [queue] = client.describe_job_queues(jobQueues=[SPOT_JOB_QUEUE])["jobQueues"]
        [environment] = client.describe_compute_environments(
            computeEnvironments=[SPOT_COMPUTE_ENVIRONMENT]
        )["computeEnvironments"]

        # Then the queue runs on a MANAGED SPOT environment of moto's, scaled to zero
        assert [item["computeEnvironment"] for item in queue["computeEnvironmentOrder"]] == [
            environment["computeEnvironmentArn"]
        ]
        assert (environment["type"], environment["state"]) == ("MANAGED", "ENABLED")
        resources = environment["computeResources"]
        assert (resources["type"], resources["minvCpus"]) == ("SPOT", 0)
        # And its subnet, security group and instance profile exist in moto's EC2 and IAM
        ec2 = batch.client("ec2", region=region)
        [subnet] = ec2.describe_subnets(SubnetIds=resources["subnets"])["Subnets"]
        [group] = ec2.describe_security_groups(GroupIds=resources["securityGroupIds"])[
            "SecurityGroups"
        ]
        assert subnet["VpcId"] == group["VpcId"]
        assert group["GroupName"] == "default"
        profile = resources["instanceRole"].rsplit("/", 1)[-1]
        assert batch.client("iam").get_instance_profile(InstanceProfileName=profile)


def test_a_spot_queue_job_runs_on_the_local_runtime(batch: LocalBatch) -> None:
    # Given a job on the Spot queue printing the compute environment Batch names to it
    job_id, _ = submit(
        batch,
        {"seconds": "0.2", "sim_seconds": "0.2"},
        SPOT_JOB_QUEUE,
        containerOverrides={"command": ["sh", "-c", "echo ce=$AWS_BATCH_CE_NAME"]},
    )

    # When it ends
    job = wait_done(batch, job_id)

    # Then it succeeded as a job of the ready-made queue would
    assert (job["status"], job["container"]["exitCode"]) == ("SUCCEEDED", 0)
    # And its command saw the Spot compute environment (the process runtime runs it)
    if batch.runtime == "process":
        events = batch.client("logs").get_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=job["container"]["logStreamName"],
            startFromHead=True,
        )["events"]
        assert [event["message"] for event in events] == [f"ce={SPOT_COMPUTE_ENVIRONMENT}"]
