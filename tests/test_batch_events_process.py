"""The worker's events process: forked at start, restarted when it dies, stopped with the worker."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from poller import runtime
from poller.app import app
from poller.worker import batch_events_process
from tests.conftest import configured_for, eventually


@pytest.fixture
def step() -> Iterator[batch_events_process.EventsStep]:
    # An events queue nobody answers at: the receivers fail and back off, the process lives on
    env = {
        "POLLER_EVENTS_QUEUE_URL": "http://127.0.0.1:9/123456789012/nowhere",
        "POLLER_EVENTS_RECEIVERS": "2",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with configured_for(env):
        worker = SimpleNamespace(app=app)
        events = batch_events_process.EventsStep(worker)
        events.start(worker)
        try:
            yield events
        finally:
            events.stop(worker)


def test_the_events_process_is_restarted_when_it_dies_and_stopped_with_the_worker(
    step: batch_events_process.EventsStep,
) -> None:
    # Given the worker's events process
    first = step._process
    assert first is not None and first.is_alive() and first.pid != os.getpid()
    # When it is killed
    os.kill(first.pid, signal.SIGKILL)
    # Then the worker starts another one within seconds
    again = eventually(
        lambda: step._process if step._process is not first and step._process.is_alive() else None,
        timeout=batch_events_process.WATCH_SECONDS * 5,
    )
    # And stopping the worker stops it, in about STOP_GRACE
    step.stop(worker=None)
    assert not again.is_alive()


def test_no_events_queue_no_process() -> None:
    with configured_for({}):
        worker = SimpleNamespace(app=app)
        events = batch_events_process.EventsStep(worker)
        events.start(worker)
        assert events._process is None
        events.stop(worker)


def test_the_events_process_stops_on_its_own_once_its_worker_is_gone() -> None:
    env = {"POLLER_EVENTS_QUEUE_URL": "http://127.0.0.1:9/1/q", "AWS_DEFAULT_REGION": "us-east-1"}
    with configured_for(env):
        fork = batch_events_process._FORK
        stop, worker_end = fork.Pipe(duplex=False)
        orphan = fork.Process(target=batch_events_process.run_process, args=(app, stop, worker_end))
        orphan.start()
        stop.close()
        # When its worker goes away without a word (its end of the pipe closes with it)
        worker_end.close()
        # Then the events process ends on its own, its receivers given STOP_GRACE
        orphan.join(timeout=batch_events_process.STOP_GRACE + 5)
        assert orphan.exitcode == 0


def test_a_forked_process_builds_its_own_runtime() -> None:
    # Given a process that built its runtime (a Batch client with its sockets, a call counter)
    env = {"POLLER_EVENTS_QUEUE_URL": "http://127.0.0.1:9/1/q", "AWS_DEFAULT_REGION": "us-east-1"}
    with configured_for(env):
        built = runtime.get_runtime()
        fork = batch_events_process._FORK
        answer, child_end = fork.Pipe(duplex=False)
        # When it forks (as the worker forks its events process, or a prefork pool its children)
        child = fork.Process(
            target=lambda: child_end.send(
                (runtime.get_runtime() is built, runtime.get_store() is built.store)
            )
        )
        child.start()
        shared = answer.recv()
        child.join(timeout=10)
        # Then the child builds its own; the parent keeps its
        assert shared == (False, False)
        assert runtime.get_runtime() is built


def test_several_queues_share_the_receivers_each_getting_one_at_least(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[str] = []
    monkeypatch.setattr(
        batch_events_process.Receivers, "loop", lambda self, url: received.append(url)
    )
    receivers = batch_events_process.Receivers(app)
    for thread in receivers.run(1, ["q-east", "q-west"]) + receivers.run(3, ["q-east", "q-west"]):
        thread.join(timeout=5)
    assert sorted(received) == ["q-east", "q-east", "q-east", "q-west", "q-west"]


def test_the_events_queue_setting_takes_several_urls() -> None:
    from poller.settings import Settings

    urls = Settings(events_queue_url=" https://a/1/q , https://b/2/q,").events_queue_urls
    assert urls == ["https://a/1/q", "https://b/2/q"]
