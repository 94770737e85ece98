"""The only owner of poller's Redis data: records, indexes, claims, observations, locks, events.

No other module of poller reads or writes these keys; it may import ``poller.models``,
``poller.errors``, ``poller.status`` and ``poller.settings.values`` (URL masking) only
(import-linter's contracts in pyproject.toml).
:class:`JobStore` owns the records; its parts, each a small class owning one kind of data on
the same connection, are its attributes (``observations``, ``unsent``, ``fleet``,
``counters``, ``budget``). Layout (``<p>`` is the key prefix)::

    <p>:job:<tracking_id>   JSON JobRecord                 (expires record_ttl after the job ends)
    <p>:jobid:<batch id>    tracking id of a Batch job id   (same expiry as its record)
    <p>:idem:<key>          tracking id owning an idempotency key   (expires after record_ttl)
    <p>:active              sorted set: submitted job's tracking id -> next check (epoch s)
    <p>:queued              sorted set: not yet submitted job's tracking id -> when due
    <p>:observe             sorted set: submitted job's tracking id -> when it next needs a
                            Batch observation (its next check; coalesced checks move it later),
                            for jobs of the default AWS target; ``<p>:observe:<profile>@<region>``
                            for the jobs of each other target (one call describes one target)
    <p>:claim:<tracking_id> the tracking id of the check describing that job now (expires)
    <p>:obs:<tracking_id>   JSON {"at": ISO time, "view": BatchJobView | null}: what a coalesced
                            call saw of the job, for its own check (expires)
    <p>:lock:<name>         a lock held by one worker for a while (expires): ``reconcile``
    <p>:events:flowing      exists while the workers' event consumers see Batch events (expires)
    <p>:metrics:*           the fleet's job metrics: see :mod:`poller.store.counters`
    <p>:events              pub/sub channel of JSON events, every job's
    <p>:events:job:<tracking_id>  pub/sub channel of the same events, that job's only (waiters)
    <p>:unsent:<tracking_id>  list: the job's events whose signals are not known to be sent
                            (the outbox: written with the transition, emptied once sent)
    <p>:unsent              sorted set: tracking id -> when its oldest unsent event was stored
    <p>:quarantine          sorted set: tracking id of a record that could not be read back ->
                            when it was set aside (``poller check`` lists them)
    <p>:quarantined:<tracking_id>  the unreadable record, as it was (same expiry as records)
    <p>:unacked*            kombu's unacked-message keys for poller's queue (the broker's, named
                            in :mod:`poller.app`; listed here so the prefix's keys are all known)

Lua scripts live beside this module, in ``scripts/``.

Every change goes through :meth:`JobStore.update`: an optimistic transaction (WATCH/MULTI) that
bumps the record's version, so two workers acting on the same job (a redelivered check, a race
after a crash) cannot both store a transition: the loser re-reads and finds nothing left to do.
Events are published inside the same transaction, so each is published exactly once, and put
in the job's outbox, so their signals are sent at least once (:mod:`poller.core.outbox`).
Errors of redis-py reach the caller as they are (``redis.RedisError``): Celery's tasks retry
them, and the command line prints them as one line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from pydantic import ValidationError

from poller.errors import JobNotFound, RecordUnreadable, StoreConflict
from poller.models import JobRecord, target_key
from poller.models.announcement import Announcement
from poller.store import counters
from poller.store.base import (
    ACTIVE_INDEX,
    EPOCH,
    MAX_CONFLICT_RETRIES,
    QUARANTINE_KEY,
    QUARANTINED_KEY,
    QUEUED_INDEX,
    UNSENT_KEY,
    StoreBase,
)
from poller.store.budget import CallBudgets
from poller.store.counters import FleetCounters
from poller.store.fleet import FleetState
from poller.store.observations import Observations
from poller.store.unsent import UnsentSignals
from poller.store.writes import Writes

__all__ = ["Change", "JobStore", "Writes"]

logger = logging.getLogger(__name__)


@dataclass
class Change:
    """What an update function decided: the new record and the events it causes."""

    record: JobRecord
    events: list[Announcement] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)  # the events as the store wrote them


class JobStore(StoreBase):
    """Job records, their indexes and events in Redis; and the store's other parts, each
    owning one kind of data on the same connection: ``observations`` (coalesced checks'
    claims and observations), ``unsent`` (the signals' outbox), ``fleet`` (whether events flow,
    locks), ``counters`` (the fleet's metrics counters) and ``budget`` (the AWS call budget)."""

    def __init__(self, client: redis.Redis, **settings: Any):
        """``settings``: StoreBase's (prefix, record_ttl, count_metrics), shared by the parts."""
        super().__init__(client, **settings)
        self.observations = Observations.sharing(self)
        self.unsent = UnsentSignals.sharing(self)
        self.fleet = FleetState.sharing(self)
        self.counters = FleetCounters.sharing(self)
        self.budget = CallBudgets.sharing(self)

    def get(self, tracking_id: str) -> JobRecord:
        """Return a job's record; JobNotFound when there is none."""
        raw = self.redis.get(self.key("job", tracking_id))
        if raw is None:
            raise JobNotFound(f"no job is tracked under id {tracking_id!r}")
        record = self._read(tracking_id, raw)
        if record is None:
            raise RecordUnreadable(f"job {tracking_id}: its record could not be read; set aside")
        return record

    def _read(self, tracking_id: str, raw: str | bytes) -> JobRecord | None:
        """The stored record, or None when it cannot be read back: it is then set aside.

        Redis is outside poller's process: a record written by another version, or by someone
        with write access, must not fail every page (reconciler, safety net, CLI) it is on.
        """
        try:
            return JobRecord.model_validate_json(raw)
        except ValidationError as err:
            self.quarantine(tracking_id, raw, err)
            return None

    def quarantine(self, tracking_id: str, raw: str | bytes, err: Exception) -> None:
        """Set an unreadable record aside: out of every index, kept as it was for a look."""
        logger.error("job %s: stored record unreadable, set aside: %.300s", tracking_id, err)
        with self.redis.pipeline() as pipe:  # MULTI: moved and unindexed together
            pipe.set(self.key(QUARANTINED_KEY, tracking_id), raw, ex=self.record_ttl)
            pipe.delete(self.key("job", tracking_id))
            pipe.zadd(self.key(QUARANTINE_KEY), {tracking_id: time.time()})
            for index in (
                self.key(ACTIVE_INDEX),
                self.key(QUEUED_INDEX),
                _observe_index(self, raw),
            ):
                pipe.zrem(index, tracking_id)
            pipe.execute()

    def quarantined(self, limit: int = 100) -> list[str]:
        """Tracking ids of records set aside as unreadable, newest first."""
        ids = self.redis.zrevrange(self.key(QUARANTINE_KEY), 0, limit - 1)
        return [str(i) for i in ids]

    def tracking_ids_for_jobs(self, job_ids: list[str]) -> dict[str, str]:
        """The tracking ids of Batch job ids poller saw (the others are left out); one round
        trip."""
        if not job_ids:
            return {}
        found = self.redis.mget([self.key("jobid", job_id) for job_id in job_ids])
        return {j: str(t) for j, t in zip(job_ids, found, strict=True) if t is not None}

    def find(self, tracking_id: str) -> JobRecord | None:
        """Return a job's record, or None when there is none."""
        try:
            return self.get(tracking_id)
        except JobNotFound:
            return None

    def tracking_id_for_job(self, job_id: str) -> str:
        """Return the tracking id of a Batch job id; JobNotFound when poller never saw it."""
        tracking_id = self.redis.get(self.key("jobid", job_id))
        if tracking_id is None:
            raise JobNotFound(f"no tracked job has Batch job id {job_id!r}")
        return str(tracking_id)

    def create(self, record: JobRecord, idempotency_key: str | None = None) -> JobRecord:
        """Store a new record; when the idempotency key is taken, return the owner's record.

        The record is written before the key is claimed, so whoever finds the key taken also
        finds its owner's record (a missing one means it expired and the key is free again).
        """
        job_key = self.key("job", record.tracking_id)
        if not self.redis.set(job_key, _dumped(record), nx=True):
            return self.get(record.tracking_id)  # a redelivered submit: the first one's record
        if idempotency_key is not None:
            idem_key = self.key("idem", idempotency_key)
            if not self.redis.set(idem_key, record.tracking_id, nx=True, ex=self.record_ttl):
                existing = self.find(str(self.redis.get(idem_key)))
                if existing is not None and existing.tracking_id != record.tracking_id:
                    self.redis.delete(job_key)
                    return existing
                self.redis.set(idem_key, record.tracking_id, ex=self.record_ttl)
        writes = Writes()  # indexed and counted together, in one command
        self._index_active(record, writes)
        if self.count_metrics:
            counters.count_change(writes, self.key, None, record)
        writes.run(self.redis)
        return record

    def _index_active(self, record: JobRecord, target: Writes) -> None:
        submitted, queued = self.key(ACTIVE_INDEX), self.key(QUEUED_INDEX)
        tracking_id = record.tracking_id
        when = record.schedule.next_check_at.timestamp() if record.schedule.next_check_at else 0.0
        # Only submitted jobs still running need Batch observations (coalesced checks)
        if record.is_terminal or record.job_id is None:
            target.zrem(self.observations.observe_index(record.target_key), tracking_id)
        else:
            target.zadd(self.observations.observe_index(record.target_key), {tracking_id: when})
        if record.is_terminal and record.celery.resolved:
            target.zrem(submitted, tracking_id)
            target.zrem(queued, tracking_id)
            return
        # Jobs not yet submitted have an index of their own: the reconciler re-sends their
        # submission rather than a check.
        index, other = (queued, submitted) if record.job_id is None else (submitted, queued)
        target.zadd(index, {tracking_id: when})
        target.zrem(other, tracking_id)

    def update(
        self, tracking_id: str, decide: Callable[[JobRecord], Change | None]
    ) -> Change | None:
        """Apply ``decide`` to the current record atomically; None when it changed nothing.

        ``decide`` may run more than once (after a conflicting write) and must be pure.
        """
        changes, records = self.update_each({tracking_id: decide})
        if tracking_id not in records:
            raise JobNotFound(f"no job is tracked under id {tracking_id!r}")
        return changes.get(tracking_id)

    def update_each(
        self, decisions: dict[str, Callable[[JobRecord], Change | None]]
    ) -> tuple[dict[str, Change], dict[str, JobRecord]]:
        """Apply each job's ``decide`` to its current record, all in one transaction (three
        round trips whatever the number of jobs; a conflicting write retries them all).

        Returns the changes made, and every job's record now (jobs without one are left out).
        """
        keys = [self.key("job", tracking_id) for tracking_id in decisions]
        for _ in range(MAX_CONFLICT_RETRIES):
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(*keys)  # type: ignore[no-untyped-call]
                    raws = pipe.mget(keys) if keys else []
                    changes: dict[str, Change] = {}
                    records: dict[str, JobRecord] = {}
                    writes = []
                    unreadable: dict[str, tuple[str | bytes, ValidationError]] = {}
                    for (tracking_id, decide), raw in zip(decisions.items(), raws, strict=True):
                        if raw is None:
                            continue
                        try:
                            current = JobRecord.model_validate_json(raw)
                        except ValidationError as err:  # set aside once the rest is stored
                            unreadable[tracking_id] = (raw, err)
                            continue
                        change = decide(current)
                        records[tracking_id] = current if change is None else change.record
                        if change is not None:
                            _number_versions(change, current.version)
                            changes[tracking_id] = change
                            writes.append((change, current))
                    if writes:
                        pipe.multi()
                        for change, current in writes:
                            self._write(change, current).run(pipe)
                        pipe.execute()
                    else:
                        pipe.unwatch()
                except redis.WatchError:
                    logger.debug("jobs %s: concurrent update, retrying", ", ".join(decisions))
                    continue
            for tracking_id, (raw, error) in unreadable.items():
                self.quarantine(tracking_id, raw, error)
            return changes, records
        raise StoreConflict(f"jobs {', '.join(decisions)}: too many concurrent updates")

    def _write(self, change: Change, previous: JobRecord) -> Writes:
        """The writes that store ``change`` (its record, indexes, counts, events)."""
        writes = Writes()
        record = change.record
        if self.count_metrics:
            counters.count_change(writes, self.key, previous, record)
        job_key = self.key("job", record.tracking_id)
        ttl = self.record_ttl if record.is_terminal else None
        writes.set(job_key, _dumped(record), ex=ttl)
        if record.job_id:
            writes.set(self.key("jobid", record.job_id), record.tracking_id, ex=ttl)
        self._index_active(record, writes)
        if not change.events:
            return writes
        stored_at = time.time()
        change.stored = [event.to_json(stored_at) for event in change.events]
        job_channel = self.job_channel(record.tracking_id)
        for entry in change.stored:
            writes.publish(self.channel, entry)
            writes.publish(job_channel, entry)
        outbox = self.key(UNSENT_KEY, record.tracking_id)
        writes.rpush(outbox, *change.stored)
        writes.expire(outbox, self.record_ttl)
        writes.zadd(self.key(UNSENT_KEY), {record.tracking_id: stored_at}, nx=True)
        return writes

    def active(
        self, *, due_before: datetime | None = None, limit: int = 1000, queued: bool = False,
        start: int = 0,
    ) -> list[str]:  # fmt: skip
        """Tracking ids of submitted active jobs (or, with ``queued``, of jobs not submitted
        yet), soonest due first, from the ``start``-th on; only those due before ``due_before``
        when given."""
        upper: float | str = due_before.timestamp() if due_before else "+inf"
        index = self.key(QUEUED_INDEX if queued else ACTIVE_INDEX)
        return [str(i) for i in self.redis.zrangebyscore(index, "-inf", upper, start, limit)]

    def count_active(self, *, due_before: datetime, queued: bool = False) -> int:
        """How many submitted active jobs (or, with ``queued``, jobs not submitted yet) are due
        before ``due_before``."""
        index = self.key(QUEUED_INDEX if queued else ACTIVE_INDEX)
        return int(self.redis.zcount(index, "-inf", due_before.timestamp()))

    def records(self, tracking_ids: list[str]) -> list[JobRecord]:
        """Records for many tracking ids in one round trip (missing ones are skipped)."""
        if not tracking_ids:
            return []
        raws = self.redis.mget([self.key("job", t) for t in tracking_ids])
        found = (self._read(t, raw) for t, raw in zip(tracking_ids, raws, strict=True) if raw)
        return [record for record in found if record is not None]

    def list(self, *, active_only: bool = False, limit: int = 50) -> list[JobRecord]:
        """Up to ``limit`` records, most recently accepted first.

        Active jobs come from their index; all jobs need a SCAN of the job keys, which is meant
        for operators' listings, not for hot paths.
        """
        if active_only:
            ids = [str(i) for i in self.redis.zrange(self.key(QUEUED_INDEX), 0, -1)]
            ids += [str(i) for i in self.redis.zrange(self.key(ACTIVE_INDEX), 0, -1)]
        else:
            prefix = self.key("job", "")
            keys = self.redis.scan_iter(match=self.key("job", "*"), count=1000)
            ids = [str(key)[len(prefix) :] for key in keys]
        records = self.records(ids)
        records.sort(key=lambda r: r.history[0].observed_at if r.history else EPOCH, reverse=True)
        return records[:limit]

    @contextmanager
    def subscribe(
        self, tracking_id: str | None = None, timeout: float = 5.0
    ) -> Iterator[redis.client.PubSub]:
        """Subscribe to the events of one job (``tracking_id``) or of every job; yields once
        Redis confirmed the subscription.

        Waiting for the confirmation means any event published after this returns is seen,
        so a reader can subscribe, then read the record, without a gap between the two.
        """
        channel = self.channel if tracking_id is None else self.job_channel(tracking_id)
        pubsub = self.redis.pubsub()
        try:
            pubsub.subscribe(channel)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=deadline - time.monotonic())
                if message is not None and message["type"] == "subscribe":
                    break
            else:
                raise TimeoutError(f"Redis did not confirm the subscription to {channel}")
            pubsub.ignore_subscribe_messages = True
            yield pubsub
        finally:
            pubsub.close()


def _observe_index(store: JobStore, raw: str | bytes) -> str:
    """The observe index an unreadable record is in: its target's, if its JSON still names one."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    fields = data if isinstance(data, dict) else {}
    profile, region = fields.get("aws_profile"), fields.get("aws_region")
    return store.observations.observe_index(target_key(profile, region))


def _dumped(record: JobRecord) -> str:
    """The record as stored; a field holding a value of the wrong type fails the write here,
    instead of storing a record no one can read back (pydantic would only warn)."""
    return record.model_dump_json(warnings="error")


def _number_versions(change: Change, previous: int) -> None:
    """Give the change's record its version: one more than ``previous`` per decision step it
    folds (events applied in a row), each step's record (its events' record) the step's own,
    so event ids (``<tracking id>:<version>:<signal>``) stay unique within one transaction."""
    steps = list({id(event.record): event.record for event in change.events}.values())
    if not any(record is change.record for record in steps):
        steps.append(change.record)
    for number, record in enumerate(steps, start=previous + 1):
        record.version = number
