"""The Redis broker's transport, with one malformed message set aside instead of the worker.

A message that cannot be parsed is logged in one line and dropped (it never reached a task, so
no job is lost with it), and the worker goes on with the next. Why: kombu's Redis transport
parses each message it pops (the JSON envelope, then its body's encoding) inside the worker's
event loop, where an error is Celery's "Unrecoverable error" and stops the worker, so one forged
message (``LPUSH poller "not json"``) from anyone who can write to the broker would stop every
worker that popped it, again after each restart.

Celery uses it for a ``redis://``, ``rediss://`` or ``redis+socket://`` broker
(``broker_transport``, :mod:`poller.app`); Sentinel's transport and RabbitMQ's are Celery's own.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.exceptions import ContentDisallowed
from kombu.transport import redis

logger = logging.getLogger(__name__)

MALFORMED = (ValueError, KeyError, TypeError, ContentDisallowed)
"""What parsing a forged message raises: JSON and base64 errors are ValueErrors, a missing
envelope field a KeyError, a field of the wrong type a TypeError."""


def _dropped(queue: str, err: Exception) -> None:
    logger.error(
        "broker: a message that could not be parsed was dropped (queue: %s): %s: %.200s",
        queue, type(err).__name__, err,
    )  # fmt: skip


class Channel(redis.Channel):
    """kombu's Redis channel; a message it cannot parse is dropped with one log line."""

    # Redis's own errors (a lost connection) are no MALFORMED: they reach kombu as before
    def _brpop_read(self, **options: Any) -> bool:
        try:
            return bool(super()._brpop_read(**options))  # type: ignore[misc]  # not in kombu's types
        except MALFORMED as err:
            _dropped("the one BRPOP answered from", err)
            return True  # an item was taken: the next one is read as usual

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        while True:
            try:
                return super()._get(queue)
            except MALFORMED as err:
                _dropped(queue, err)


class Transport(redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
