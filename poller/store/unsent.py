"""Part of the store: the signals' outbox, each job's stored announcements whose signals are not
known to be sent (written with the transition that caused them; see :mod:`poller.core.outbox`).

Keys (``<p>`` the key prefix)::

    <p>:unsent:<tracking_id>  list: the job's announcements (JSON) not known to be sent
    <p>:unsent              sorted set: tracking id -> when its oldest unsent one was stored
"""

from __future__ import annotations

from poller.store.base import UNSENT_KEY, StoreBase
from poller.store.writes import script


class UnsentSignals(StoreBase):
    """The outbox: announcements stored, their signals not yet known to be sent."""

    def sent(self, tracking_id: str, entries: list[str]) -> None:
        """Take ``entries`` (events as stored, their signals sent now) out of the job's outbox;
        one round trip."""
        self.sent_each({tracking_id: entries})

    def sent_each(self, sent: dict[str, list[str]]) -> None:
        """:meth:`sent` for several jobs, in one round trip."""
        take_out = script(self.redis, "signals_sent")
        with self.redis.pipeline(transaction=False) as pipe:
            for tracking_id, entries in sent.items():
                keys = [self.key(UNSENT_KEY, tracking_id), self.key(UNSENT_KEY)]
                take_out(keys=keys, args=[tracking_id, *entries], client=pipe)
            pipe.execute()

    def older_than(self, stored_before: float, limit: int) -> dict[str, list[str]]:
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
