"""Flower as an operator uses it, against the session's worker (task events on): each job's row
is named after the job, a waiting job shows its Batch status without a traceback, and search
finds any job by its name or its Batch job id. One page is loaded in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from PIL import Image

from poller import JobHandle, JobStatus, submit_job
from poller.models import JobRecord
from poller.testing.processes import free_port
from poller.testing.worker import Flower, Worker
from tests.conftest import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def flower(poller_env: dict[str, str], poller_worker: Worker) -> Iterator[Flower]:
    # Flower 2 serves its HTTP API only with authentication unless told otherwise; this one is
    # bound to 127.0.0.1 for the test alone
    server = Flower({**poller_env, "FLOWER_UNAUTHENTICATED_API": "true"}, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


def api_tasks(flower: Flower, **query: str) -> dict[str, dict[str, Any]]:
    url = f"{flower.url}/api/tasks?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=10) as page:
        tasks: dict[str, dict[str, Any]] = json.loads(page.read())
    return tasks


def submit(name: str, seconds: str, exit_code: str = "0") -> str:
    parameters = {"seconds": seconds, "exit_code": exit_code}
    return str(submit_job.delay(name, JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=parameters).id)


@pytest.fixture(scope="module")
def three_jobs(flower: Flower) -> Iterator[dict[str, JobRecord]]:
    """A job still running (rescheduled at least once), one succeeded, one failed; the module's
    tests only read them."""
    ids = {
        "running": submit("flower-waits", "60"),
        "succeeded": submit("flower-ok", "0.3"),
        "failed": submit("flower-fails", "0.3", exit_code="3"),
    }
    for state in ("succeeded", "failed"):
        JobHandle(ids[state]).wait(timeout=60)
    running = JobHandle(ids["running"])
    eventually(
        lambda: running.record.status is JobStatus.RUNNING and running.record.schedule.checks >= 2
    )
    yield {state: JobHandle(i).record for state, i in ids.items()}
    running.cancel("the Flower test is over")


def test_each_job_is_named_after_it_and_a_waiting_one_shows_no_traceback(
    flower: Flower, three_jobs: dict[str, JobRecord]
) -> None:
    def seen() -> dict[str, dict[str, Any]] | None:
        tasks = api_tasks(flower)
        rows = {state: tasks.get(r.tracking_id) for state, r in three_jobs.items()}
        wanted = {"running": "RETRY", "succeeded": "SUCCESS", "failed": "FAILURE"}
        ok = all(row and row["state"] == wanted[state] for state, row in rows.items())
        return rows if ok else None

    rows = eventually(seen, timeout=30, interval=0.5)
    for state, record in three_jobs.items():
        # Then every row carries its job's name and Batch job id
        assert rows[state]["name"] == f"poller: {record.job_name} {record.job_id}", rows[state]
        assert not rows[state].get("traceback") or state == "failed", rows[state]
    # And the waiting job says what Batch says and when it is checked next, without a traceback
    waiting = rows["running"]
    assert "CheckScheduled" in waiting["exception"] and "is RUNNING" in waiting["exception"]
    assert str(three_jobs["running"].job_id) in waiting["exception"]


def test_search_finds_any_job_by_name_or_batch_job_id(
    flower: Flower, three_jobs: dict[str, JobRecord]
) -> None:
    found = 0
    for record in three_jobs.values():
        for term in (record.job_name, str(record.job_id)):
            hits = eventually(lambda t=term: api_tasks(flower, search=t), timeout=30, interval=0.5)
            assert record.tracking_id in hits, (term, list(hits))
            found += 1
    assert found == 6


def headless_chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Debian's chromium, headless, with a profile of its own and nothing fetched from outside."""
    chromium = shutil.which("chromium")
    if chromium is None:  # fail, never skip: make test installs it
        pytest.fail("chromium is not installed (apt-get install chromium)")
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         *arguments],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_tasks_page_in_headless_chromium_shows_the_job_names(
    flower: Flower, three_jobs: dict[str, JobRecord], tmp_path: Path, report: Any
) -> None:
    eventually(lambda: len(api_tasks(flower)) >= 3, timeout=30)
    # When the tasks page is rendered by a real browser (its table is filled by script)
    rendered = headless_chromium(tmp_path / "profile", "--dump-dom", f"{flower.url}/tasks")
    # Then each job's name is on the page
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    for record in three_jobs.values():
        assert record.job_name in rendered.stdout
    # And a screenshot of it is a page drawn in full: the window's size, and far more colours
    # than a blank or an error page has (text, the table's stripes, Flower's badges)
    shot = tmp_path / "flower-tasks.png"
    taken = headless_chromium(
        tmp_path / "profile",
        "--window-size=1280,800",
        f"--screenshot={shot}",
        f"{flower.url}/tasks",
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
        report("flower screenshot", path=str(shot), size=image.size, colours=len(colours))
        assert image.size == (1280, 800)
        assert len(colours) > 100


SECRET = "tok-Vq93-never-shown"


def test_an_environment_value_is_shown_nowhere_its_name_is(
    flower: Flower, poller_worker: Worker
) -> None:
    from click.testing import CliRunner

    from poller.cli import main

    # Given two jobs given a secret in their environment: one runs (its check produces the
    # result), one names a queue AWS refuses (the submit task itself produces the result)
    overrides = {"environment": [{"name": "API_TOKEN", "value": SECRET}]}
    ids = [
        str(submit_job.delay(name, queue, SLEEP_JOB_DEFINITION, parameters={"seconds": "0.3"},
                             container_overrides=overrides).id)
        for name, queue in (("secret-runs", JOB_QUEUE), ("secret-refused", "no-such-queue"))
    ]  # fmt: skip
    ended = [JobHandle(i).wait(timeout=60) for i in ids]
    assert [r["status"] for r in ended] == ["SUCCEEDED", "REJECTED"]

    # When Flower's task API, the result backend, `poller status --json` and the worker's log
    # are read, once Flower saw both tasks end
    def both_seen() -> dict[str, dict[str, Any]] | None:
        tasks = api_tasks(flower)
        return tasks if all(i in tasks and tasks[i]["state"] in ("SUCCESS", "FAILURE")
                            for i in ids) else None  # fmt: skip

    tasks = eventually(both_seen, timeout=30, interval=0.5)
    backend = submit_job.app.backend
    results = [str(backend.client.get(backend.get_key_for_task(i))) for i in ids]
    statuses = [CliRunner().invoke(main, ["status", i, "--json"]).output for i in ids]
    shown = {
        "flower": json.dumps({i: tasks[i] for i in ids}),
        "result backend": "".join(results),
        "poller status --json": "".join(statuses),
        "worker log": poller_worker.log.read_text(errors="replace"),
        "JobHandle.record": "".join(JobHandle(i).record.model_dump_json() for i in ids),
    }
    # Then the value appears in none of them, and its name still shows where arguments do
    for where, text in shown.items():
        assert SECRET not in text, where
    for where in ("flower", "poller status --json", "JobHandle.record"):
        assert "API_TOKEN" in shown[where], where
