"""The reconcile thread outlives any failure of a pass, and logs a repeated one briefly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from poller.settings import get_settings
from poller.worker import heartbeat, reconcile
from tests.conftest import eventually


@pytest.fixture
def fast_passes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("POLLER_RECONCILE_INTERVAL", "0.01")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_failing_passes_never_end_the_thread(
    fast_passes: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given passes that fail the way a worker without an AWS region did, then recover
    passes: list[str] = []
    recovered = threading.Event()

    def runtime() -> Any:
        if len(passes) < 5:
            passes.append("failed")
            raise RuntimeError("You must specify a region.")
        passes.append("ran")
        recovered.set()
        return SimpleNamespace()

    monkeypatch.setattr(reconcile, "get_runtime", runtime)
    monkeypatch.setattr(reconcile, "run_if_leader", lambda rt, app: None)
    step = reconcile.ReconcileStep.__new__(reconcile.ReconcileStep)
    step._app = None
    step._stopping, step._thread = threading.Event(), None
    # When the reconcile thread runs
    step.start(worker=None)
    try:
        eventually(recovered.is_set, timeout=10)
    finally:
        step.stop(worker=None)
    # Then it carried on past every failure, with one traceback and one line per repeat
    assert passes[:6] == ["failed"] * 5 + ["ran"]
    assert caplog.text.count("Traceback") == 1
    assert caplog.text.count("reconcile pass failed again") == 4


def test_a_worker_keeps_saying_it_runs_while_a_reconcile_pass_lasts(
    fast_passes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a reconcile pass that outlasts the window a worker counts in (three intervals)
    noted: list[str] = []
    in_pass, release = threading.Event(), threading.Event()

    def slow_pass(rt: Any, app: Any) -> None:
        in_pass.set()
        release.wait(10)

    store = SimpleNamespace(counters=SimpleNamespace(note_worker=noted.append))
    monkeypatch.setattr(reconcile, "get_runtime", lambda: SimpleNamespace(store=store))
    monkeypatch.setattr(heartbeat, "get_runtime", lambda: SimpleNamespace(store=store))
    monkeypatch.setattr(reconcile, "run_if_leader", slow_pass)
    worker = SimpleNamespace(hostname="w1@host", app=None)
    steps = [reconcile.ReconcileStep(worker), heartbeat.HeartbeatStep(worker)]
    for step in steps:
        step.start(worker)
    try:
        # When the pass is under way
        in_pass.wait(10)
        during = len(noted)
        # Then the worker goes on saying it runs, every interval
        eventually(lambda: len(noted) >= during + 10, timeout=10)
    finally:
        release.set()
        for step in steps:
            step.stop(worker)
    assert set(noted) == {"w1@host"}
