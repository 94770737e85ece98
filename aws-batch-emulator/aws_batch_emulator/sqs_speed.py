"""moto's SQS, made fast enough for thousands of messages waiting in a queue.

Three of moto's hot paths read the clock, or scan the queue, once per message:

- a received message's retention check builds every queue attribute, three of which count the
  queue's messages one by one (30 full scans per 10-message ReceiveMessage), and SendMessage
  builds them all for one attribute too (three scans per event delivered: 46 % of the endpoint's
  time while 2,000 jobs published their 10,000 events, by py-spy);
- the list of visible messages, and the three approximate counts, read the clock per message,
  and every ReceiveMessage listed all visible messages to return ten (with 50,000 events
  waiting, in a 100,000-job run, the consumer's receives fell to ~60 events/s);
- DeleteMessage scans the queue twice per receipt handle, building a list per message.

With 3,000 events waiting, a 10-message receive and its batch delete took 76 ms in process and
far longer in the server under load, so a consumer could not keep up with a thousand jobs'
events. These replacements give the same answers, reading the clock once per call, reading the queue
only as far as a receive needs, and scanning once per deletion.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.sqs.models import Queue, SQSBackend


def _snake_case(name: str) -> str:
    """An attribute's member name, as moto's Queue names them: ``QueueArn`` -> ``queue_arn``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _now_ms() -> float:
    """Epoch milliseconds, the clock of moto's message timestamps (``visible_at`` ...)."""
    return time.time() * 1000.0


def _within_retention(self: SQSBackend, queue_name: str, message: Any) -> bool:
    queue = self.get_queue(queue_name)
    retention = int(getattr(queue, "message_retention_period"))  # noqa: B009 - moto's setattr
    return bool(retention + message.sent_timestamp / 1000 > time.time())


class _VisibleMessages:
    """A queue's visible messages at one moment, found as they are read: a receive stops at its
    tenth, and a long poll's wait at the first, instead of listing the whole queue each time."""

    def __init__(self, queue: Queue) -> None:
        self._messages = queue._messages
        self._now = _now_ms()

    def __iter__(self) -> Iterator[Any]:
        now = self._now
        return (m for m in self._messages if now > m.visible_at and not now < m.delayed_until)

    def __bool__(self) -> bool:
        return any(True for _ in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _visible_messages(self: Queue) -> _VisibleMessages:
    return _VisibleMessages(self)


def _delayed(self: Queue) -> int:
    now = _now_ms()
    return sum(1 for m in self._messages if now < m.delayed_until)


def _not_visible(self: Queue) -> int:
    now = _now_ms()
    return sum(1 for m in self._messages if not now > m.visible_at)


def _visible(self: Queue) -> int:
    return len(_visible_messages(self))


class _Attributes(Mapping[str, Any]):
    """A queue's attributes as moto's ``Queue.attributes`` gives them (same names, order and
    values), each computed when it is read: its message counts scan the queue."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        names = list(queue.BASE_ATTRIBUTES)  # then as moto adds them
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:  # type: ignore[attr-defined]
            names += queue.KMS_ATTRIBUTES
        if queue.policy:
            names.append("Policy")
        if queue.redrive_policy:
            names.append("RedrivePolicy")
        self._names = dict.fromkeys(names)  # ordered, each name once

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        queue = self._queue
        if name == "Policy" and queue.policy:
            return queue.policy
        if name == "RedrivePolicy" and queue.redrive_policy:
            return json.dumps(queue.redrive_policy)
        value = getattr(queue, _snake_case(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _delete_message(self: Queue, receipt_handle: str) -> None:
    if receipt_handle in self.deleted_messages:
        return  # deleted already: AWS answers success again
    # Under the lock moto's SendMessage appends with: the message is taken out of the list in
    # place (a receive is usually of the oldest, so the scan is short), not the list rebuilt.
    with self._messages_lock:
        index = next(
            (
                i
                for i, m in enumerate(self._messages)
                if receipt_handle == m.receipt_handle or receipt_handle in m._old_receipt_handles
            ),
            None,
        )
        if index is None:
            raise ReceiptHandleIsInvalid()
        message = self._messages.pop(index)
    self.pending_messages.discard(message)
    self.deleted_messages.update(h for h in message.all_receipt_handles if h)


def install() -> None:
    """Replace moto's slow paths (idempotent)."""
    SQSBackend.is_message_valid_based_on_retention_period = _within_retention  # type: ignore[method-assign]
    Queue.messages = property(_visible_messages)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages_delayed = property(_delayed)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages_not_visible = property(_not_visible)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages = property(_visible)  # type: ignore[assignment,method-assign]
    Queue.delete_message = _delete_message  # type: ignore[method-assign]
    Queue.attributes = property(_Attributes)  # type: ignore[assignment,method-assign]
