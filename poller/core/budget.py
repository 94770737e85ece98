"""The fleet's AWS call budget: a call poller makes for a job first takes a token.

AWS's quotas are per account and region (SubmitJob: 50 calls a second), shared by every worker
and by the account's other tools. Each call family has one token bucket per target (profile and
region) in Redis (:mod:`poller.store.budget`), at the rate ``POLLER_AWS_CALL_RATES`` gives it:

- a call that finds no token is not made: :class:`~poller.errors.CallDeferred` says when the
  caller's turn comes, and the task waits as a countdown (backpressure, not a failure; a
  submission's transient-error count and a check's ``max_checks`` are not used up);
- a throttling answer that still comes (another tool on the account) halves the bucket's rate
  for a while; the rate then grows back (additive increase, multiplicative decrease);
- stopping a job (TerminateJob) never waits: it takes its token even into debt, so stops come
  first, and the other calls of its family wait for the debt;
- without Redis, each process keeps a bucket of its own at a share of the rate.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import redis

from poller.core import tracking
from poller.core.runtime import Runtime
from poller.errors import CallDeferred
from poller.models import JobRecord, utcnow

logger = logging.getLogger(__name__)

FAMILIES = {
    "SubmitJob": "SubmitJob",
    "DescribeJobs": "DescribeJobs",
    "ListJobs": "DescribeJobs",
    "TerminateJob": "TerminateJob",
    "CancelJob": "TerminateJob",
    "GetLogEvents": "GetLogEvents",
}
"""Each AWS operation poller calls, and the family whose budget it draws on."""
LATE = timedelta(seconds=1)
"""A submission this late for its budget turn has missed it (see :func:`take_submit_turn`)."""
LOCAL_SHARE = 4
"""Without Redis, a process takes 1/LOCAL_SHARE of a family's rate (a fleet of a few workers)."""


def target_of(rt: Runtime, record: JobRecord) -> str:
    """The budget's key for a job's calls: its profile (one account each) and region.

    Not the account itself: a job's account is known only once SubmitJob answered, and a key
    that changed between a turn and its call would spend tokens of two buckets.
    """
    region = record.aws_region or rt.region_for(record) or "-"
    return f"{record.aws_profile or 'default'}@{region}"


def take(rt: Runtime, operation: str, target: str, *, mode: str = "take") -> None:
    """Take a token for one ``operation`` call on ``target``; CallDeferred when there is none.
    ``mode``: ``take`` (ask again after the wait), ``reserve`` (the turn after the wait is the
    caller's: it must not ask again), ``rebook`` (a turn missed: its token back, a new turn),
    ``force`` (a stop: never waits, it goes into debt).
    Nothing when the family has no rate."""
    family = FAMILIES[operation]
    rate = rt.settings.aws_call_rates.get(family, 0.0)
    if rate <= 0:
        return
    stop = mode == "force"
    try:
        wait = rt.store.take_call(family, target, rate, burst=max(1.0, rate), mode=mode)
    except redis.RedisError as err:
        logger.debug("AWS call budget out of reach (%r); this process's share applies", err)
        wait = 0.0 if stop else _local(family, target, rate).take()
    if wait > 0:
        raise CallDeferred(f"{operation} on {target} waits {wait:.1f}s for the call budget", wait)


def take_submit_turn(rt: Runtime, record: JobRecord, target: str) -> None:
    """Wait for this job's SubmitJob turn in the fleet's call budget: the turn it was given
    (kept in the record, so a worker that comes back for it does not queue again), or a new one."""
    now = utcnow()
    turn = record.submit_turn_at
    if turn is not None:
        if now < turn - timedelta(seconds=0.05):
            raise CallDeferred("SubmitJob waits for its turn", (turn - now).total_seconds())
        if now <= turn + LATE:
            return  # its turn: its token was taken when the turn was given
        # Missed (its worker was busy): turns that come late would reach AWS together, so its
        # token goes back and it gets a turn again, now if a token is there
    mode = "rebook" if turn is not None else "reserve"
    try:
        take(rt, "SubmitJob", target, mode=mode)
    except CallDeferred as deferred:
        when = now + timedelta(seconds=deferred.wait)
        rt.store.update(record.tracking_id, lambda r: tracking.submit_turn(r, when))
        raise


def throttled(rt: Runtime, operation: str, target: str) -> None:
    """AWS throttled an ``operation`` call on ``target`` despite the budget: slow its family."""
    family = FAMILIES[operation]
    rate = rt.settings.aws_call_rates.get(family, 0.0)
    if rate <= 0:
        return
    try:
        rt.store.call_throttled(family, target, rate, burst=max(1.0, rate))
    except redis.RedisError:
        _local(family, target, rate).throttled()
    logger.info(
        "%s on %s throttled by AWS: the fleet's %s rate is halved", operation, target, family
    )


class LocalBucket:
    """A token bucket in this process (the budget's fallback without Redis)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = max(1.0, rate)
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0.0 when a token is taken, else the seconds until one comes."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate

    def throttled(self) -> None:
        """Slow down: half the rate (it stays so; a process without Redis is a rare case)."""
        with self.lock:
            self.rate = max(self.rate / 2, 0.1)


_LOCAL: dict[tuple[str, str], LocalBucket] = {}
_LOCAL_LOCK = threading.Lock()


def _local(family: str, target: str, rate: float) -> LocalBucket:
    with _LOCAL_LOCK:
        return _LOCAL.setdefault((family, target), LocalBucket(rate / LOCAL_SHARE))
