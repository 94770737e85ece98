"""Jobs in several regions and accounts from one worker (per-job AWS target), on real servers:
Redis, the local Batch endpoint (every region, and STS for an assumed role) and a worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from click.testing import CliRunner

from poller import InvalidJobSpec, submit_job
from poller.aws.targets import session_for
from poller.cli import main
from poller.models import JobStatus
from poller.runtime import get_store
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.stack import stack_env
from poller.testing.worker import Worker
from tests.conftest import configured_for, eventually

pytestmark = pytest.mark.integration

DEFAULT_ACCOUNT = "123456789012"  # the local endpoint's
PARTNER_ACCOUNT = "222222222222"
JOBS_PER_TARGET = 10
AWS_CONFIG = f"""\
[profile west]
region = us-west-2

[profile forbidden]
region = sa-east-1

[profile base]
aws_access_key_id = testing
aws_secret_access_key = testing

[profile partner]
region = eu-west-1
role_arn = arn:aws:iam::{PARTNER_ACCOUNT}:role/poller-jobs
source_profile = base
"""
# target name -> (submit_job's target arguments, the region and account the job must run in)
TARGETS: dict[str, tuple[dict[str, str], str, str]] = {
    "default": ({}, "us-east-1", DEFAULT_ACCOUNT),
    "profile": ({"aws_profile": "west"}, "us-west-2", DEFAULT_ACCOUNT),
    "role": ({"aws_profile": "partner"}, "eu-west-1", PARTNER_ACCOUNT),
    "override": ({"aws_region": "ap-southeast-2"}, "ap-southeast-2", DEFAULT_ACCOUNT),
}


@pytest.fixture(scope="module")
def targets_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, str], LocalBatch]]:
    """A Redis and a local endpoint of their own (so the endpoint's call counts are this
    module's), an AWS config with a profile in another region and one assuming a role."""
    config = Path(tmp_path_factory.mktemp("aws")) / "config"
    config.write_text(AWS_CONFIG)
    with (
        LocalBatch(runtime="simulated", stage_seconds=0.1, sim_seconds=1.0) as batch,
        EmbeddedRedis() as server,
    ):
        env = {
            **stack_env(server, batch, initial_delay=1.0, max_delay=3.0),
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(config.with_name("credentials")),
            "AWS_ENDPOINT_URL_STS": batch.environ()["AWS_ENDPOINT_URL_BATCH"],
            "POLLER_QUEUE": "targets",
            # "forbidden" is configured but not allowed; "nope" allowed but not configured
            "POLLER_AWS_PROFILES": "west,partner,nope",
        }
        with configured_for(env):
            yield env, batch


def jobs_in(profile: str | None, region: str) -> set[str]:
    """The ids of the jobs in the local endpoint's job queue, as this account and region see it."""
    batch = session_for(profile).client("batch", region_name=region)
    ids: set[str] = set()
    for status in ("SUCCEEDED", "FAILED", "RUNNING", "RUNNABLE", "SUBMITTED"):
        listed = batch.list_jobs(jobQueue=JOB_QUEUE, jobStatus=status)["jobSummaryList"]
        ids.update(item["jobId"] for item in listed)
    return ids


def test_one_worker_runs_jobs_in_three_regions_and_two_accounts(
    targets_env: tuple[dict[str, str], LocalBatch], report: Any
) -> None:
    # Given one worker, and jobs for the default session, a profile in another region, a
    # profile assuming a role in another account and region, and a region override
    env, batch = targets_env
    worker = Worker(env)
    worker.start()
    try:
        ids: dict[str, list[str]] = {}
        for name, (target, _, _) in TARGETS.items():
            ids[name] = [
                submit_job.delay(
                    f"{name}-{n}", JOB_QUEUE, SLEEP_JOB_DEFINITION,
                    parameters={"sim_seconds": "2", "seconds": "2"}, **target,
                ).id
                for n in range(JOBS_PER_TARGET)
            ]  # fmt: skip
        store = get_store()
        every = [i for each in ids.values() for i in each]
        records = eventually(
            lambda: (found := store.records(every)) and all(r.is_terminal for r in found) and found,
            timeout=90,
            interval=0.5,
        )
        # (the worker's AWS call counts reach Redis within a second of the calls)
        regions = {region for _, region, _ in TARGETS.values()}
        snapshot = eventually(
            lambda: (
                (snap := store.counters.metrics_snapshot(overdue_after=1, alive_for=10))
                and regions <= {r for op, _, r in snap.aws_calls if op == "DescribeJobs"}
                and snap
            ),
            timeout=10,
        )
    finally:
        worker.stop()
    by_id = {r.tracking_id: r for r in records}
    # Then every job succeeded, and its record names the region and account it ran in
    assert {r.status for r in records} == {JobStatus.SUCCEEDED}, worker.log_tail()
    for name, (target, region, account) in TARGETS.items():
        for tracking_id in ids[name]:
            record = by_id[tracking_id]
            assert (record.aws_region, record.aws_account) == (region, account), name
            assert record.aws_profile == target.get("aws_profile")
    # And each Batch job exists in its own region and account only
    seen = {
        name: jobs_in(profile, region)
        for name, profile, region in [
            ("default", None, "us-east-1"),
            ("profile", "west", "us-west-2"),
            ("role", "partner", "eu-west-1"),
            ("override", None, "ap-southeast-2"),
        ]
    }
    for name in TARGETS:
        own = {by_id[i].job_id for i in ids[name]}
        assert own <= seen[name], name
        assert all(not own & jobs for other, jobs in seen.items() if other != name), name
    # And the metrics count each region's jobs and calls under its own label
    for region in regions:
        assert snapshot.finished_total[("SUCCEEDED", JOB_QUEUE, region)] == JOBS_PER_TARGET
    # And `poller logs` reads a job's output in its own region and account
    partner = by_id[ids["role"][0]]
    logs = CliRunner().invoke(main, ["logs", partner.tracking_id])
    assert logs.exit_code == 0 and "simulated attempt 1" in logs.output, logs.output
    # And DescribeJobs calls were shared by the jobs of each target
    describes = batch.calls("DescribeJobs")
    per_job = describes / len(every)
    report(
        "per-job AWS targets", jobs=len(every), describe_jobs=describes, per_job=round(per_job, 2)
    )
    assert 0 < per_job <= 0.5


@pytest.mark.parametrize(
    ("target", "field", "message"),
    [
        ({"aws_profile": "nope"}, "aws_profile", "aws_profile: no profile 'nope'"),
        ({"aws_profile": "forbidden"}, "aws_profile", "profile 'forbidden' is not allowed"),
        ({"aws_region": "Mars 1"}, "aws_region", "aws_region"),
    ],
)
def test_an_unknown_profile_or_a_malformed_region_is_refused_in_the_caller_naming_it(
    targets_env: tuple[dict[str, str], LocalBatch], target: dict[str, str], field: str, message: str
) -> None:
    with pytest.raises(InvalidJobSpec, match=message) as refused:
        submit_job.delay("x", JOB_QUEUE, SLEEP_JOB_DEFINITION, **target)
    assert refused.value.field == field
    if field == "aws_profile":  # a refusal never lists the profiles there are
        assert "west" not in str(refused.value)
        assert "partner" not in str(refused.value)


def test_a_forbidden_profile_sent_by_name_never_reaches_its_region(
    targets_env: tuple[dict[str, str], LocalBatch],
) -> None:
    # Given a worker allowing "west" and "partner", and a profile "forbidden" in its AWS config
    env, _ = targets_env
    worker = Worker(env)
    worker.start()
    try:
        # When a submission naming "forbidden" bypasses the caller's checks (send_task by name)
        sent = submit_job.app.send_task(
            "poller.submit_job",
            args=("sneaky", JOB_QUEUE, SLEEP_JOB_DEFINITION),
            kwargs={"aws_profile": "forbidden"},
            queue="targets",
        )
        # Then the worker refuses it, naming only the profile asked for
        with pytest.raises(InvalidJobSpec, match="profile 'forbidden' is not allowed") as refused:
            sent.get(timeout=60)
        assert "west" not in str(refused.value)
        assert get_store().get(sent.id).status is JobStatus.REJECTED
        # And no job was ever created in the forbidden profile's region
        assert jobs_in(None, "sa-east-1") == set()
    finally:
        worker.stop()
