"""poller inside an existing Celery project: the app's own worker beside poller's, one Redis.

The project (tests/integration/shop) has its own Celery app on Celery's default queue and no
routing for poller. Its steps must run exactly once, in its own worker; poller's tasks only in
poller's worker; and its receivers, loaded with POLLER_IMPORTS, once per event.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from celery import chain, chord

from poller import JobHandle, JobResult, submit_job
from poller.runtime import get_store
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.stack import stack_env
from poller.testing.worker import ChildProcess, Worker
from tests.conftest import configured_for, eventually
from tests.integration.shop.app import app as shop_app
from tests.integration.shop.receivers import FAILED_KEY
from tests.integration.shop.tasks import RAN_KEY, load_warehouse, on_batch_error, prepare, summarize
from tests.integration.shop.worker import ShopWorker, point_shop_app_at

pytestmark = pytest.mark.integration

TIMEOUT = 90
RESULT_FIELDS = set(JobResult.__annotations__)


@dataclass
class Project:
    """The servers and both workers of this module."""

    db: redis.Redis
    poller_worker: Worker
    shop_worker: ShopWorker

    def ran(self, task: str) -> list[dict[str, Any]]:
        entries = [json.loads(raw) for raw in self.db.lrange(RAN_KEY, 0, -1)]
        return [e for e in entries if e["task"] == task]

    def assert_no_stray_task(self) -> None:
        """Neither worker saw a task it does not know; poller's never ran in the app's."""
        poller_log = self.poller_worker.log.read_text()
        shop_log = self.shop_worker.log.read_text()
        assert "unregistered" not in poller_log.lower()
        assert "unregistered" not in shop_log.lower()
        assert "poller." not in shop_log
        assert all(e["worker"].startswith("shop-") for e in self.ran_all())

    def ran_all(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.db.lrange(RAN_KEY, 0, -1)]


@pytest.fixture(scope="module")
def project(poller_batch: LocalBatch) -> Iterator[Project]:
    with EmbeddedRedis() as server:
        env = stack_env(server, poller_batch, initial_delay=0.3, max_delay=1.0)
        env |= {
            "SHOP_BROKER_URL": env["POLLER_BROKER_URL"],
            "SHOP_NOTES_URL": env["POLLER_BROKER_URL"],
            "SHOP_RESULT_BACKEND": env["POLLER_REDIS_URL"],
            "POLLER_IMPORTS": "tests.integration.shop.receivers",
        }
        with configured_for(env):
            point_shop_app_at(env["SHOP_BROKER_URL"], env["SHOP_RESULT_BACKEND"])
            poller_worker, shop_worker = Worker(env), ShopWorker(env)
            try:
                poller_worker.start()
                shop_worker.start()
                yield Project(
                    redis.Redis.from_url(env["SHOP_BROKER_URL"], decode_responses=True),
                    poller_worker,
                    shop_worker,
                )
            finally:
                shop_worker.stop()
                poller_worker.stop()
                # Results awaited here unsubscribe when collected: let them, while Redis is up.
                gc.collect()
                shop_app.close()


def forget(*results: Any) -> None:
    """Unsubscribe from awaited results (and their parents) while this module's Redis is up."""
    for result in results:
        result.forget()


def batch_job(name: str, seconds: float = 0.3, exit_code: int = 0) -> Any:
    parameters = {"seconds": str(seconds), "exit_code": str(exit_code)}
    return submit_job.si(name, JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=parameters)


def test_chains_through_a_poller_step_run_the_apps_steps_in_the_apps_worker(
    project: Project, report: Any
) -> None:
    project.db.delete(RAN_KEY)
    # Given chains from the app: four into its task, two with an app task before and after
    after_only = [chain(batch_job(f"load-{i}"), load_warehouse.s()).apply_async() for i in range(4)]
    around = [
        chain(prepare.si(), batch_job(f"around-{i}"), load_warehouse.s()).apply_async()
        for i in range(2)
    ]
    # When they finish
    loaded = [result.get(timeout=TIMEOUT) for result in after_only + around]
    forget(*after_only, *around)
    # Then every app step ran exactly once, in the app's worker
    loads, prepares = project.ran("shop.load_warehouse"), project.ran("shop.prepare")
    report(
        "chains", load_steps=f"{len(loads)}/6", prepare_steps=f"{len(prepares)}/2",
        in_app_worker=all(e["worker"].startswith("shop-") for e in loads + prepares),
    )  # fmt: skip
    assert len(loads) == 6 and len(prepares) == 2
    assert sorted(e["received"]["tracking_id"] for e in loads) == sorted(loaded)
    # And each received the documented job result, and nothing else
    for entry in loads:
        assert set(entry["received"]) == RESULT_FIELDS
        assert entry["received"]["status"] == "SUCCEEDED"
    project.assert_no_stray_task()


def test_a_chord_of_batch_jobs_calls_the_apps_task_once(project: Project, report: Any) -> None:
    project.db.delete(RAN_KEY)
    # When three Batch jobs are a chord's header and the app's task its body
    result = chord([batch_job(f"chord-{i}") for i in range(3)])(summarize.s())
    # Then the body runs once, in the app's worker, with the three results
    assert result.get(timeout=TIMEOUT) == ["SUCCEEDED"] * 3
    forget(result)
    bodies = project.ran("shop.summarize")
    report("chord", body_runs=f"{len(bodies)}/1")
    assert len(bodies) == 1
    assert [set(r) for r in bodies[0]["received"]] == [RESULT_FIELDS] * 3
    project.assert_no_stray_task()


def test_link_error_runs_the_apps_errback_for_a_failed_job(project: Project, report: Any) -> None:
    project.db.delete(RAN_KEY)
    # When a job that fails has the app's task as its errback
    result = batch_job("errback", exit_code=3).apply_async(link_error=on_batch_error.s())
    JobHandle(result.id).wait(timeout=TIMEOUT)
    # Then the errback runs once, in the app's worker, with the submission's id
    errbacks = eventually(lambda: project.ran("shop.on_batch_error"), timeout=30, interval=0.2)
    report("link_error", errback_runs=f"{len(errbacks)}/1")
    assert [e["received"] for e in errbacks] == [result.id]
    project.assert_no_stray_task()


def test_receivers_loaded_with_poller_imports_fire_once_per_failing_job(
    project: Project, report: Any
) -> None:
    project.db.delete(FAILED_KEY)
    # When six jobs fail
    ids = [batch_job(f"fails-{i}", exit_code=1).delay().id for i in range(6)]
    for tracking_id in ids:
        assert JobHandle(tracking_id).wait(timeout=TIMEOUT)["status"] == "FAILED"
    # Then the app's job_failed receiver, loaded into poller's worker, ran once for each (signals
    # are sent just after the change is stored, so the last may land a moment after wait())
    eventually(lambda: project.db.llen(FAILED_KEY) >= len(ids), timeout=10)
    fired = Counter(project.db.lrange(FAILED_KEY, 0, -1))
    report("receivers", fired=f"{sum(fired.values())}/6")
    assert fired == Counter(ids)
    assert "imported tests.integration.shop.receivers" in project.poller_worker.log.read_text()


class ShopBeat(ChildProcess):
    """``celery -A tests.integration.shop.beat beat``: the project's scheduler, sending
    ``poller.submit_job`` by name every second."""

    name = "shop-beat"

    def __init__(self, env: dict[str, str], schedule: str) -> None:
        super().__init__(env)
        self.schedule = schedule

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "tests.integration.shop.beat", "beat",
            "--loglevel", "INFO", "-s", self.schedule,
        ]  # fmt: skip

    def is_ready(self) -> bool:
        return "beat: Starting" in self.log.read_text()


def test_beat_entries_naming_poller_submit_job_run_batch_jobs(
    project: Project, tmp_path: Path
) -> None:
    # Given the project's beat sending "poller.submit_job" by name, with the one route line
    beat = ShopBeat(dict(os.environ), str(tmp_path / "beat-schedule"))
    try:
        beat.start()

        # When it has sent a few, then Batch jobs ran for them, through poller's worker
        def beat_jobs() -> list[Any] | None:
            ended = [
                r for r in get_store().list(limit=500) if r.job_name == "beat-job" and r.is_terminal
            ]
            return ended if len(ended) >= 2 else None

        ended = eventually(beat_jobs, timeout=TIMEOUT)
    finally:
        beat.stop()
    assert {r.status.value for r in ended} == {"SUCCEEDED"}
    assert all(r.job_id for r in ended)
    project.assert_no_stray_task()


ONLY_CELERY = """
import json, os, sys
from celery import Celery
service = Celery("service", broker=os.environ["SHOP_BROKER_URL"], backend=os.environ["SHOP_RESULT_BACKEND"])
spec = json.loads(sys.argv[1])
result = service.send_task("poller.submit_job", kwargs=spec, queue="poller")
try:
    print(json.dumps({"ok": result.get(timeout=60)["status"]}))
except Exception as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
assert "poller" not in sys.modules
"""


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "no-job-definition"])
def test_send_task_by_name_from_a_process_with_only_celery(project: Project, valid: bool) -> None:
    # Given a spec (without job_definition when invalid), sent by name from a process that has
    # only Celery
    spec = {"job_name": "sent-by-name", "job_queue": JOB_QUEUE, "parameters": {"seconds": "0.2"}}
    if valid:
        spec["job_definition"] = SLEEP_JOB_DEFINITION
    ran = subprocess.run(
        [sys.executable, "-c", ONLY_CELERY, json.dumps(spec)],
        env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    # Then a valid one succeeds; an invalid one is refused in the worker, naming the field
    if valid:
        assert answer == {"ok": "SUCCEEDED"}
    else:
        assert answer["error"] == "InvalidJobSpec"
        assert "job_definition" in answer["message"]
