"""Part of the store: coalesced checks' claims and the observations one DescribeJobs call made
for other jobs' checks (see :mod:`poller.core.coalesce`)."""

from __future__ import annotations

import json
import time
from datetime import datetime

from poller.models import BatchJobView, JobRecord
from poller.store.base import CLAIM_KEY, OBSERVATION_KEY, OBSERVE_INDEX, VIEW, StoreBase
from poller.store.writes import script


class Observations(StoreBase):
    """Claims and observations of coalesced checks."""

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
        claimed = script(self.redis, "claim_due")(
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
        view = VIEW.validate_python(data["view"]) if data["view"] is not None else None
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
                view_json = VIEW.dump_python(view, mode="json") if view is not None else None
                data = {"at": at.isoformat(), "view": view_json}
                pipe.set(
                    self.key(OBSERVATION_KEY, tracking_id), json.dumps(data),
                    px=int(keep_for * 1000),
                )  # fmt: skip
            # XX: a job that ended meanwhile has left the index and must not come back
            again = dict.fromkeys(views, again_at.timestamp())
            pipe.zadd(self.observe_index(target_key), again, xx=True)
            pipe.execute()

    def due_before(self, own: str, target_key: str = "") -> int:
        """How many jobs of its AWS target are due for an observation before job ``own`` (the
        claims take them first)."""
        rank = self.redis.zrank(self.observe_index(target_key), own)
        return rank if isinstance(rank, int) else 0

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
