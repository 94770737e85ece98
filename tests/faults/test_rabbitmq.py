"""RabbitMQ as the broker of an app and of poller, the job records in Redis: a real node.

What the Redis broker's visibility timeout does there is done by RabbitMQ itself: a delivery
left unacked goes back to its queue the moment its consumer's connection drops (a worker killed
-9, a broker restart). The reconciler is the same.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from celery import chain

from poller import submit_job
from poller.testing.rabbitmq_server import EmbeddedRabbitMQ
from poller.testing.stack import configure_process
from tests.conftest import eventually
from tests.faults.conftest import FaultStack, fault_stack
from tests.faults.test_worker_crash import batch_jobs_named
from tests.integration.shop.app import app as shop_app
from tests.integration.shop.tasks import RAN_KEY, load_warehouse
from tests.integration.shop.worker import ShopWorker, point_shop_app_at

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rabbitmq() -> Iterator[EmbeddedRabbitMQ]:
    # Fails, never skips, without Debian's rabbitmq-server: make test installs it
    with EmbeddedRabbitMQ() as node:
        yield node


@pytest.fixture
def stack(
    fault_batch: LocalBatch, rabbitmq: EmbeddedRabbitMQ, request: pytest.FixtureRequest
) -> Iterator[FaultStack]:
    # Each test has a poller queue of its own on the module's node: no message one leaves
    # reaches another (only the chain test uses the app's queue, Celery's default)
    queue = "poller-" + request.node.name.removeprefix("test_")[:40]
    with fault_stack(fault_batch, POLLER_BROKER_URL=rabbitmq.url, POLLER_QUEUE=queue) as started:
        yield started


def test_chains_reach_the_apps_worker_through_the_same_rabbitmq(
    stack: FaultStack, report: Any
) -> None:
    # Given an app whose broker is the same RabbitMQ, with its own worker on its own queue
    notes = redis.Redis.from_url(stack.env["POLLER_REDIS_URL"], decode_responses=True)
    env = {
        **stack.env, "SHOP_BROKER_URL": stack.env["POLLER_BROKER_URL"],
        "SHOP_RESULT_BACKEND": stack.env["POLLER_REDIS_URL"],
        "SHOP_NOTES_URL": stack.env["POLLER_REDIS_URL"],
    }  # fmt: skip
    point_shop_app_at(env["SHOP_BROKER_URL"], env["SHOP_RESULT_BACKEND"])
    shop_worker = ShopWorker(env)
    stack.start_worker()
    try:
        shop_worker.start()
        # When four chains of a Batch job and the app's task run
        parameters = {"sim_seconds": "1.0", "seconds": "1.0"}
        results = [
            chain(
                submit_job.si(f"chain-{i}", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=parameters),
                load_warehouse.s(),
            ).apply_async()
            for i in range(4)
        ]
        loaded = [result.get(timeout=90) for result in results]
        # Then each app step ran once, in the app's worker, after its job
        ran = [json.loads(raw) for raw in notes.lrange(RAN_KEY, 0, -1)]
        loads = [e for e in ran if e["task"] == "shop.load_warehouse"]
        report(
            "rabbitmq chains", app_steps=f"{len(loads)}/4",
            in_app_worker=all(e["worker"].startswith("shop-") for e in loads),
        )  # fmt: skip
        assert sorted(e["received"]["tracking_id"] for e in loads) == sorted(loaded)
        assert all(e["worker"].startswith("shop-") for e in loads)
        assert {e["received"]["status"] for e in loads} == {"SUCCEEDED"}
        for result in results:
            result.forget()
    finally:
        shop_worker.stop()
        gc.collect()
        shop_app.close()


def test_kill_9_of_pollers_worker_with_20_jobs_loses_and_doubles_nothing(
    stack: FaultStack, report: Any
) -> None:
    # Given 20 jobs tracked by one worker, their checks counting down unacked in it
    first = stack.start_worker()
    ids = stack.submit(20, "rmq-crash", seconds=(3.0, 8.0))
    eventually(lambda: sum(1 for r in stack.records(ids) if r.job_id) >= 10, timeout=60)
    # When it is killed -9 and a new one starts
    first.kill()
    killed_at = time.monotonic()
    stack.start_worker()
    # Then every job ends SUCCEEDED, each transition stored once, one Batch job per submission
    records = stack.wait_all_terminal(ids, timeout=120)
    recovery = time.monotonic() - killed_at
    finished = stack.wait_finished_signals(ids)
    submits = stack.batch.calls("SubmitJob")
    report(
        "rabbitmq kill -9", jobs=len(ids), statuses=sorted({r.status.value for r in records}),
        transitions_stored_twice=stack.status_changes_stored_twice(),
        sent_again_same_id=stack.signals_sent_again(), submit_job_calls=submits,
        batch_jobs=batch_jobs_named(stack, "rmq-crash-"), recovery_s=f"{recovery:.1f}",
    )  # fmt: skip
    assert {r.status.value for r in records} == {"SUCCEEDED"}
    assert stack.status_changes_stored_twice() == 0
    assert all(finished[i] == 1 for i in ids)
    assert submits == 20
    assert batch_jobs_named(stack, "rmq-crash-") == 20
    # Countdown checks: checks were rescheduled with a countdown and ran (a job can also end
    # through another job's coalesced call, without a check of its own)
    assert max(r.schedule.checks for r in records) >= 2


def test_a_rabbitmq_restart_with_checks_in_flight_ends_every_job_once(
    stack: FaultStack, rabbitmq: EmbeddedRabbitMQ, report: Any
) -> None:
    # Given 20 jobs whose DescribeJobs calls take 1 s, so checks are running at the restart
    stack.batch.set_faults(response_delay={"DescribeJobs": 1.0})
    worker = stack.start_worker()
    pid = worker.pid
    ids = stack.submit(20, "rmq-restart", seconds=(15.0, 20.0))
    eventually(lambda: all(r.job_id for r in stack.records(ids)), timeout=60)
    calls = stack.batch.calls("DescribeJobs")
    eventually(lambda: stack.batch.calls("DescribeJobs") > calls, timeout=30)
    # When the node restarts (persistent messages in durable queues survive it)
    restarted = time.monotonic()
    rabbitmq.stop()
    rabbitmq.start()
    configure_process(stack.env)  # this process's own connections: to the restarted node
    # Then the same worker goes on and every job ends once
    checks = sum(r.schedule.checks for r in stack.records(ids))
    eventually(
        lambda: worker.is_running and sum(r.schedule.checks for r in stack.records(ids)) > checks,
        timeout=60,
    )
    back = time.monotonic() - restarted
    records = stack.wait_all_terminal(ids, timeout=90)
    finished = stack.wait_finished_signals(ids)
    log = worker.log.read_text()
    report(
        "rabbitmq restart", jobs=len(ids), checks_again_after_s=f"{back:.1f}",
        statuses=sorted({r.status.value for r in records}), same_pid=worker.pid == pid,
        transitions_stored_twice=stack.status_changes_stored_twice(),
        sent_again_same_id=stack.signals_sent_again(),
    )  # fmt: skip
    assert worker.is_running and worker.pid == pid, worker.log_tail()
    assert "Unrecoverable error" not in log
    assert {r.status.value for r in records} == {"SUCCEEDED"}
    assert stack.status_changes_stored_twice() == 0
    assert all(finished[i] == 1 for i in ids)
    assert stack.signals_sent_again() == 0  # no worker died: every signal went out once


def test_checks_lost_with_a_purged_queue_are_resent_by_the_reconciler(
    stack: FaultStack, rabbitmq: EmbeddedRabbitMQ, report: Any
) -> None:
    # Given 10 submitted jobs, and their check messages lost (the worker stopped, its queue purged)
    worker = stack.start_worker()
    ids = stack.submit(10, "rmq-lost", seconds=(2.0, 4.0))
    eventually(lambda: all(r.job_id for r in stack.records(ids)), timeout=60)
    worker.stop()
    queue = stack.env["POLLER_QUEUE"]
    with kombu.Connection(rabbitmq.url) as connection:
        channel = connection.default_channel
        purged = sum(channel.queue_purge(name) or 0 for name in (queue, f"{queue}.checks"))
    # When a worker starts again
    again = stack.start_worker()
    # Then its reconciler re-sends the overdue checks and every job ends once
    records = stack.wait_all_terminal(ids, timeout=90)
    finished = stack.wait_finished_signals(ids)
    resent = again.log.read_text().count("check overdue since")
    report("rabbitmq reconciler", jobs=len(ids), messages_purged=purged, checks_resent=resent)
    assert purged >= 1
    assert resent >= 1
    assert {r.status.value for r in records} == {"SUCCEEDED"}
    assert all(finished[i] == 1 for i in ids)
    assert stack.signals_sent_again() == 0


def test_poller_check_reaches_the_rabbitmq_broker_and_masks_its_password(
    stack: FaultStack, rabbitmq: EmbeddedRabbitMQ
) -> None:
    poller = str(Path(sys.executable).parent / "poller")
    env = {**os.environ, **stack.env}
    checked = subprocess.run(
        [poller, "check", "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    broker = json.loads(checked.stdout)["broker"]
    assert broker["ok"], broker
    assert broker["target"].startswith("amqp://") and "guest:guest" not in broker["target"]
    # And with the node down, the broker is the line that fails
    rabbitmq.stop()
    try:
        down = subprocess.run(
            [poller, "check", "--json"], capture_output=True, text=True, env=env, timeout=60
        )
        assert down.returncode == 3
        results = json.loads(down.stdout)
        assert not results["broker"]["ok"] and results["records"]["ok"]
    finally:
        rabbitmq.start()
