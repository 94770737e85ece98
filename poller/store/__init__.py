"""The only owner of poller's Redis data: records, indexes, claims, observations, locks, events.

No other module of poller reads or writes these keys; it may import ``poller.signals``,
``poller.models`` and ``poller.errors`` only (import-linter's contracts in pyproject.toml). Layout (``<p>`` is the key prefix)::

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
    <p>:metrics:*           the fleet's job metrics: see :mod:`poller.store.metrics`
    <p>:events              pub/sub channel of JSON events
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

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis
from pydantic import TypeAdapter, ValidationError
from redis.commands.core import Script

from poller.errors import JobNotFound, RecordUnreadable, StoreConflict
from poller.models import BatchJobView, JobRecord
from poller.signals import Event
from poller.store import metrics

logger = logging.getLogger(__name__)

ACTIVE_INDEX = "active"
QUEUED_INDEX = "queued"
OBSERVE_INDEX = "observe"
CLAIM_KEY = "claim"
OBSERVATION_KEY = "obs"
LOCK_KEY = "lock"
EVENTS_FLOWING_KEY = "events:flowing"
EVENT_COUNTS_KEY = metrics.EVENTS
EVENTS_CHANNEL = "events"
UNSENT_KEY = "unsent"
QUARANTINE_KEY = "quarantine"
QUARANTINED_KEY = "quarantined"
_VIEW = TypeAdapter(BatchJobView)
_EPOCH = datetime.fromtimestamp(0, tz=UTC)
_MAX_CONFLICT_RETRIES = 50  # optimistic-lock retries before giving up; conflicts are rare and short


@dataclass
class Change:
    """What an update function decided: the new record and the events it causes."""

    record: JobRecord
    events: list[Event] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)  # the events as the store wrote them


class JobStore:
    """Job records, their indexes and events in Redis."""

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
    def from_url(cls, url: str, **kwargs: Any) -> JobStore:
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

    def key(self, *parts: str) -> str:
        """A Redis key (or channel) under this store's prefix."""
        return ":".join((self.prefix, *parts))

    @property
    def channel(self) -> str:
        """The pub/sub channel events are published on."""
        return self.key(EVENTS_CHANNEL)

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
            for index in (ACTIVE_INDEX, QUEUED_INDEX, OBSERVE_INDEX):
                pipe.zrem(self.key(index), tracking_id)
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
            metrics.count_change(writes, self.key, None, record)
        writes.run(self.redis)
        return record

    def _index_active(self, record: JobRecord, target: Writes) -> None:
        submitted, queued = self.key(ACTIVE_INDEX), self.key(QUEUED_INDEX)
        tracking_id = record.tracking_id
        when = record.next_check_at.timestamp() if record.next_check_at else 0.0
        # Only submitted jobs still running need Batch observations (coalesced checks)
        if record.is_terminal or record.job_id is None:
            target.zrem(self.observe_index(record.target_key), tracking_id)
        else:
            target.zadd(self.observe_index(record.target_key), {tracking_id: when})
        if record.is_terminal and record.resolved:
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
        for _ in range(_MAX_CONFLICT_RETRIES):
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
            metrics.count_change(writes, self.key, previous, record)
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
        for entry in change.stored:
            writes.publish(self.channel, entry)
        outbox = self.key(UNSENT_KEY, record.tracking_id)
        writes.rpush(outbox, *change.stored)
        writes.expire(outbox, self.record_ttl)
        writes.zadd(self.key(UNSENT_KEY), {record.tracking_id: stored_at}, nx=True)
        return writes

    # --- the signals' outbox ------------------------------------------------------------------

    def signals_sent(self, tracking_id: str, entries: list[str]) -> None:
        """Take ``entries`` (events as stored, their signals sent now) out of the job's outbox;
        one round trip."""
        self.signals_sent_each({tracking_id: entries})

    def signals_sent_each(self, sent: dict[str, list[str]]) -> None:
        """:meth:`signals_sent` for several jobs, in one round trip."""
        script = _script(self.redis, "signals_sent")
        with self.redis.pipeline(transaction=False) as pipe:
            for tracking_id, entries in sent.items():
                keys = [self.key(UNSENT_KEY, tracking_id), self.key(UNSENT_KEY)]
                script(keys=keys, args=[tracking_id, *entries], client=pipe)
            pipe.execute()

    def unsent(self, stored_before: float, limit: int) -> dict[str, list[str]]:
        """Outbox entries (JSON events, with ``stored_at``) of the jobs whose oldest unsent event
        was stored before ``stored_before`` (epoch s), by tracking id; at most ``limit`` jobs."""
        found = self.redis.zrangebyscore(
            self.key(UNSENT_KEY), "-inf", stored_before, start=0, num=limit
        )
        ids = [str(tracking_id) for tracking_id in found]
        with self.redis.pipeline(transaction=False) as pipe:
            for tracking_id in ids:
                pipe.lrange(self.key(UNSENT_KEY, tracking_id), 0, -1)
            entries = pipe.execute()
        return {t: [str(e) for e in held] for t, held in zip(ids, entries, strict=True)}

    # --- coalesced observations ---------------------------------------------------------

    def observe_index(self, target_key: str) -> str:
        """The observe index of one AWS target's jobs (a DescribeJobs call is for one target)."""
        return self.key(OBSERVE_INDEX, target_key) if target_key else self.key(OBSERVE_INDEX)

    def claim_due(
        self, own: str, *, horizon: datetime, claim_for: float, parked_until: datetime,
        wanted: int, scan_limit: int, target_key: str = "",
    ) -> list[str] | None:  # fmt: skip
        """Claim job ``own`` and up to ``wanted`` other jobs of its AWS target due for an
        observation by ``horizon``, for ``claim_for`` seconds (claims/``parked_until``: see the
        script).

        Returns the others' tracking ids, or None when ``own`` is claimed by another check.
        """
        claimed = _script(self.redis, "claim_due")(
            keys=[self.observe_index(target_key)],
            args=[
                self.key(CLAIM_KEY, ""), own, horizon.timestamp(), int(claim_for * 1000),
                wanted, scan_limit, parked_until.timestamp(),
            ],
        )  # fmt: skip
        return None if claimed is None else [str(t) for t in claimed]

    def release_claims(self, tracking_ids: list[str]) -> None:
        """Drop claims before they expire (nothing was observed, or the claimer's own job)."""
        if tracking_ids:
            self.redis.delete(*(self.key(CLAIM_KEY, t) for t in tracking_ids))

    def observation(self, tracking_id: str) -> tuple[datetime, BatchJobView | None] | None:
        """When a coalesced call observed the job and what it saw (view None: not returned)."""
        raw = self.redis.get(self.key(OBSERVATION_KEY, tracking_id))
        if raw is None:
            return None
        data = json.loads(raw)
        view = _VIEW.validate_python(data["view"]) if data["view"] is not None else None
        return datetime.fromisoformat(data["at"]), view

    def store_observations(
        self, views: dict[str, BatchJobView | None], *, at: datetime, keep_for: float,
        again_at: datetime, target_key: str = "",
    ) -> None:  # fmt: skip
        """Store what one call saw of each job (kept ``keep_for`` seconds), and move those jobs
        in the observe index to ``again_at``; one round trip."""
        if not views:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for tracking_id, view in views.items():
                view_json = _VIEW.dump_python(view, mode="json") if view is not None else None
                data = {"at": at.isoformat(), "view": view_json}
                pipe.set(
                    self.key(OBSERVATION_KEY, tracking_id), json.dumps(data),
                    px=int(keep_for * 1000),
                )  # fmt: skip
            # XX: a job that ended meanwhile has left the index and must not come back
            again = dict.fromkeys(views, again_at.timestamp())
            pipe.zadd(self.observe_index(target_key), again, xx=True)
            pipe.execute()

    def observe_now(self, records: list[JobRecord]) -> None:
        """These jobs need a Batch observation now: a stored one is dropped, and each is due
        first in its target's observe index, so that their checks describe them together."""
        if not records:
            return
        now = time.time()
        with self.redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.delete(self.key(OBSERVATION_KEY, record.tracking_id))
                index = self.observe_index(record.target_key)
                pipe.zadd(index, {record.tracking_id: now}, xx=True)  # XX: still tracked
            pipe.execute()

    # --- Batch events -----------------------------------------------------------------------

    def note_events_flowing(self, seconds: float) -> None:
        """Events reached a consumer: they count as flowing for ``seconds`` more (0: they stop
        counting as flowing now)."""
        self._note_flowing(self.redis, seconds)

    def note_events_stopped(self) -> None:
        """A consumer cannot reach the queue: events stop counting as flowing now."""
        self._note_flowing(self.redis, 0)

    def _note_flowing(self, target: Any, seconds: float) -> None:
        if seconds > 0:
            target.set(self.key(EVENTS_FLOWING_KEY), "1", px=int(seconds * 1000))
        else:
            target.delete(self.key(EVENTS_FLOWING_KEY))

    def events_flowing(self) -> bool:
        """Whether some consumer saw events recently (checks may then wait longer)."""
        return bool(self.redis.exists(self.key(EVENTS_FLOWING_KEY)))

    def count_events(self, outcomes: dict[str, int], *, flowing_for: float) -> None:
        """Add handled events by outcome to the fleet's counters, and note events as flowing
        for ``flowing_for`` seconds more (0: not flowing); one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for outcome, count in outcomes.items():
                pipe.hincrby(self.key(EVENT_COUNTS_KEY), outcome, count)
            self._note_flowing(pipe, flowing_for)
            pipe.execute()

    def event_counts(self) -> dict[str, int]:
        """Batch events handled so far by every worker, by outcome."""
        counts = self.redis.hgetall(self.key(EVENT_COUNTS_KEY))
        return {str(outcome): int(count) for outcome, count in counts.items()}

    # --- fleet metrics (see poller.store.metrics) -------------------------------------------

    def count_aws_calls(self, calls: dict[tuple[str, str, str], int]) -> None:
        """Add AWS calls by (operation, outcome, region) to the fleet's counters (one round
        trip)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for labels, count in calls.items():
                pipe.hincrby(self.key(metrics.AWS_CALLS), "|".join(labels), count)
            pipe.execute()

    def count_resends(self, count: int) -> None:
        """Add messages the reconciler re-sent to the fleet's counter."""
        if count:
            self.redis.incrby(self.key(metrics.RESENDS), count)

    def note_worker(self, hostname: str) -> None:
        """A worker says it runs (every reconcile interval)."""
        self.redis.zadd(self.key(metrics.WORKERS), {hostname: time.time()})

    def metrics_snapshot(self, overdue_after: float, alive_for: float) -> metrics.Snapshot:
        """Every fleet counter now; a check counts as overdue ``overdue_after`` seconds late,
        a worker as running while it said so within ``alive_for`` seconds."""
        now = time.time()
        return metrics.read(
            self.redis, self.key, now=now, kept_for=self.record_ttl,
            overdue=(self.key(ACTIVE_INDEX), now - overdue_after), alive_for=alive_for,
        )  # fmt: skip

    # --- locks ----------------------------------------------------------------------------

    def take_lock(self, name: str, seconds: float) -> bool:
        """Take the lock ``name`` for ``seconds`` unless someone holds it. It is never released:
        it expires, so a holder that dies blocks the others for ``seconds`` at most."""
        return bool(self.redis.set(self.key(LOCK_KEY, name), "1", nx=True, px=int(seconds * 1000)))

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
        records.sort(key=lambda r: r.history[0].observed_at if r.history else _EPOCH, reverse=True)
        return records[:limit]

    @contextmanager
    def subscribe(self, timeout: float = 5.0) -> Iterator[redis.client.PubSub]:
        """Subscribe to the event channel; yields once Redis confirmed the subscription.

        Waiting for the confirmation means any event published after this returns is seen,
        so a reader can subscribe, then read the record, without a gap between the two.
        """
        pubsub = self.redis.pubsub()
        try:
            pubsub.subscribe(self.channel)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=deadline - time.monotonic())
                if message is not None and message["type"] == "subscribe":
                    break
            else:
                raise TimeoutError(f"Redis did not confirm the subscription to {self.channel}")
            pubsub.ignore_subscribe_messages = True
            yield pubsub
        finally:
            pubsub.close()


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


def _script_source(name: str) -> str:
    """The text of the Lua script ``scripts/<name>.lua``."""
    return resources.files(__name__).joinpath("scripts", f"{name}.lua").read_text()


_RUN_WRITES = _script_source("run_writes")


class Writes:
    """Writes queued with redis-py's names, run by Redis in one script call (run_writes.lua).

    A record change is a dozen writes (record, indexes, counts, events); as one command inside
    the change's MULTI, redis-py packs and parses one command instead of a dozen, which was most
    of the client's CPU per change.
    """

    def __init__(self) -> None:
        self.words: list[str | int | float] = []

    def _add(self, *words: str | int | float) -> None:
        self.words += [len(words), *words]

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        self._add("SET", key, value, *(("EX", ex) if ex else ()))

    def sadd(self, key: str, *members: str) -> None:
        self._add("SADD", key, *members)

    def hincrby(self, key: str, field_name: str, amount: int) -> None:
        self._add("HINCRBY", key, field_name, amount)

    def hincrbyfloat(self, key: str, field_name: str, amount: float) -> None:
        self._add("HINCRBYFLOAT", key, field_name, repr(float(amount)))

    def zadd(self, key: str, mapping: dict[str, float], nx: bool = False) -> None:
        scored = [word for member, score in mapping.items() for word in (repr(score), member)]
        self._add("ZADD", key, *(("NX",) if nx else ()), *scored)

    def zrem(self, key: str, *members: str) -> None:
        self._add("ZREM", key, *members)

    def publish(self, channel: str, message: str) -> None:
        self._add("PUBLISH", channel, message)

    def rpush(self, key: str, *values: str) -> None:
        self._add("RPUSH", key, *values)

    def expire(self, key: str, seconds: int) -> None:
        self._add("EXPIRE", key, seconds)

    def run(self, target: Any) -> None:
        """Run the writes with ``target``: a client, or a pipeline that queues them in its MULTI.

        EVAL with the script's text rather than EVALSHA: Redis caches it by its hash all the
        same, and a script cache emptied meanwhile (a restart, a failover) cannot fail the
        command inside the MULTI, after the transaction's other commands ran.
        """
        if self.words:
            target.eval(_RUN_WRITES, 0, *self.words)


@functools.lru_cache(maxsize=16)
def _script(client: redis.Redis, name: str) -> Script:
    """The Lua script ``scripts/<name>.lua`` for this client, run by its SHA."""
    return client.register_script(_script_source(name))
