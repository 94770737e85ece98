"""The worker's message consumer: Celery's own, kept alive across a broker restart.

Celery 5.7.0 closes the broken broker connection after ``collect()`` has already detached its
transport. Closing the channel then tries to put the unacked messages back through a transport
with no client, and the ``AttributeError`` it raises (from kombu's ``_connparams``) escapes
Celery's ``ignore_errors`` and stops the consumer for good: the worker process lives on but
consumes nothing. The connection is being thrown away at that point, and its unacked messages
are still in Redis's unacked index, where kombu restores them once their visibility timeout
passes (and the reconciler re-sends overdue checks sooner). So that one close is made to log the
error instead, and the rest of Celery's handling runs unchanged.
``tests/faults/test_redis_restart.py`` shows the same worker carrying on after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    """Celery's consumer, surviving the connection close that fails after a broker restart."""

    def on_connection_error_after_connected(self, exc: Any) -> None:
        """Drop the lost connection as Celery does; its close may fail as described above."""
        lost = self.connection
        if lost is not None:
            # ignore_errors() looks the method up on the instance: this shadows it for this close.
            lost.close = _tolerating_detached_transport(lost.close)  # type: ignore[method-assign]
        super().on_connection_error_after_connected(exc)


def _tolerating_detached_transport(close: Callable[[], None]) -> Callable[[], None]:
    def close_lost_connection() -> None:
        try:
            close()
        except AttributeError:
            logger.warning(
                "closing the lost broker connection failed (its transport was already detached); "
                "reconnecting anyway, unacked messages come back after the visibility timeout",
                exc_info=True,
            )

    return close_lost_connection
