"""The CLI against the real stack: click's runner in-process, and `poller` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from click.testing import CliRunner

from poller import JobHandle, JobStatus
from poller.cli import main
from poller.testing.worker import Worker
from tests.conftest import eventually

pytestmark = pytest.mark.integration
POLLER = str(Path(sys.executable).parent / "poller")


@pytest.fixture(autouse=True)
def _worker(poller_worker: Worker, poller_redis_client: redis.Redis) -> None:
    """Every test here runs against the session's worker, with a flushed records database."""


def run(*args: str) -> tuple[int, str]:
    """Invoke the CLI in-process; returns the exit code and stdout (progress goes to stderr)."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout


def submit(*extra: str) -> str:
    code, output = run("submit", "cli-job", "-q", JOB_QUEUE, "-d", SLEEP_JOB_DEFINITION, *extra)
    assert code == 0, output
    return output.strip().splitlines()[-1]


def test_submit_wait_exits_with_the_outcome() -> None:
    code, output = run("submit", "cli-ok", "-q", JOB_QUEUE, "-d", SLEEP_JOB_DEFINITION,
                       "-p", "seconds=0.3", "--env", "MODE=fast", "--tag", "team=data", "--wait", "--json")  # fmt: skip
    assert code == 0, output
    record = json.loads(output)
    assert record["status"] == "SUCCEEDED"
    # (an environment value is never shown: its name is)
    assert record["spec"]["container_overrides"] == {
        "environment": [{"name": "MODE", "value": "***"}]
    }
    assert record["spec"]["tags"] == {"team": "data"}


def test_a_failed_job_exits_1_and_a_timed_out_job_exits_2() -> None:
    failing = submit("-p", "seconds=0.2", "-p", "exit_code=4")
    assert run("wait", failing, "--timeout", "60")[0] == 1
    code, output = run("submit", "cli-slow", "-q", JOB_QUEUE, "-d", SLEEP_JOB_DEFINITION, "-p", "seconds=30",
                       "--poll", "max_checks=1", "--poll", "terminate_on_give_up=true", "--wait", "--json")  # fmt: skip
    assert code == 2
    assert json.loads(output)["status"] == "TIMED_OUT"
    # A bad poll value is refused before anything is sent, naming the field
    code, _ = run(
        "submit", "cli-bad", "-q", JOB_QUEUE, "-d", SLEEP_JOB_DEFINITION, "--poll", "factor=0.5"
    )
    assert code == 3


def test_status_by_tracking_id_and_by_batch_job_id() -> None:
    tracking_id = submit("-p", "seconds=0.2")
    record = JobHandle(tracking_id).wait(timeout=60)
    for identifier in (tracking_id, record["job_id"]):
        code, output = run("status", str(identifier), "--json")
        assert code == 0
        assert json.loads(output)["tracking_id"] == tracking_id
    code, output = run("status", tracking_id)
    assert code == 0
    assert "SUCCEEDED" in output


def test_cancel_then_logs_and_jobs_listing() -> None:
    tracking_id = submit("-p", "seconds=30")
    handle = JobHandle(tracking_id)
    eventually(lambda: handle.status is JobStatus.RUNNING)
    result = CliRunner().invoke(main, ["cancel", tracking_id, "--reason", "from the CLI test"])
    assert result.exit_code == 0, result.output
    assert handle.wait(timeout=60)["status"] == "FAILED"
    # The job's own output is readable from CloudWatch Logs
    result = CliRunner().invoke(main, ["logs", tracking_id])
    code, output = result.exit_code, result.stdout
    assert code == 0, result.output
    assert "starting 30" in output
    # And it is listed, whatever the case of the status asked for
    for status in ("FAILED", "failed"):
        code, output = run("jobs", "--status", status, "--json")
        assert [r["tracking_id"] for r in json.loads(output)] == [tracking_id]
    # And cancelling it again says it already ended, as one error line with exit code 3
    again = CliRunner().invoke(main, ["cancel", tracking_id])
    assert again.exit_code == 3
    assert (
        again.output.strip() == f"error: job {tracking_id} already ended FAILED; nothing to cancel"
    )
    assert json.loads(run("jobs", "--active", "--json")[1]) == []


def test_events_follows_the_channel() -> None:
    process = subprocess.Popen(
        [POLLER, "events", "--json", "--count", "2"], stdout=subprocess.PIPE, text=True
    )
    try:
        eventually(
            lambda: redis.Redis.from_url(_records_url()).pubsub_numsub("poller:events")[0][1] > 0
        )
        submit("-p", "seconds=0.2")
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    events = [json.loads(line) for line in output.splitlines()]
    assert [e["event"] for e in events] == ["job_submitted", "job_status_changed"]


def _records_url() -> str:
    return os.environ["POLLER_REDIS_URL"]


def test_unknown_ids_and_unreachable_servers_are_one_line_and_exit_3() -> None:
    # As a real subprocess: no traceback, one line, exit code 3
    unknown = subprocess.run(
        [POLLER, "status", "no-such-job"], capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 3
    assert unknown.stderr.strip().count("\n") == 0
    assert "no tracked job has Batch job id 'no-such-job'" in unknown.stderr
    env_down = {
        "POLLER_BROKER_URL": "redis://127.0.0.1:1/0",
        "POLLER_REDIS_URL": "redis://127.0.0.1:1/1",
    }

    down = subprocess.run(
        [POLLER, "status", "x"],
        capture_output=True,
        text=True,
        env={**os.environ, **env_down},
        timeout=60,
    )
    assert down.returncode == 3
    assert "Traceback" not in down.stderr
    assert "127.0.0.1:1" in down.stderr or "Connection refused" in down.stderr
    check = subprocess.run(
        [POLLER, "check"],
        capture_output=True,
        text=True,
        env={**os.environ, **env_down},
        timeout=60,
    )
    assert check.returncode == 3
    assert "FAILED" in check.stdout  # the report on stdout, the one error: line on stderr
    assert check.stderr.startswith("error:")


def test_check_and_config_mask_secrets() -> None:
    code, output = run("check", "--json")
    assert code == 0, output
    assert all(probe["ok"] for probe in json.loads(output).values())

    secret_env = {**os.environ, "POLLER_BROKER_URL": "redis://:hunter2@127.0.0.1:6379/0"}
    shown = subprocess.run(
        [POLLER, "config", "--json"], capture_output=True, text=True, env=secret_env, timeout=60
    )
    assert shown.returncode == 0
    assert "hunter2" not in shown.stdout
    assert json.loads(shown.stdout)["broker_url"] == "redis://:***@127.0.0.1:6379/0"


def test_markup_and_escapes_in_a_job_sent_by_name_print_as_text() -> None:
    from poller import submit_job

    # Given a job sent by name (no caller-side check) whose name is markup and an escape
    name = "[/][bold]x\x1b[2J"
    sent = submit_job.app.send_task(
        "poller.submit_job", args=(name, JOB_QUEUE, SLEEP_JOB_DEFINITION)
    )
    rejected = JobHandle(sent.id).store.find
    eventually(lambda: (r := rejected(sent.id)) is not None and r.status is JobStatus.REJECTED)
    # When it is listed and shown, Then each command exits 0 and shows the brackets as text,
    # without the escape
    for args in (["jobs"], ["jobs", "--wide"], ["status", sent.id]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        assert "\x1b" not in result.stdout, args
        if args != ["jobs", "--wide"]:  # (at 80 columns the wide table cuts the name)
            assert "[/][bold]x" in result.stdout, args


def test_an_unreadable_record_is_set_aside_and_named_by_check(
    poller_redis_client: redis.Redis,
) -> None:
    from poller.runtime import get_store

    # Given a running job whose stored record someone overwrote with a wrong-typed value
    victim = submit("-p", "seconds=30")
    eventually(lambda: JobHandle(victim).status is JobStatus.RUNNING, timeout=30)
    store = get_store()
    raw = json.loads(poller_redis_client.get(store.key("job", victim)))
    raw["exit_code"] = "zero"
    poller_redis_client.set(store.key("job", victim), json.dumps(raw))
    # When the CLI lists jobs, Then the listing works without it
    code, _ = run("jobs")
    assert code == 0
    # And it is set aside, named by `poller check`, and the next job still succeeds
    assert victim in store.quarantined()
    result = CliRunner().invoke(main, ["check"])
    assert victim in result.output, result.output
    after = submit("-p", "seconds=0.2")
    assert JobHandle(after).wait(timeout=60)["status"] == "SUCCEEDED"
