"""Wiring the local stack together: the environment that points poller at its servers."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_batch_emulator import LocalBatch

    from poller.testing.redis_server import EmbeddedRedis
    from poller.testing.sentinel_group import SentinelGroup


# The Celery settings that name servers or depend on poller's settings.
CONNECTION_SETTINGS = (
    "broker_url",
    "broker_transport",
    "result_backend",
    "broker_transport_options",
    "result_backend_transport_options",
    "task_routes",
    "task_default_queue",
)


def stack_env(
    redis_server: EmbeddedRedis, batch: LocalBatch, *, initial_delay: float, max_delay: float
) -> dict[str, str]:
    """Environment for poller processes using these servers, with short poll delays.

    The broker uses Redis db 0 and the job records and results db 1, so tests can flush the
    records without touching the broker's queues and bindings under a running worker.
    """
    return {
        **batch.environ(),
        "POLLER_BROKER_URL": _database(redis_server, 0),
        "POLLER_REDIS_URL": records_url(redis_server),
        "POLLER_POLL_INITIAL_DELAY": str(initial_delay),
        "POLLER_POLL_MAX_DELAY": str(max_delay),
        "POLLER_POLL_JITTER": "0.1",
        "POLLER_AWS_RETRY_DELAY": "0.2",
        "POLLER_NOT_FOUND_GRACE": "5",
    }


def sentinel_stack_env(
    group: SentinelGroup, batch: LocalBatch, *, initial_delay: float, max_delay: float
) -> dict[str, str]:
    """:func:`stack_env` for a replication group watched by Sentinels: the broker on its
    database 0, the records and results on database 1, through the Sentinels' URLs."""
    hosts = group.url.rsplit("/", 1)[0]
    return {
        **batch.environ(),
        "POLLER_BROKER_URL": f"{hosts}/0",
        "POLLER_REDIS_URL": f"{hosts}/1",
        "POLLER_SENTINEL_MASTER": group.master_name,
        "POLLER_POLL_INITIAL_DELAY": str(initial_delay),
        "POLLER_POLL_MAX_DELAY": str(max_delay),
        "POLLER_POLL_JITTER": "0.1",
        "POLLER_AWS_RETRY_DELAY": "0.2",
        "POLLER_NOT_FOUND_GRACE": "5",
    }


def records_url(redis_server: EmbeddedRedis) -> str:
    """The URL of the database holding job records and results (db 1)."""
    return _database(redis_server, 1)


def _database(redis_server: EmbeddedRedis, db: int) -> str:
    return f"{redis_server.url.rsplit('/', 1)[0]}/{db}"


def configure_process(env: dict[str, str]) -> None:
    """Point this process's poller (settings, Celery app, boto3) at the given environment."""
    from poller import runtime
    from poller.app import app, celery_config
    from poller.settings import get_settings

    os.environ.update(env)
    get_settings.cache_clear()
    runtime.get_runtime.cache_clear()
    runtime.get_store.cache_clear()
    # Drop connections to the previous servers: Celery caches its broker pool and backend.
    app.close()
    app.amqp._producer_pool = None  # type: ignore[attr-defined]  # close() may keep it
    app._local.__dict__.pop("backend", None)  # type: ignore[attr-defined]
    config = celery_config()
    app.conf.update({name: config[name] for name in CONNECTION_SETTINGS})
