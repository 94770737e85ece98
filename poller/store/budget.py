"""Part of the store: the fleet's AWS call budget, a token bucket per (call family, target) that
every worker and events process shares (``scripts/call_budget.lua``), and its counters.

Keys (``<p>`` the key prefix)::

    <p>:budget:<family>:<target>   hash: tokens, at, factor (AIMD share of the rate), cut_at,
                                   next_turn
    <p>:metrics:budget             hash: "<family>|taken", "|waited", "|throttled" -> calls;
                                   "<family>|wait" -> the last wait handed out (s), "|wait_at"
"""

from __future__ import annotations

from collections.abc import Callable

from poller.store.base import StoreBase
from poller.store.writes import script

HEADROOM = 0.95
"""A bucket fills at this share of AWS's rate: calls that bunch on their way to AWS still find
tokens in AWS's own bucket."""
BUDGET_KEY = "budget"
BUDGET_COUNTS_KEY = "metrics:budget"
OUTCOMES = ("taken", "waited", "throttled")


class CallBudgets(StoreBase):
    """The AWS call budget's buckets, in Redis."""

    budget_clock: Callable[[], float] | None = None
    """None (production): the buckets read Redis's own clock, the one clock every caller
    shares. A test sets a clock it moves (seconds since the epoch), so time passes without
    sleeping; never set it in a fleet: callers' own clocks count refills twice under load."""

    def take_call(
        self, family: str, target: str, rate: float, burst: float, *, mode: str = "take"
    ) -> float:
        """One call of ``family`` for ``target``: 0.0 when it may be made now, else the seconds
        to wait. ``mode`` (scripts/call_budget.lua): ``take`` (nothing taken when it must wait:
        ask again then), ``turn`` (the caller's place among those waiting: take then; 0.0:
        now, with its token), ``force`` (now, into debt)."""
        return self._budget(mode, family, target, rate, burst)

    def call_throttled(self, family: str, target: str, rate: float, burst: float) -> None:
        """AWS answered a call of ``family`` with a throttling error despite the budget: halve
        the bucket's rate for now (it grows back by itself)."""
        self._budget("throttled", family, target, rate, burst)

    def budget_counts(self) -> dict[tuple[str, str], float]:
        """The fleet's budget counters: (family, "taken" | "waited" | "throttled" | "wait")."""
        raw = self.redis.hgetall(self.key(BUDGET_COUNTS_KEY))
        counts: dict[tuple[str, str], float] = {}
        for field, value in raw.items():
            family, _, name = str(field).partition("|")
            counts[(family, name)] = float(value)
        return counts

    def _budget(self, mode: str, family: str, target: str, rate: float, burst: float) -> float:
        keys = [self.key(BUDGET_KEY, family, target), self.key(BUDGET_COUNTS_KEY)]
        args: list[str | float] = [mode, rate, burst, family, HEADROOM]
        if self.budget_clock is not None:
            args.append(self.budget_clock())
        return float(script(self.redis, "call_budget")(keys=keys, args=args))
