"""Batch state-change events applied to their jobs' records, many in one transaction."""

from __future__ import annotations

from collections.abc import Callable

from poller.core import outbox, tracking
from poller.core.ports import Runtime
from poller.models import BatchJobView, JobRecord, utcnow
from poller.store import Change


def apply_events(
    rt: Runtime, views: dict[str, list[BatchJobView]]
) -> tuple[dict[str, list[bool]], dict[str, JobRecord]]:
    """Apply Batch state-change events to their jobs (by tracking id, each job's in the order
    received), all in one transaction, then send their signals.

    An event moves its job forward or changes nothing (a duplicate, older than what is
    recorded, or of another Batch job: an array child tagged like its parent). Returns, for
    each job, which of its events moved it forward; and each job's record now (jobs without a
    record are left out).
    """
    now = utcnow()
    moved: dict[str, list[bool]] = {}

    def decider(tracking_id: str) -> Callable[[JobRecord], Change | None]:
        def decide(record: JobRecord) -> Change | None:
            flags = moved[tracking_id] = []  # this run's: the last run is the one stored
            changed: Change | None = None
            for view in views[tracking_id]:
                current = changed.record if changed is not None else record
                step = None
                if view.job_id == record.job_id:
                    step = tracking.event_observed(current, view, now=now, limits=rt.limits)
                flags.append(step is not None)
                if step is not None:
                    events = changed.events if changed is not None else []
                    changed = Change(step.record, events + step.events)
            return changed

        return decide

    changes, records = rt.store.update_each({t: decider(t) for t in views})
    outbox.deliver_each(rt, list(changes.values()))
    return {t: moved.get(t, []) for t in records}, records
