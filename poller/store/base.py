"""Part of the store: its connection, key prefix and the names of its keys (see the layout in
:mod:`poller.store`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

import redis
from pydantic import TypeAdapter

from poller.models import BatchJobView

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
MAX_CONFLICT_RETRIES = 50  # optimistic-lock retries before giving up; conflicts are rare and short


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
        self.prefix = prefix
        self.record_ttl = record_ttl
        self.count_metrics = count_metrics

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """Create a store on a Redis URL (redis://, rediss://, unix://)."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            # A hung Redis must fail a call, not block a worker thread forever.
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        return cls(client, **kwargs)

    @classmethod
    def sharing(cls, other: StoreBase) -> Self:
        """A part on ``other``'s connection, prefix and settings."""
        return cls(
            other.redis, prefix=other.prefix, record_ttl=other.record_ttl,
            count_metrics=other.count_metrics,
        )  # fmt: skip

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
