"""How poller's tasks present themselves to Celery: own queue, not shared, no retry cap."""

from __future__ import annotations

from celery import Celery, chain

from poller import submit_job
from poller.app import app
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
