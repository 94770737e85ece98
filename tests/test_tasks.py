"""How poller's tasks present themselves to Celery: own queue, not shared, no retry cap."""

from __future__ import annotations

from typing import Any

import kombu.exceptions
import pytest
from celery import Celery, Task, chain

from poller import Unreachable, submit_job, tasks
from poller.app import app
from poller.models import JobStatus
from poller.runtime import ProcessRuntime
from poller.settings import Settings
from poller.store import JobStore
from poller.tasks import check_job


def test_poller_tasks_are_not_added_to_other_apps() -> None:
    # Celery adds @app.task tasks to every app by default: the app's workers would run them
    other = Celery("shop", set_as_current=False)
    other.finalize()
    assert "poller.submit_job" not in other.tasks
    assert "poller.check_job" not in other.tasks


def test_signatures_carry_poller_queue_into_anyones_canvas() -> None:
    # A chain an app's worker continues sends poller's step with the signature's own options
    step = submit_job.si("n", "q", "d")
    assert step.options["queue"] == "poller"
    assert check_job.s("id").options["queue"] == "poller"
    assert submit_job.s("n", "q", "d").set(queue="elsewhere").options["queue"] == "elsewhere"
    assert chain(step, check_job.si("x")).tasks[0].options["queue"] == "poller"
    assert submit_job.subtask(("n", "q", "d")).options["queue"] == "poller"


def test_poller_routes_its_own_tasks_and_leaves_the_rest_to_the_apps_default_queue() -> None:
    router = app.amqp.router
    assert router.route({}, "poller.check_job")["queue"].name == "poller"
    assert router.route({}, "shop.load_warehouse")["queue"].name == "celery"
    # A step that names its queue keeps it
    assert router.route({"queue": "reports"}, "shop.load_warehouse")["queue"].name == "reports"
    # And poller's default queue is its own: `celery -A poller purge` never empties the app's
    assert app.conf.task_default_queue == "poller"


def test_poller_keeps_its_unacked_messages_apart_from_an_apps_on_the_same_redis() -> None:
    options = app.conf.broker_transport_options
    assert (options["unacked_key"], options["unacked_index_key"]) == (
        "poller:unacked", "poller:unacked_index",
    )  # fmt: skip


def test_no_celery_retry_cap_can_end_a_submission_or_a_check() -> None:
    # Waiting for another attempt's lease must never end in MaxRetriesExceededError; transient
    # AWS errors are bounded by poller itself (then REJECTED)
    assert submit_job.max_retries is None
    assert check_job.max_retries is None


def test_an_unreachable_redis_at_delay_is_one_clear_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a process whose Redis (here a closed port) cannot be reached
    closed = JobStore.from_url("redis://:secret@127.0.0.1:1/0")
    monkeypatch.setattr(tasks, "get_store", lambda: closed)
    monkeypatch.setattr(
        tasks, "get_settings", lambda: Settings(broker_url="redis://:secret@127.0.0.1:1/0")
    )
    # When it submits a job
    with pytest.raises(Unreachable) as caught:
        submit_job.delay("n", "q", "d")
    # Then the error names the server, where (no password) and the setting to check
    message = str(caught.value)
    assert "poller's Redis at redis://:***@127.0.0.1:1/0 (POLLER_BROKER_URL)" in message
    assert "secret" not in message and isinstance(caught.value, ConnectionError)


def test_an_unreachable_broker_at_delay_is_one_clear_error_and_the_record_is_ended(
    rt: ProcessRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a process whose Redis answers and whose broker does not (Celery gives up publishing)
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:1.")

    monkeypatch.setattr(tasks, "get_store", lambda: rt.store)
    monkeypatch.setattr(Task, "apply_async", refused)
    # When it submits a job
    with pytest.raises(Unreachable, match=r"poller's broker at .* \(POLLER_BROKER_URL\)"):
        submit_job.apply_async(("n", "q", "d"), task_id="t-unsent")
    # Then its record says it was never sent (the reconciler will not submit it)
    assert rt.store.get("t-unsent").status is JobStatus.REJECTED
