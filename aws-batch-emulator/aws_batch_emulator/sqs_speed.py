"""moto's SQS, made fast enough for thousands of messages waiting in a queue.

moto checks each message it hands out against the queue's retention period by building every
queue attribute (``get_queue_attributes``), and two of those count the queue's messages one by
one with a clock read each: 30 full scans per 10-message ReceiveMessage, about 0.8 s with 750
messages waiting, so a consumer could not keep up with a thousand jobs' events. The retention
check reads the one attribute it needs instead; the answers are the same.
"""

from __future__ import annotations

import time
from typing import Any

from moto.sqs.models import SQSBackend


def _within_retention(self: SQSBackend, queue_name: str, message: Any) -> bool:
    queue = self.get_queue(queue_name)
    retain_until = int(getattr(queue, "message_retention_period")) + message.sent_timestamp / 1000  # noqa: B009 - set by moto with setattr
    return bool(retain_until > time.time())


def install() -> None:
    """Replace moto's retention check (idempotent)."""
    SQSBackend.is_message_valid_based_on_retention_period = _within_retention  # type: ignore[method-assign]
