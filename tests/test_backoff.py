from __future__ import annotations

import pytest

from poller.core.backoff import aligned, compute_delay


def delays(n: int, rand: float, **policy: float) -> list[float]:
    params = {"initial_delay": 5.0, "max_delay": 60.0, "factor": 2.0, "jitter": 0.2, **policy}
    return [compute_delay(i, rand=lambda: rand, **params) for i in range(n)]


def test_grows_exponentially_until_the_cap() -> None:
    # Given no jitter, When delays are computed, Then they double and stop at the cap
    assert delays(6, 0.0) == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_jitter_only_shortens_and_stays_within_its_share() -> None:
    # Given the largest jitter draw, Then each delay loses at most 20 %
    assert delays(6, 1.0) == pytest.approx([4.0, 8.0, 16.0, 32.0, 48.0, 48.0])


@pytest.mark.parametrize("rand", [0.0, 0.3, 0.999])
def test_never_exceeds_the_cap_even_after_many_checks(rand: float) -> None:
    # When a job has been checked a very long time, Then no overflow and the cap holds
    delay = compute_delay(
        100_000, initial_delay=1, max_delay=300, factor=3, jitter=0.5, rand=lambda: rand
    )
    assert 150 <= delay <= 300


def test_factor_one_is_a_constant_interval() -> None:
    assert delays(3, 0.0, factor=1.0) == [5.0, 5.0, 5.0]


def test_negative_check_number_is_refused() -> None:
    with pytest.raises(ValueError, match="check_number"):
        compute_delay(-1, initial_delay=1, max_delay=2)


@pytest.mark.parametrize("now", [1000.0, 1000.4, 1012.7, 1024.99, 1025.0])
@pytest.mark.parametrize("delay", [0.1, 5.0, 20.0, 24.9, 25.0])
def test_an_aligned_check_lands_on_a_tick_never_later_and_within_one_step(
    now: float, delay: float
) -> None:
    step = 25.0
    wait = aligned(delay, step, now)
    due = now + wait
    assert due == pytest.approx(round(due / step) * step)  # on the epoch's grid
    assert 0 < wait <= step  # soon: at most one step away
    # Never later than asked, unless the last tick before now + delay was already past
    assert wait <= delay or due - step <= now


def test_checks_due_within_one_tick_share_it() -> None:
    # Jobs submitted over three seconds, checked every 20-25 s (jitter): one instant each round
    dues = {round(now + aligned(delay, 25.0, now), 6) for now, delay in
            [(1001.0, 20.0), (1002.2, 23.5), (1003.9, 21.0), (1000.1, 24.9)]}  # fmt: skip
    assert dues == {1025.0}
