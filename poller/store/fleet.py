"""Part of the store: what the fleet shares beside the records: the signals' outbox, whether
Batch events flow, the fleet's metrics counters (:mod:`poller.store.counters`) and locks."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from poller.store import counters
from poller.store.base import (
    ACTIVE_INDEX,
    EVENT_COUNTS_KEY,
    EVENTS_FLOWING_KEY,
    LOCK_KEY,
    UNSENT_KEY,
    StoreBase,
)
from poller.store.writes import script


class FleetState(StoreBase):
    """The outbox, the events flag and counters, the fleet's metrics and locks."""

    # --- the signals' outbox ------------------------------------------------------------------

    def signals_sent(self, tracking_id: str, entries: list[str]) -> None:
        """Take ``entries`` (events as stored, their signals sent now) out of the job's outbox;
        one round trip."""
        self.signals_sent_each({tracking_id: entries})

    def signals_sent_each(self, sent: dict[str, list[str]]) -> None:
        """:meth:`signals_sent` for several jobs, in one round trip."""
        take_out = script(self.redis, "signals_sent")
        with self.redis.pipeline(transaction=False) as pipe:
            for tracking_id, entries in sent.items():
                keys = [self.key(UNSENT_KEY, tracking_id), self.key(UNSENT_KEY)]
                take_out(keys=keys, args=[tracking_id, *entries], client=pipe)
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

    # --- Batch events -----------------------------------------------------------------------

    def note_events_flowing(
        self, seconds: float, origins: Collection[tuple[str, str]] = ()
    ) -> None:
        """Events reached a consumer (from each (account, region) of ``origins``): they count as
        flowing for ``seconds`` more (0: they stop counting as flowing now)."""
        with self.redis.pipeline(transaction=False) as pipe:
            self._note_flowing(pipe, seconds, origins)
            pipe.execute()

    def note_events_stopped(self) -> None:
        """A consumer cannot reach its queue: events stop counting as flowing now, for every
        target (the ones its queue carries come back with their next events)."""
        targets = self.redis.smembers(self.key(EVENTS_FLOWING_KEY, "targets"))
        with self.redis.pipeline(transaction=False) as pipe:
            self._note_flowing(pipe, 0)
            for target in targets:
                pipe.delete(self.key(EVENTS_FLOWING_KEY, str(target)))
            pipe.execute()

    def _note_flowing(
        self, target: Any, seconds: float, origins: Collection[tuple[str, str]] = ()
    ) -> None:
        if seconds <= 0:
            target.delete(self.key(EVENTS_FLOWING_KEY))
            return
        target.set(self.key(EVENTS_FLOWING_KEY), "1", px=int(seconds * 1000))
        for account, region in origins:
            name = f"{account}:{region}"
            target.set(self.key(EVENTS_FLOWING_KEY, name), "1", px=int(seconds * 1000))
            target.sadd(self.key(EVENTS_FLOWING_KEY, "targets"), name)

    def events_flowing(self, account: str | None = None, region: str | None = None) -> bool:
        """Whether some consumer saw events recently: from anywhere (no arguments), or from one
        target, the account and region whose jobs they are about (checks may then wait longer).
        A target not known yet (no account) has none."""
        if account is None and region is None:
            return bool(self.redis.exists(self.key(EVENTS_FLOWING_KEY)))
        if account is None or region is None:
            return False
        return bool(self.redis.exists(self.key(EVENTS_FLOWING_KEY, f"{account}:{region}")))

    def count_events(
        self,
        outcomes: dict[str, int],
        *,
        flowing_for: float,
        origins: Collection[tuple[str, str]] = (),
    ) -> None:
        """Add handled events by outcome to the fleet's counters, and note events as flowing
        for ``flowing_for`` seconds more (0: not flowing), from each (account, region) of
        ``origins`` too; one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for outcome, count in outcomes.items():
                pipe.hincrby(self.key(EVENT_COUNTS_KEY), outcome, count)
            self._note_flowing(pipe, flowing_for, origins)
            pipe.execute()

    def event_counts(self) -> dict[str, int]:
        """Batch events handled so far by every worker, by outcome."""
        counts = self.redis.hgetall(self.key(EVENT_COUNTS_KEY))
        return {str(outcome): int(count) for outcome, count in counts.items()}

    # --- fleet metrics (see poller.store.counters) -------------------------------------------

    def count_aws_calls(self, calls: dict[tuple[str, str, str], int]) -> None:
        """Add AWS calls by (operation, outcome, region) to the fleet's counters (one round
        trip)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for labels, count in calls.items():
                pipe.hincrby(self.key(counters.AWS_CALLS), "|".join(labels), count)
            pipe.execute()

    def count_resends(self, count: int) -> None:
        """Add messages the reconciler re-sent to the fleet's counter."""
        if count:
            self.redis.incrby(self.key(counters.RESENDS), count)

    def note_worker(self, hostname: str) -> None:
        """A worker says it runs (every reconcile interval)."""
        self.redis.zadd(self.key(counters.WORKERS), {hostname: time.time()})

    def metrics_snapshot(self, overdue_after: float, alive_for: float) -> counters.Snapshot:
        """Every fleet counter now; a check counts as overdue ``overdue_after`` seconds late,
        a worker as running while it said so within ``alive_for`` seconds."""
        now = time.time()
        return counters.read(
            self.redis, self.key, now=now, kept_for=self.record_ttl,
            overdue=(self.key(ACTIVE_INDEX), now - overdue_after), alive_for=alive_for,
        )  # fmt: skip

    def take_lock(self, name: str, seconds: float) -> bool:
        """Take the lock ``name`` for ``seconds`` unless someone holds it. It is never released:
        it expires, so a holder that dies blocks the others for ``seconds`` at most."""
        return bool(self.redis.set(self.key(LOCK_KEY, name), "1", nx=True, px=int(seconds * 1000)))
