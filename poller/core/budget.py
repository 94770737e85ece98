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
from collections.abc import Callable
from datetime import timedelta

import redis

from poller.core import tracking
from poller.core.ports import Runtime
from poller.errors import CallDeferred
from poller.models import JobRecord, utcnow
from poller.store.budget import HEADROOM

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
EARLY = 0.05
"""A turn this close (seconds) is now: a countdown would take longer than the wait."""
BURST = 0.5
"""A bucket holds at most this many seconds of its rate, so that AWS's own bucket (the local
endpoint's holds a second's worth) keeps tokens to spare for calls that reach it closer
together than they were taken."""
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
    ``mode``: ``take`` (ask again after the wait) or ``force`` (a stop: never waits, it goes
    into debt). Nothing when the family has no rate."""
    wait = _ask(rt, operation, target, mode)
    if wait > 0:
        raise CallDeferred(f"{operation} on {target} waits {wait:.1f}s for the call budget", wait)


def wait_for(
    rt: Runtime, operation: str, target: str, *, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Take a token for one ``operation`` call on ``target``, sleeping until one comes: for a
    command line (a worker's waits are countdowns, never a blocked thread). ``sleep``: how the
    time passes (a test's clock moves instead)."""
    while True:
        try:
            return take(rt, operation, target)
        except CallDeferred as deferred:
            logger.info("%s", deferred)
            sleep(deferred.wait)


def take_submit_turn(rt: Runtime, record: JobRecord, target: str) -> None:
    """Wait for this job's SubmitJob turn in the fleet's call budget, then take its token.

    Turns come one token apart, first come first served, and are kept in the record (a worker
    that comes back for its turn does not queue again). A turn gives no token: the caller takes
    one when it comes, so submissions whose countdowns ran late (busy workers) never reach AWS
    together, and the token of a turn missed is there for the next caller. A caller that finds
    no token (late callers came together) queues again rather than coming back at every token.
    """
    now = utcnow()
    turn = record.submission.turn_at
    if turn is None:
        wait = _ask(rt, "SubmitJob", target, "turn")
        if wait == 0:  # nobody waiting: its turn is now, and its token taken
            return
        turn = now + timedelta(seconds=wait)
    if turn - now <= timedelta(seconds=EARLY):
        if _ask(rt, "SubmitJob", target, "take") == 0:
            return
        # No token at its turn (callers that came late together took them): queue again
        turn = now + timedelta(seconds=_ask(rt, "SubmitJob", target, "turn"))
    if turn != record.submission.turn_at:
        rt.store.update(record.tracking_id, lambda r: tracking.submit_turn(r, turn))
    raise CallDeferred("SubmitJob waits for its turn", (turn - now).total_seconds())


def token_interval(rt: Runtime, operation: str) -> float:
    """The seconds between two tokens of ``operation``'s family at its full rate."""
    rate = _rate(rt, operation)[1]
    return 1 / (rate * HEADROOM) if rate > 0 else 0.0


def _ask(rt: Runtime, operation: str, target: str, mode: str) -> float:
    """The budget's answer for one ``operation`` call (scripts/call_budget.lua): the seconds to
    wait, or 0.0 when the call may be made now (its token taken)."""
    family, rate = _rate(rt, operation)
    if rate <= 0:
        return 0.0
    try:
        return rt.store.budget.take_call(family, target, rate, burst=_burst(rate), mode=mode)
    except redis.RedisError as err:
        logger.debug("AWS call budget out of reach (%r); this process's share applies", err)
        # A stop never waits; without Redis there is no line to wait in: the token decides
        return 0.0 if mode == "force" else _local(family, target, rate).take()


def _rate(rt: Runtime, operation: str) -> tuple[str, float]:
    """``operation``'s call family, and the family's rate (0: no budget)."""
    family = FAMILIES[operation]
    return family, rt.settings.aws_call_rates.get(family, 0.0)


def _burst(rate: float) -> float:
    return max(1.0, rate * BURST)


def throttled(rt: Runtime, operation: str, target: str) -> None:
    """AWS throttled an ``operation`` call on ``target`` despite the budget: slow its family."""
    family, rate = _rate(rt, operation)
    if rate <= 0:
        return
    try:
        rt.store.budget.call_throttled(family, target, rate, burst=_burst(rate))
    except redis.RedisError:
        _local(family, target, rate).throttled()
    logger.info(
        "%s on %s throttled by AWS: the fleet's %s rate is halved", operation, target, family
    )


class LocalBucket:
    """A token bucket in this process (the budget's fallback without Redis); ``clock`` gives
    its time in seconds (a test's clock moves without sleeping)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.tokens = max(1.0, rate)
        self.clock = clock
        self.at = clock()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0.0 when a token is taken, else the seconds until one comes."""
        with self.lock:
            now = self.clock()
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
