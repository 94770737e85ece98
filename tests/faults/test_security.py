"""Security basics: JSON only, a password-protected Redis, no AWS secret in Redis or messages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

from poller import JobHandle, submit_job
from poller.app import app
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.stack import configure_process, stack_env
from poller.testing.worker import Worker
from tests.conftest import eventually
from tests.faults.tls_proxy import TlsProxy, write_self_signed_certificate

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


@pytest.fixture
def tls_stack(
    fault_batch: LocalBatch, tmp_path: Path
) -> Iterator[tuple[TlsProxy, dict[str, str], Path]]:
    """A password-protected Redis that poller reaches only through TLS (rediss://: a TLS
    endpoint in front of it), and a worker on it."""
    saved = dict(os.environ)
    cert, key = write_self_signed_certificate(tmp_path)
    with EmbeddedRedis(password=PASSWORD) as server, TlsProxy(server.port, cert, key) as proxy:
        tls = f"ssl_cert_reqs=required&ssl_ca_certs={cert}"
        base = f"rediss://:{PASSWORD}@127.0.0.1:{proxy.port}"
        env = {
            **stack_env(server, fault_batch, initial_delay=0.3, max_delay=1.0),
            "POLLER_BROKER_URL": f"{base}/0?{tls}",
            "POLLER_REDIS_URL": f"{base}/1?{tls}",
        }
        configure_process(env)
        worker = Worker(env)
        try:
            worker.start()
            yield proxy, env, cert
        finally:
            worker.stop()
            os.environ.clear()
            os.environ.update(saved)
            configure_process({})


def test_rediss_urls_track_a_job_over_verified_tls(
    tls_stack: tuple[TlsProxy, dict[str, str], Path], report: Any
) -> None:
    proxy, env, cert = tls_stack
    # Given a server that only speaks TLS with a certificate clients must verify
    unverified = env["POLLER_REDIS_URL"].replace(f"&ssl_ca_certs={cert}", "")
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis.Redis.from_url(unverified).ping()
    # When a job is submitted, run and tracked through rediss:// URLs (broker, results, records)
    result = submit_job.delay(
        "tls-1", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters={"sim_seconds": "0.3"}
    )
    outcome = result.get(timeout=60)
    # Then it succeeds, every connection having gone through TLS
    report("rediss", status=outcome["status"], tls_connections=proxy.tls_connections)
    assert outcome["status"] == "SUCCEEDED"
    assert JobHandle(result.id).record.status.value == "SUCCEEDED"
    assert proxy.tls_connections >= 3  # this process, the worker's consumer and its producer
