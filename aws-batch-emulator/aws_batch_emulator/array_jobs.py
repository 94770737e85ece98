"""Array jobs of the local Batch endpoint: a parent whose status, attempts and summary derive
from its children's, as AWS Batch's do (the children are `LocalJob`s of their own)."""

from __future__ import annotations

import time
from typing import Any

from aws_batch_emulator.jobs import (
    FAILED,
    RUNNING,
    STATUSES,
    SUBMITTED,
    SUCCEEDED,
    TERMINAL,
    LocalJob,
)


class ArrayParentJob(LocalJob):
    """The parent of an array job: it runs nothing; its state is derived from its children."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.children: list[LocalJob] = []
        self._stop_reason: str | None = None
        self._children_done = 0  # children whose final status was reported (see child_changed)

    def adopt(self, children: list[LocalJob]) -> None:
        """Attach the child jobs (moto's `_child_jobs` too, for its describe code)."""
        self.children = children
        self._child_jobs = list(children)
        for child in children:
            child.array_parent = self

    def refresh(self) -> None:
        """Derive status: PENDING until a child runs, RUNNING, then SUCCEEDED/FAILED."""
        if self.is_final:
            return
        for child in self.children:
            child.refresh()
        self._derive()
        self.announce()

    def child_changed(self, child: LocalJob) -> None:
        """Derive the status again when the child's change can change it.

        Only three changes can: the first report (SUBMITTED to PENDING), the first child to run
        and the last child to end. Skipping the others keeps a 10,000-child array from deriving
        its status from every child at every child's change.
        """
        if self.is_final:
            return
        if child.is_final:
            self._children_done += 1
        first_to_run = self._status != RUNNING and child.status in (RUNNING, *TERMINAL)
        if self._status == SUBMITTED or first_to_run or self._children_done >= len(self.children):
            self._derive()
            self.announce()

    def _derive(self) -> None:
        started = [child.started_s for child in self.children if child.started_s is not None]
        self.started_s = min(started) if started else None
        if self.children and all(child.is_final for child in self.children):
            ok = all(child.status == SUCCEEDED for child in self.children)
            last = max(child.stopped_s or self.created_s for child in self.children)
            self.finish(SUCCEEDED if ok else FAILED, None if ok else self._stop_reason, at=last)
        elif any(child.status in (RUNNING, *TERMINAL) for child in self.children):
            self._status = RUNNING
        else:
            self._status = self.stage_status(time.time())

    def status_summary(self) -> dict[str, int]:
        """Children per status, every status present (AWS statusSummary)."""
        summary = dict.fromkeys(STATUSES, 0)
        for child in self.children:
            summary[child.status] += 1
        return summary

    def cancel(self, reason: str) -> None:
        """Cancelling an array job cancels its children that have not started."""
        self.refresh()
        if self.is_final:
            return
        self._stop_reason = reason
        for child in self.children:
            child.cancel(reason)
        self.refresh()

    def terminate(self, reason: str) -> None:
        """Terminating an array job terminates every unfinished child."""
        self.refresh()
        if self.is_final:
            return
        self._stop_reason = reason
        for child in self.children:
            child.terminate(reason)
        self.refresh()

    def _array_properties(self, *, detail: bool) -> dict[str, Any]:
        if not detail:
            return {"size": len(self.children)}
        return {"statusSummary": self.status_summary(), "size": len(self.children)}
