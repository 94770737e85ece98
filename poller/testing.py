"""pytest fixtures for poller's tests and for apps that use poller (a pytest plugin).

Installed with poller, the plugin registers these fixtures (all real servers, on 127.0.0.1):

- ``poller_redis``: an embedded Redis server for the session (:class:`EmbeddedRedis`);
- ``poller_batch``: the local AWS Batch endpoint for the session, process runtime;
- ``poller_env``: the environment that points poller (and boto3) at both; applied to this process;
- ``poller_worker``: a real ``celery -A poller worker`` child process for the session;
- ``redis_client``: a client on the embedded Redis, flushed before each test.

A server that cannot start fails the test with the reason; it is never skipped. Extra modules
for the worker to import (signal receivers, say) go in the ``poller_worker_includes`` fixture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from poller.local import LocalStackError

if TYPE_CHECKING:  # imported in the fixtures: the plugin loads even without poller[local]
    from poller.local.batch_server import LocalBatch
    from poller.local.redis_server import EmbeddedRedis

WORKER_START_TIMEOUT = 60.0


class Worker:
    """A ``celery -A poller worker`` child process, stopped by its pid."""

    def __init__(self, env: dict[str, str], includes: list[str], concurrency: int = 8) -> None:
        self.env = env
        self.includes = includes
        self.concurrency = concurrency
        self.log = Path(tempfile.mkstemp(prefix="poller-worker-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        """Start the worker and wait until it answers a ping."""
        command = [sys.executable, "-m", "celery", "-A", "poller", "worker", "-P", "threads"]
        command += ["-c", str(self.concurrency), "--loglevel", "INFO", "--without-mingle"]
        command += ["--without-gossip", "-n", f"poller-test-{os.getpid()}@%h"]
        if self.includes:
            command += ["--include", ",".join(self.includes)]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        from poller.app import app

        assert self.process is not None
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalStackError(f"worker exited early: {self.log_tail()}")
            if app.control.ping(timeout=0.5):
                return
        raise LocalStackError(f"worker did not answer a ping: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the worker logged."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL after ``timeout``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the worker at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def configure_process(env: dict[str, str]) -> None:
    """Point this process's poller (settings, Celery app, boto3) at the given environment."""
    from poller import lifecycle
    from poller.app import app
    from poller.settings import get_settings

    os.environ.update(env)
    get_settings.cache_clear()
    lifecycle.get_runtime.cache_clear()
    lifecycle.get_store.cache_clear()
    settings = get_settings()
    app.conf.update(
        broker_url=settings.broker_url.get_secret_value(),
        result_backend=settings.effective_result_backend,
    )


@pytest.fixture(scope="session")
def poller_redis() -> Iterator[EmbeddedRedis]:
    """An embedded Redis server for the whole session."""
    from poller.local.redis_server import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def poller_batch() -> Iterator[LocalBatch]:
    """The local AWS Batch endpoint (process runtime) for the whole session."""
    from poller.local.batch_server import LocalBatch

    with LocalBatch(runtime="process", concurrency=8, stage_seconds=0.1) as batch:
        yield batch


@pytest.fixture(scope="session")
def poller_env(poller_redis: EmbeddedRedis, poller_batch: LocalBatch) -> dict[str, str]:
    """Environment pointing poller at the embedded servers, with short poll delays."""
    env = {
        **poller_batch.environ(),
        # Broker on db 0, records and results on db 1: tests flush db 1 without touching
        # the broker's queues and bindings under a running worker.
        "POLLER_BROKER_URL": poller_redis.url,
        "POLLER_REDIS_URL": poller_redis.url.rsplit("/", 1)[0] + "/1",
        "POLLER_POLL_INITIAL_DELAY": "0.3",
        "POLLER_POLL_MAX_DELAY": "1.0",
        "POLLER_POLL_JITTER": "0.1",
        "POLLER_AWS_RETRY_DELAY": "0.2",
        "POLLER_NOT_FOUND_GRACE": "5",
    }
    configure_process(env)
    return env


@pytest.fixture(scope="session")
def poller_worker_includes() -> list[str]:
    """Modules the session's worker imports at start (override to add signal receivers)."""
    return []


@pytest.fixture(scope="session")
def poller_worker(
    poller_env: dict[str, str], poller_worker_includes: list[str]
) -> Iterator[Worker]:
    """A real Celery worker for the session, connected to the embedded servers."""
    worker = Worker(poller_env, poller_worker_includes)
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def redis_client(poller_env: dict[str, str]) -> Iterator[redis.Redis]:
    """A client on the records' database of the embedded Redis, flushed before the test."""
    client = redis.Redis.from_url(poller_env["POLLER_REDIS_URL"], decode_responses=True)
    client.flushdb()
    yield client
    client.close()
