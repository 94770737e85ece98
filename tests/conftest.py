"""Shared test helpers. The real-server fixtures come from the poller.testing plugin."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from poller import signals
from poller.core import budget
from poller.models import JobRecord
from poller.runtime import ProcessRuntime
from poller.store import JobStore
from poller.testing import FakeBatch
from poller.testing.stack import configure_process
from tests.fakes import QUEUE, Clock, settings

T = TypeVar("T")


TESTS = Path(__file__).parent
# Directories of the real-server tiers: every test in them is marked integration (checked below)
SERVER_TIERS = (TESTS / "integration", TESTS / "faults")
FAST_TIER = "not integration"  # the fast tier's -m expression (Makefile)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The fast tier does not import the real-server tiers' modules (hypothesis, the emulator's
    servers, their conftests: seconds in each test process) only to deselect every test in them."""
    if collection_path in SERVER_TIERS and config.getoption("markexpr").strip() == FAST_TIER:
        return True
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast in-process tier first, then the tests that start real servers.

    A test in a real-server tier's directory without the integration marker is refused: it
    would run in neither tier (the fast one does not collect those directories)."""
    unmarked = [
        item.nodeid
        for item in items
        if any(item.path.is_relative_to(tier) for tier in SERVER_TIERS)
        if item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests in tests/integration and tests/faults start real servers and must be marked "
            f"integration (pytestmark = pytest.mark.integration): {', '.join(unmarked)}"
        )
    items.sort(key=lambda item: item.get_closest_marker("integration") is not None)


def eventually(probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns a truthy value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


@contextlib.contextmanager
def configured_for(env: dict[str, str]) -> Iterator[None]:
    """Point this process's poller at ``env``; afterwards restore the environment it had."""
    saved = dict(os.environ)
    configure_process(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        configure_process({})


FIGURES = "figures"  # user property of a test report: a line of the test's figures


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Any:
    """Note a test's figures on one line; the session's summary prints them (from every xdist
    worker: pytest-xdist relays reports, not a worker's output)."""
    tier = request.path.parent.name  # faults, integration

    def emit(name: str, **figures: Any) -> None:
        line = f"[{tier}] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
        request.node.user_properties.append((FIGURES, line))

    return emit


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures the tests noted (see ``report``), in the order the tests ended."""
    lines = [
        value
        for outcome in ("passed", "failed")
        for test in terminalreporter.stats.get(outcome, [])
        if test.when == "call"
        for name, value in test.user_properties
        if name == FIGURES
    ]
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def batch() -> FakeBatch:
    return FakeBatch(queues=[QUEUE])


@pytest.fixture
def rt(poller_redis_client: redis.Redis, batch: FakeBatch) -> ProcessRuntime:
    store = JobStore(poller_redis_client, prefix="lifecycle-test", record_ttl=60)
    return ProcessRuntime(settings=settings(), store=store, batch=batch)


@pytest.fixture
def budget_clock(rt: ProcessRuntime, monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The call budget's time in this test, which passes only when the test advances it: the
    buckets of ``rt``'s store read it instead of Redis's clock, and the submission turns kept
    in records (:func:`poller.core.budget.take_submit_turn`) instead of the wall clock."""
    clock = Clock()
    rt.store.budget.budget_clock = clock
    monkeypatch.setattr(budget, "utcnow", clock.utcnow)
    return clock


def _every_signal(entry: Callable[[str, JobRecord, str], T]) -> Iterator[list[T]]:
    """``entry(signal, record, event id)`` of every poller signal sent while it is active."""
    seen: list[T] = []

    def receiver(sender: str, record: JobRecord, event_id: str, **_: Any) -> None:
        seen.append(entry(sender, record, event_id))

    for signal in signals.SIGNALS.values():
        signal.connect(receiver, weak=False)
    yield seen
    for signal in signals.SIGNALS.values():
        signal.disconnect(receiver)


@pytest.fixture
def sent() -> Iterator[list[tuple[str, str]]]:
    """(signal, tracking id) of every poller signal sent during the test."""
    yield from _every_signal(lambda name, record, _: (name, record.tracking_id))


@pytest.fixture
def received() -> Iterator[list[tuple[str, str, str]]]:
    """(signal, tracking id, event id) of every poller signal sent during the test."""
    yield from _every_signal(lambda name, record, event_id: (name, record.tracking_id, event_id))
