"""The worker's message consumer: Celery's own, kept alive across a broker restart.

Celery 5.7.0 (kombu 5.7.0, the newest releases) lets a Redis restart end the worker in two ways.
Both come from the same state: after a lost connection, ``collect()`` detaches its transport,
and any later operation on its channel fails in kombu's ``_connparams`` with
``AttributeError: 'NoneType' object has no attribute 'hostname'``, which is not one of the
connection errors Celery and kombu catch.

- **The close of the lost connection** (``on_connection_error_after_connected``): it escapes
  ``ignore_errors`` and stops the consumer for good while the process lives on.
- **An ack, reject or requeue of a task that was running across the restart**
  (``task_acks_late``): Celery queues it on the event loop with ``call_soon_ack``; there it
  raises out of the loop, the worker logs ``Unrecoverable error`` and exits.

Both are made to log a warning instead. Nothing is lost by skipping them: the message of a
skipped ack stays in Redis's unacked index and is delivered again once the visibility timeout
passes (kombu's restore sweep, tuned by :func:`poller.app.celery_config` to run every few
seconds; with the fault suite's 8 s timeout such messages came back 4-8 s after the restart),
where the check's fence drops it as already done; the reconciler re-sends checks that are
overdue meanwhile. ``tests/test_consumer.py`` makes both failures happen as kombu does,
and ``tests/faults/test_redis_restart.py`` restarts Redis under a running worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    """Celery's consumer, surviving operations on a connection a broker restart has lost."""

    def on_connection_error_after_connected(self, exc: Any) -> None:
        """Drop the lost connection as Celery does; its close may fail as described above."""
        lost = self.connection
        if lost is not None:
            # ignore_errors() looks the method up on the instance: this shadows it for this close.
            lost.close = _logging_failure(  # type: ignore[method-assign]
                lost.close,
                "closing the lost broker connection failed (its transport was already "
                "detached); reconnecting anyway",
            )
        super().on_connection_error_after_connected(exc)

    def call_soon_ack(self, p: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Queue an ack/reject as Celery does; one that fails on a detached transport is logged.

        Only that AttributeError: a connection error (kombu re-raises BrokenPipeError on
        purpose) still reaches Celery, which reconnects.
        """
        operation = partial(p, *args, **kwargs)
        return super().call_soon_ack(  # type: ignore[misc]  # not in celery-types yet
            _logging_failure(
                operation,
                f"{_describe(p)} failed (its broker connection was lost); "
                "the message comes back after the visibility timeout and is dropped as done",
            )
        )


def _logging_failure(operation: Callable[[], Any], message: str) -> Callable[[], None]:
    def run() -> None:
        try:
            operation()
        except AttributeError:  # the detached transport described above
            logger.warning(message, exc_info=True)

    return run


def _describe(operation: Callable[..., Any]) -> str:
    """'ack of message <tag>' for kombu's bound ``ack_log_error`` (and reject/requeue alike)."""
    name = getattr(operation, "__name__", "broker operation").removesuffix("_log_error")
    message = getattr(operation, "__self__", None)
    tag = getattr(message, "delivery_tag", None)
    return f"{name} of message {tag}" if tag is not None else name
