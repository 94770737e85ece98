"""The Celery app: ``celery -A poller worker`` starts a worker.

Configuration comes from :func:`poller.settings.get_settings`, read lazily when Celery first needs
it (so a process can set ``POLLER_*`` variables before that, as the test fixtures do). Anything
here can still be overridden with ``app.conf.update(...)`` or Celery's own config module.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from celery.app.control import Control
from celery.utils.functional import maybe_list

from poller.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def celery_config() -> dict[str, Any]:
    """Celery settings derived from poller's settings."""
    settings = get_settings()
    transport = {"visibility_timeout": settings.visibility_timeout, **_sentinel(settings)}
    return {
        "broker_url": settings.broker_url.get_secret_value(),
        # Countdown messages stay unacked until due. Redis: the broker must not redeliver them
        # earlier. RabbitMQ gives a message back when its consumer's connection drops, and
        # has no visibility timeout (its consumer_timeout is checked by the settings).
        "broker_transport_options": (
            {}
            if settings.broker_is_rabbitmq
            else {**_redis_broker(settings), **_sentinel(settings)}
        ),
        **_broker_transport(settings),
        "result_backend": settings.effective_result_backend,
        "result_backend_transport_options": transport,
        **_common_config(settings),
        **(_RABBITMQ if settings.broker_is_rabbitmq else {}),
    }


_RABBITMQ = {
    # After a reconnect Celery lowers the prefetch count and raises it again as tasks end; with
    # countdown checks held unacked it may never be raised, and the worker stops receiving.
    # poller's checks are short: over-fetching is harmless (docs: Reliability, Broker restarts).
    "worker_enable_prefetch_count_reduction": False,
}


# The broker URL schemes kombu's plain Redis transport serves (Sentinel has a transport of its own)
_PLAIN_REDIS = ("redis://", "rediss://", "redis+socket://")


def _broker_transport(settings: Settings) -> dict[str, Any]:
    """A plain Redis broker's transport: kombu's, setting a malformed message aside rather than
    stopping the worker (:mod:`poller.worker.broker_transport`); None (the URL's own) for any
    other broker, said explicitly so that a configuration updated to another broker drops it."""
    plain_redis = settings.broker_url.get_secret_value().startswith(_PLAIN_REDIS)
    return {"broker_transport": "poller.worker.broker_transport:Transport" if plain_redis else None}


def _sentinel(settings: Settings) -> dict[str, Any]:
    """What kombu's and Celery's Sentinel clients need beside a sentinel:// URL: the master's
    name, and the Sentinels' own password (ignored by a plain Redis URL's transport)."""
    if settings.sentinel_master is None:
        return {}
    options: dict[str, Any] = {"master_name": settings.sentinel_master}
    if settings.sentinel_password is not None:
        options["sentinel_kwargs"] = {"password": settings.sentinel_password.get_secret_value()}
    return options


def _redis_broker(settings: Settings) -> dict[str, Any]:
    """Transport options of the Redis broker (kombu's ``redis`` transport)."""
    return {
        "visibility_timeout": settings.visibility_timeout,
        # kombu looks for messages whose visibility timeout passed every 10 s x 10 sweeps
        # (about 100 s) by default; a sweep is one ZRANGE, so poller runs one every few
        # seconds: a message stranded by a lost connection or a dead worker comes back within
        # the visibility timeout plus restore_sweep_seconds.
        "unacked_restore_interval": restore_sweep_seconds(settings.visibility_timeout),
        "unacked_restore_throttle": 1,
        # kombu's unacked index is one per Redis database ("unacked"), and a sweep restores any
        # message in it past *poller's* timeout: an app on the same database must keep its own.
        "unacked_key": f"{settings.key_prefix}:unacked",
        "unacked_index_key": f"{settings.key_prefix}:unacked_index",
        "unacked_mutex_key": f"{settings.key_prefix}:unacked_mutex",
        # A worker takes from its queues in the order it consumes them, not in turn: the
        # checks' queue first (see poller.worker.startup), so a job's end never waits behind a
        # burst of submissions.
        "queue_order_strategy": "priority",
    }


def _common_config(settings: Settings) -> dict[str, Any]:
    """Celery settings that hold whatever the broker."""
    return {
        # JSON only, on the wire and in results: pickle would let a broker message run code.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A message is acked only after its task finished, and put back when a worker dies:
        # no job is forgotten by a crash (the lifecycle makes redelivery harmless).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "result_expires": settings.record_ttl,
        "result_extended": True,
        # Events for Flower: every submit and check is visible, with its arguments.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # No task_track_started: a late duplicate delivery would overwrite a FAILURE result
        # with STARTED (only SUCCESS is protected); Flower sees starts through events anyway.
        "broker_connection_retry_on_startup": True,
        # Celery's consumer, surviving a broker restart: see poller/worker/broker_consumer.py.
        "worker_consumer": "poller.worker.broker_consumer:Consumer",
        "worker_hijack_root_logger": False,
        # Countdowns (a check's, a submission's turn in the AWS call budget) run within 0.1 s
        # of their time: Celery's ETA timer otherwise sleeps up to 1 s between looks.
        "worker_timer_precision": 0.1,
        # poller's tasks have a queue of their own, so an app's workers on the same broker
        # never receive them; anything else poller's worker sends on (the app's chain steps)
        # goes to the app's default queue. poller's own default queue is its own, so that
        # `celery -A poller purge` purges nothing of the app's. See poller/worker/startup.py.
        "task_routes": [
            {"poller.*": {"queue": settings.queue}},
            {"*": {"queue": settings.app_queue}},
        ],
        "task_default_queue": settings.queue,
    }


def restore_sweep_seconds(visibility_timeout: int) -> int:
    """Seconds between sweeps for unacked messages past their visibility timeout.

    A twentieth of the timeout, between 1 and 5 s: ``3600`` -> 5, ``60`` -> 3, ``8`` -> 1.
    """
    return max(1, min(5, visibility_timeout // 20))


class PollerAMQP(AMQP):
    """Celery's messaging, with a task-sent event named like the task's shadow (as the worker's
    task-received event is): Flower then keeps a job's name while its next check waits."""

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:
        """AMQP.as_task_v2; the sent event takes the shadow name when there is one."""
        message = super().as_task_v2(*args, **kwargs)
        shadow = message.headers.get("shadow")
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


class PollerControl(Control):
    """Celery's remote control, recording revocations of poller's jobs in Redis first.

    A revoke sent through poller's app (``AsyncResult.revoke()`` of a poller result, Flower's
    buttons, ``celery -A poller control revoke``) is then honoured even by a worker that was not
    up to receive the broadcast. See :mod:`poller.core.revocation`.
    """

    def broadcast(
        self, command: str, arguments: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        """Control.broadcast; a ``revoke`` is written into the jobs' records before it is sent."""
        if command == "revoke" and arguments:
            record_revokes(arguments.get("task_id"), bool(arguments.get("terminate")))
        return super().broadcast(command, arguments, *args, **kwargs)


def record_revokes(task_ids: Any, terminate: bool) -> list[str]:
    """Record the revocation of each of poller's jobs among ``task_ids`` (an id or a list).
    Returns their tracking ids; a Redis error is logged (the broadcast still goes out)."""
    from poller.core import revocation
    from poller.runtime import get_store

    ids = [str(i) for i in maybe_list(task_ids) or []]
    try:
        return revocation.request(get_store(), ids, revocation.reason_for(terminate))
    except Exception:
        logger.warning("could not record the revocation of %s in Redis", ids, exc_info=True)
        return []


# A library's app must never become the process's current app: the project's @shared_task
# would then resolve to poller's app and broker (a worker of poller's still sets it current).
app = Celery(
    "poller",
    include=["poller.tasks"],
    set_as_current=False,
    control=PollerControl,
    amqp=PollerAMQP,
)
app.add_defaults(celery_config)


def poller_celery_command() -> str | None:
    """The subcommand when this process is ``celery -A poller <subcommand>``, else None.

    Celery's command line imports the app inside its group callback, where click's context
    already knows the subcommand; another app's command (``celery -A shop worker`` in a
    process that imports poller) is not poller's.
    """
    import click

    context = click.get_current_context(silent=True)
    if context is None or context.invoked_subcommand is None:
        return None
    # Only Celery's own command line: another click program importing poller is not asked
    celery_cli = sys.modules.get("celery.bin.celery")
    if celery_cli is None or context.find_root().command is not getattr(celery_cli, "celery", None):
        return None
    app_name = str(context.params.get("app") or "")
    if app_name.split(":")[0].split(".")[0] != "poller":
        return None
    return context.invoked_subcommand


def _install_worker_parts() -> None:
    from celery.signals import celeryd_init, worker_init

    from poller.worker import tracebacks
    from poller.worker.batch_events_process import EventsStep
    from poller.worker.heartbeat import HeartbeatStep
    from poller.worker.reconcile import ReconcileStep
    from poller.worker.revokes import revoke_listener
    from poller.worker.startup import prepare_worker, refuse_bad_settings

    def on_celeryd_init(instance: Any, options: dict[str, Any], **_: Any) -> None:
        if instance.app is app:  # not another app's worker in a process that imported poller
            prepare_worker(instance, options)

    def on_worker_init(sender: Any, **_: Any) -> None:
        if getattr(sender, "app", None) is app:  # poller's own worker only
            tracebacks.install()

    command = poller_celery_command()
    if command == "worker":
        refuse_bad_settings()  # before Celery reads its settings (a traceback, exit code 1)
    elif command == "flower":
        from tornado.options import options

        from poller.monitoring import flower

        flower.install(options)
    app.steps["worker"].add(HeartbeatStep)
    app.steps["worker"].add(ReconcileStep)
    app.steps["worker"].add(EventsStep)
    app.steps["consumer"].add(revoke_listener(cancel_revoked))
    celeryd_init.connect(on_celeryd_init, weak=False)
    worker_init.connect(on_worker_init, weak=False)


def cancel_revoked(task_ids: Any, terminate: bool) -> None:
    """In poller's worker, for a ``revoke`` broadcast: cancel each of poller's jobs among
    ``task_ids`` now, and mark its Celery result REVOKED (see :mod:`poller.core.revocation`)."""
    from poller.core import revocation
    from poller.runtime import get_runtime

    for tracking_id in record_revokes(task_ids, terminate):
        record = revocation.apply(get_runtime(), tracking_id)
        if record is not None:
            app.backend.mark_as_revoked(tracking_id, record.status_reason or revocation.REASON)


_install_worker_parts()
