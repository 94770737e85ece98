"""Part of the store: its connection, key prefix and the names of its keys (see the layout in
:mod:`poller.store`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import redis
from pydantic import TypeAdapter
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from poller.models import BatchJobView
from poller.settings.values import mask_url

ACTIVE_INDEX = "active"
QUEUED_INDEX = "queued"
OBSERVE_INDEX = "observe"
CLAIM_KEY = "claim"
OBSERVATION_KEY = "obs"
LOCK_KEY = "lock"
EVENTS_FLOWING_KEY = "events:flowing"
EVENTS_CHANNEL = "events"
JOB_EVENTS_CHANNEL = "events:job"  # + ":<tracking id>": one job's events, for its waiters
UNSENT_KEY = "unsent"
QUARANTINE_KEY = "quarantine"
QUARANTINED_KEY = "quarantined"
VIEW = TypeAdapter(BatchJobView)
EPOCH = datetime.fromtimestamp(0, tz=UTC)
REPLICATION_FENCE_KEY = "replication:fence"  # written before WAIT (see confirm_replicated)
REPLICAS_RECHECK = 30.0  # seconds a primary's count of replicas is trusted
MAX_CONFLICT_RETRIES = 50  # optimistic-lock retries before giving up; conflicts are rare and short


# A hung Redis must fail a call, not block a worker thread forever.
SOCKET_TIMEOUT = 10
CONNECT_TIMEOUT = 5
HEALTH_CHECK_INTERVAL = 30
# A command that meets a lost connection (a restart, a Sentinel failover, the old primary now a
# replica) is sent again after a pause growing to FAILOVER_PAUSE_CAP, for about FAILOVER_WAIT
# seconds in all: a failover (Sentinel's down-after-milliseconds, then its election) fits in it.
FAILOVER_PAUSE_CAP = 1.0
FAILOVER_RETRIES = 30


def sentinel_hosts(url: str) -> tuple[list[tuple[str, int]], str | None, int]:
    """The Sentinels' (host, port) of Celery's Sentinel URL, the master's password (the first
    part that names one) and the database (the last part's path)."""
    hosts: list[tuple[str, int]] = []
    password: str | None = None
    db = 0
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        if parsed.scheme != "sentinel" or not parsed.hostname:
            raise ValueError(f"not a sentinel://host:port URL: {mask_url(part)!r}")
        hosts.append((parsed.hostname, parsed.port or 26379))
        password = password or (unquote(parsed.password) if parsed.password else None)
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
    return hosts, password, db


def connect(
    url: str, sentinel_master: str | None = None, sentinel_password: str | None = None
) -> redis.Redis:
    """A redis-py client on ``url``: a plain one, or the Sentinels' current master, which
    follows a failover (a command in flight is retried on the new master)."""
    retry = Retry(ExponentialBackoff(cap=FAILOVER_PAUSE_CAP, base=0.05), FAILOVER_RETRIES)
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
    }
    if not url.startswith("sentinel://"):
        return redis.Redis.from_url(url, **common)
    if not sentinel_master:
        raise ValueError("a sentinel:// URL needs the master's name (POLLER_SENTINEL_MASTER)")
    hosts, password, db = sentinel_hosts(url)
    sentinels = Sentinel(
        hosts,
        sentinel_kwargs={
            "password": sentinel_password,
            "socket_timeout": CONNECT_TIMEOUT,
            "socket_connect_timeout": CONNECT_TIMEOUT,
        },
    )
    client: redis.Redis = sentinels.master_for(
        sentinel_master, password=password, db=db, retry=retry, **common
    )
    return client


@dataclass(frozen=True)
class Replica:
    """A replica of the primary, and how far behind it is (bytes of the replication stream)."""

    address: str
    lag_bytes: int


@dataclass(frozen=True)
class Topology:
    """The Redis a store is on, as ``poller check`` shows it."""

    role: str
    replicas: list[Replica]
    aof: bool
    rdb_saves: bool | None  # None: the server does not say (CONFIG disabled)
    min_replicas_to_write: int | None

    def warnings(self) -> list[str]:
        """What a production fleet should not run with."""
        found = []
        if not self.replicas:
            found.append("no replicas: a lost server loses the records")
        if not self.aof and self.rdb_saves is False:
            found.append("no persistence: a restart comes back empty")
        return found


class StoreBase:
    """A connection and key prefix: what every part of :class:`poller.store.JobStore` is
    built on. Each part owns one kind of data under the prefix and shares the connection."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "poller",
        record_ttl: int = 604_800,
        count_metrics: bool = True,
    ):
        self.redis = client
        self._replicas = False
        self._replicas_checked_at = -float("inf")
        self.prefix = prefix
        self.record_ttl = record_ttl
        self.count_metrics = count_metrics

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        sentinel_master: str | None = None,
        sentinel_password: str | None = None,
        **kwargs: Any,
    ) -> Self:
        """Create a store on a Redis URL (redis://, rediss://, unix://), or on the master that
        Sentinels name (Celery's form, ``sentinel://h1:26379;sentinel://h2:26379/0``, and
        ``sentinel_master``)."""
        return cls(connect(url, sentinel_master, sentinel_password), **kwargs)

    @classmethod
    def sharing(cls, other: StoreBase) -> Self:
        """A part on ``other``'s connection, prefix and settings."""
        return cls(
            other.redis, prefix=other.prefix, record_ttl=other.record_ttl,
            count_metrics=other.count_metrics,
        )  # fmt: skip

    def confirm_replicated(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until a replica holds every write this store's Redis
        acknowledged so far: True when one does, or when the primary has no replica (nothing
        to wait for); False when none confirmed in time.

        Redis WAIT counts the writes of its own connection: a write of the fence key and WAIT
        go out together on one connection, and the replication stream is ordered, so a replica
        that has the fence has every write acknowledged before it.
        """
        if timeout <= 0 or not self._has_replicas():
            return True
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(self.key(REPLICATION_FENCE_KEY))
            pipe.wait(1, int(timeout * 1000))
            _, replicas = pipe.execute()
        return int(replicas) >= 1

    def topology(self) -> Topology:
        """What the Redis holding this store is: its role, its replicas and their lag, its
        persistence and ``min-replicas-to-write`` (None where the server does not say: CONFIG
        may be disabled, as on ElastiCache)."""
        replication = self.redis.info("replication")
        persistence = self.redis.info("persistence")
        offset = int(replication.get("master_repl_offset", 0))
        replicas = [
            Replica(f"{value.get('ip')}:{value.get('port')}", offset - int(value.get("offset", 0)))
            for key, value in replication.items()
            if key.startswith("slave") and isinstance(value, dict)
        ]
        try:
            configured = dict(self.redis.config_get("min-replicas-to-write"))
            configured.update(self.redis.config_get("save"))
            min_replicas: int | None = int(configured.get("min-replicas-to-write") or 0)
            rdb: bool | None = bool(str(configured.get("save") or "").strip())
        except redis.ResponseError:  # CONFIG disabled (ElastiCache): the server does not say
            min_replicas = rdb = None
        return Topology(
            role=str(replication.get("role", "?")),
            replicas=replicas,
            aof=bool(int(persistence.get("aof_enabled", 0))),
            rdb_saves=rdb,
            min_replicas_to_write=min_replicas,
        )

    def _has_replicas(self) -> bool:
        """Whether the primary has a connected replica (asked again every REPLICAS_RECHECK s)."""
        now = time.monotonic()
        if now >= self._replicas_checked_at + REPLICAS_RECHECK:
            info = self.redis.info("replication")
            self._replicas = int(info.get("connected_slaves", 0)) > 0
            self._replicas_checked_at = now
        return self._replicas

    def key(self, *parts: str) -> str:
        """A Redis key (or channel) under this store's prefix."""
        return ":".join((self.prefix, *parts))

    @property
    def channel(self) -> str:
        """The pub/sub channel every job's events are published on (``poller events``)."""
        return self.key(EVENTS_CHANNEL)

    def job_channel(self, tracking_id: str) -> str:
        """The pub/sub channel one job's events are also published on: a waiter listens there
        and receives its own job's events only."""
        return self.key(JOB_EVENTS_CHANNEL, tracking_id)
