"""The worker's message consumer: Celery's own, kept alive across a broker restart.

Celery 5.7.0 closes the broken broker connection after ``collect()`` has already detached its
transport. Closing the channel then tries to put the unacked messages back through a transport
with no client, and the ``AttributeError`` it raises (from kombu's ``_connparams``) escapes and
stops the consumer for good: the worker process lives on but consumes nothing. The connection
is being thrown away at that point, and its unacked messages are still in Redis's unacked index,
where kombu restores them once their visibility timeout passes; so the error is logged and the
consumer goes on to reconnect. ``tests/faults/test_redis_restart.py`` shows the worker surviving.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    """Celery's consumer, surviving the connection close that fails after a broker restart."""

    def on_connection_error_after_connected(self, exc: Any) -> None:
        """Drop the lost connection as Celery does, tolerating the failed close of Celery 5.7.0."""
        lost = self.connection
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError:
            if lost is None or self.connection is not None:  # not the close of a lost connection
                raise
            logger.warning(
                "closing the lost broker connection failed (its transport was already detached); "
                "reconnecting anyway, unacked messages come back after the visibility timeout",
                exc_info=True,
            )
