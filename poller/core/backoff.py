"""The countdown policy between two status checks of a job: exponential, jittered, capped."""

from __future__ import annotations

import random
from collections.abc import Callable


def compute_delay(
    check_number: int,
    *,
    initial_delay: float,
    max_delay: float,
    factor: float = 2.0,
    jitter: float = 0.2,
    rand: Callable[[], float] = random.random,
) -> float:
    """Return the seconds to wait before check number ``check_number`` (0 for the first check).

    The base delay grows from ``initial_delay`` by ``factor`` per check and is capped at
    ``max_delay``; jitter then takes away up to ``jitter`` (a share of the delay) so that jobs
    submitted together do not all call AWS in the same second. Jitter only ever shortens the
    delay, so ``max_delay`` stays a hard cap that the broker's visibility timeout can rely on.

    Worked example, ``initial_delay=5, max_delay=60, factor=2, jitter=0.2``:

    ========  ==========  ==================
    check     base delay  delay after jitter
    ========  ==========  ==================
    0         5           4.0 .. 5.0
    1         10          8.0 .. 10.0
    2         20          16.0 .. 20.0
    3         40          32.0 .. 40.0
    4 and on  60 (cap)    48.0 .. 60.0
    ========  ==========  ==================

    >>> compute_delay(3, initial_delay=5, max_delay=60, factor=2, jitter=0.2, rand=lambda: 0.5)
    36.0
    """
    if check_number < 0:
        raise ValueError(f"check_number must be >= 0, got {check_number}")
    # Multiply step by step and stop at the cap: factor**n overflows for long-running jobs.
    base = initial_delay
    for _ in range(check_number):
        base *= factor
        if base >= max_delay:
            break
    base = min(base, max_delay)
    return base * (1.0 - jitter * rand())


def aligned(delay: float, step: float, now: float) -> float:
    """``delay`` moved so that the check lands on the fleet's tick grid of ``step`` seconds.

    The grid is the epoch's (every worker computes the same ticks), and the check goes to the
    last tick at or before ``now + delay``, or the next tick after ``now`` when that one is
    already past: so it is never later than the policy says, and never more than ``step`` after
    ``now``. Checks that fall due within one tick land on the same instant, where one coalesced
    DescribeJobs of up to 100 jobs answers them all.

    >>> aligned(22.0, 25.0, now=1000.5)  # ticks at 1000, 1025, ...: the next one
    24.5
    """
    due = (now + delay) // step * step
    if due <= now:
        due += step
    return due - now
