"""Security basics: JSON only, a password-protected Redis, no AWS secret in Redis or messages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from poller import JobHandle, submit_job
from poller.app import app
from poller.local.batch_server import LocalBatch
from poller.local.redis_server import EmbeddedRedis
from poller.local.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from poller.local.stack import configure_process, stack_env
from poller.local.worker import Worker
from tests.conftest import eventually

pytestmark = pytest.mark.integration
PASSWORD = "redis-pw-Qx81"
AWS_SECRET = "aws-secret-Zk42-never-in-redis"


@pytest.fixture
def secured(fault_batch: LocalBatch) -> Iterator[tuple[EmbeddedRedis, Worker]]:
    """A password-protected Redis and a worker whose AWS secret key is distinctive."""
    saved = dict(os.environ)
    with EmbeddedRedis(password=PASSWORD) as server:
        env = {
            **stack_env(server, fault_batch, initial_delay=0.3, max_delay=1.0),
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        }
        configure_process(env)
        worker = Worker(env)
        try:
            worker.start()
            yield server, worker
        finally:
            worker.stop()
            os.environ.clear()
            os.environ.update(saved)
            configure_process({})


def test_a_password_protected_redis_tracks_jobs_and_no_aws_secret_is_stored(
    secured: tuple[EmbeddedRedis, Worker], report: Any
) -> None:
    server, worker = secured
    # Given a server that refuses clients without the password
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=server.port).set("k", "v")
    # When a job runs through it
    result = submit_job.delay(
        "secure-1", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters={"sim_seconds": "0.3"}
    )
    assert result.get(timeout=60)["status"] == "SUCCEEDED"
    # Then no key or value in any database holds the AWS secret
    scanned = 0
    for db in (0, 1):
        client = redis.Redis(port=server.port, password=PASSWORD, db=db)
        for key in client.scan_iter(count=1000):
            scanned += 1
            kind = client.type(key)
            dump = client.dump(key) or b""
            assert AWS_SECRET.encode() not in key + dump, (key, kind)
        client.close()
    # And the worker's log masks the Redis password
    log = worker.log_tail(100000)
    report(
        "security", keys_scanned=scanned, secret_found=False, password_in_worker_log=PASSWORD in log
    )
    assert scanned > 0
    assert PASSWORD not in log


def test_a_pickled_message_is_refused_by_the_worker(secured: tuple[EmbeddedRedis, Worker]) -> None:
    _, worker = secured
    # Given a message serialized with pickle (which would let a broker message run code)
    app.send_task("poller.check_job", args=("pickled", 0), serializer="pickle", task_id="pickled")
    # Then the worker refuses to deserialize it
    eventually(lambda: "ContentDisallowed" in worker.log_tail(100000), timeout=30)
    assert JobHandle("pickled").store.find("pickled") is None
