"""poller's worker hears every ``revoke`` broadcast and cancels the jobs it names, at once.

Celery's own ``revoke`` command only remembers a revocation and drops the task's next message;
for poller that message is a check (or none at all, for a job Batch events carry), and the
Batch job would run on untracked. Celery's command stays as it is: a consumer bootstep of
poller's app (Celery's ``ConsumerStep``, its documented way to consume more) binds a queue of
its own to the control exchange, so it receives the same broadcasts beside Celery's handler
and acts on the revokes only. A revoke sent by any app on the broker (``AsyncResult.revoke()``,
Flower's buttons, ``celery control revoke``) reaches it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import bootsteps
from kombu import Consumer, Queue
from kombu.utils.uuid import uuid

logger = logging.getLogger(__name__)

Cancel = Callable[[Any, bool], None]
"""``cancel(task_ids, terminate)``: cancel each of poller's jobs among ``task_ids`` now."""


def revoke_listener(cancel: Cancel) -> type[bootsteps.ConsumerStep]:
    """A consumer bootstep that calls ``cancel`` for every revoke broadcast it hears."""

    class RevokeListener(bootsteps.ConsumerStep):
        """Consumer bootstep: cancel the jobs of each revoke broadcast (module docstring)."""

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.hostname = str(getattr(parent, "hostname", "") or "")
            self.mailbox = parent.app.control.mailbox

        def get_consumers(self, channel: Any) -> list[Consumer]:
            queue = Queue(  # this worker's own, gone with it (as Celery's pidbox queue is)
                f"{self.hostname}.poller-revokes.{uuid()}", exchange=self.mailbox.exchange,
                durable=False, auto_delete=True,
            )  # fmt: skip
            callbacks = [self.on_broadcast]
            accept = self.mailbox.accept
            return [Consumer(channel, [queue], callbacks=callbacks, accept=accept, no_ack=True)]

        def on_broadcast(self, body: Any, message: Any) -> None:
            """Cancel the jobs of a revoke meant for this worker; ignore every other command."""
            if not isinstance(body, dict) or body.get("method") != "revoke":
                return
            destination = body.get("destination")
            if destination and self.hostname not in destination:
                return
            arguments = body.get("arguments") or {}
            task_ids = arguments.get("task_id")
            try:
                cancel(task_ids, bool(arguments.get("terminate")))
            except Exception:  # Redis or AWS unreachable: the next check applies the revocation
                logger.exception("could not cancel the job of revoked task %s now", task_ids)

    return RevokeListener
