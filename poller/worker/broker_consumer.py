"""The worker's broker consumer: Celery's own, kept alive across a lost broker connection.

Once a broker connection is lost, kombu detaches its transport, and any later operation on its
channel raises ``AttributeError`` (from kombu's ``_connparams``), which is none of the connection
errors Celery and kombu catch. Two such operations would end the worker:

- **the close of the lost connection** (``on_connection_error_after_connected``): it escapes
  ``ignore_errors`` and stops the consumer for good while the process lives on;
- **an ack, reject or requeue of a task that ran across the loss** (``task_acks_late``): Celery
  queues it on the event loop with ``call_soon_ack``, where it raises out of the loop and the
  worker exits with ``Unrecoverable error``.

:class:`Consumer` logs a warning for each instead and goes on. Skipping them loses nothing: the
message of a skipped ack stays in the broker's unacked index and is delivered again once the
visibility timeout passes (kombu's restore sweep, which :func:`poller.app.celery_config` runs
every few seconds), where the check's fence drops it as already done; the reconciler re-sends
checks that are overdue meanwhile. ``tests/test_broker_consumer.py`` raises both as kombu does,
and ``tests/faults/test_redis_restart.py`` restarts Redis under a running worker. The Celery
releases this applies to, and how soon such messages come back, are in the manual
(docs/operations/reliability.md, "Broker restarts").
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
        """Drop the lost connection as Celery does; a close that fails on the detached
        transport is logged, and the consumer reconnects."""
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
