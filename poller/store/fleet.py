"""Part of the store: what the fleet's workers note for each other: whether Batch events flow
(and how many were handled, by outcome), and locks."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from poller.store import counters
from poller.store.base import EVENTS_FLOWING_KEY, LOCK_KEY, StoreBase

EVENT_COUNTS_KEY = counters.EVENTS


class FleetState(StoreBase):
    """Whether Batch events flow, their counts by outcome, and the fleet's locks."""

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

    def take_lock(self, name: str, seconds: float) -> bool:
        """Take the lock ``name`` for ``seconds`` unless someone holds it. It is never released:
        it expires, so a holder that dies blocks the others for ``seconds`` at most."""
        return bool(self.redis.set(self.key(LOCK_KEY, name), "1", nx=True, px=int(seconds * 1000)))
