"""The in-process stack of the fast tier: settings, and jobs taken through the lifecycle against
a real Redis and :class:`poller.testing.FakeBatch` (fixtures ``rt``, ``batch``, ``sent`` in
conftest)."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

from poller import admission
from poller.core import lifecycle, tracking
from poller.models import JobRecord, JobStatus, utcnow
from poller.runtime import ProcessRuntime
from poller.settings import Settings
from poller.testing import FakeBatch

QUEUE = "poller-local"
FAKE_TARGET = ("123456789012", "us-east-1")  # FakeBatch's account and region: its jobs' events


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "poll_initial_delay": 1, "poll_max_delay": 10, "poll_jitter": 0,
        "visibility_timeout": 3600, "not_found_grace": 0.001, "coalesce": True,
        "coalesce_window": 2, "aws_config_grace": 60,
        "poll_align": False,  # exact delays here; tests/test_backoff.py tests the tick grid
        # No call budget here (tests/test_budget.py turns it on): calls as the test makes them
        "aws_call_rates": {"SubmitJob": 0, "DescribeJobs": 0, "TerminateJob": 0, "GetLogEvents": 0},
    }  # fmt: skip
    return Settings(**{**values, **overrides})


def ended_unclaimed(rt: ProcessRuntime, batch: FakeBatch, status: JobStatus) -> datetime:
    """Job "t1" ended ``status`` by its check 0, whose worker died before claiming the result
    (the end is stored, the result not produced); returns when that check ran."""
    record = running(rt, batch)
    batch.set_status(str(record.job_id), status)
    view = batch.describe([str(record.job_id)])[str(record.job_id)]
    now = utcnow()
    rt.store.update(
        "t1",
        lambda r: tracking.checked(
            r, view, check_no=0, now=now, next_check_at=now, limits=rt.limits
        ),
    )
    return now


def admitted(
    rt: ProcessRuntime, tracking_id: str = "t1", key: str | None = None, **poll: Any
) -> JobRecord:
    spec, policy, _, _ = admission.validate(
        rt.settings, ("nightly", QUEUE, "def"), {"poll": poll or None}
    )
    return lifecycle.admit(rt.store, tracking_id, spec, policy, key)


def running(
    rt: ProcessRuntime, batch: FakeBatch, tracking_id: str = "t1", **poll: Any
) -> JobRecord:
    """A submitted job, RUNNING on Batch."""
    record = lifecycle.submit(rt, admitted(rt, tracking_id, **poll))
    assert record.job_id is not None
    batch.set_status(record.job_id, JobStatus.RUNNING)
    return record


class Clock:
    """A clock that moves only when the test moves it: seconds since the epoch, from the time
    it was made. Stands in for a clock function (call it) and for ``time.sleep`` (``advance``)."""

    def __init__(self) -> None:
        self.at = time.time()

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        self.at += seconds

    def utcnow(self) -> datetime:
        """The clock's time as :func:`poller.models.utcnow` gives it (aware, UTC)."""
        return datetime.fromtimestamp(self.at, tz=UTC)


class RecordingApp:
    """Stands in for the Celery app: records the checks the consumer sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...], str]] = []

    def send_task(self, name: str, args: tuple[Any, ...] = (), task_id: str = "", **_: Any) -> None:
        self.sent.append((name, args, task_id))

    def producer_or_acquire(self) -> AbstractContextManager[None]:
        """No producer: send_task records at once."""
        return nullcontext()
