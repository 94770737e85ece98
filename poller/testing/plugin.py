"""pytest fixtures for poller's tests and for apps that use poller (the pytest plugin).

Installed with poller, the plugin registers these fixtures (all real servers, on 127.0.0.1):

- ``poller_redis``: an embedded Redis server for the session (:class:`EmbeddedRedis`);
- ``poller_batch``: the local AWS Batch endpoint for the session, process runtime;
- ``poller_env``: the environment that points poller (and boto3) at both; applied to this process;
- ``poller_worker``: a real ``celery -A poller worker`` child process for the session;
- ``poller_redis_client``: a client on the embedded Redis, flushed before each test.


A server that cannot start fails the test with the reason; it is never skipped. Extra modules
for the worker to import (signal receivers, say) go in the ``poller_worker_includes`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import redis

from poller.testing.stack import configure_process, records_url, stack_env
from poller.testing.worker import Worker

if TYPE_CHECKING:  # imported in the fixtures: the plugin loads even without poller[local]
    from aws_batch_emulator import LocalBatch

    from poller.testing.redis_server import EmbeddedRedis


@pytest.fixture(scope="session")
def poller_redis() -> Iterator[EmbeddedRedis]:
    """An embedded Redis server for the whole session."""
    from poller.testing.redis_server import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def poller_batch() -> Iterator[LocalBatch]:
    """The local AWS Batch endpoint (process runtime) for the whole session."""
    from aws_batch_emulator import LocalBatch

    with LocalBatch(runtime="process", concurrency=8, stage_seconds=0.1) as batch:
        yield batch


@pytest.fixture(scope="session")
def poller_env(poller_redis: EmbeddedRedis, poller_batch: LocalBatch) -> dict[str, str]:
    """Environment pointing poller at the embedded servers, with short poll delays."""
    env = stack_env(poller_redis, poller_batch, initial_delay=0.3, max_delay=1.0)
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
def poller_redis_client(poller_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A client on the records' database of the embedded Redis (the one ``poller_env`` points
    POLLER_REDIS_URL at), flushed before the test. Needs no Batch endpoint."""
    client = redis.Redis.from_url(records_url(poller_redis), decode_responses=True)
    client.flushdb()
    yield client
    client.close()
