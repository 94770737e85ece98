"""The emulator's faster SQS paths give moto's answers: queue attributes, computed when read."""

from __future__ import annotations

import subprocess
import sys

# Run in a fresh interpreter: moto's own `Queue.attributes` must be read before the emulator
# replaces it, whatever this test process installed earlier.
COMPARE = """
import json
from moto.sqs.models import Queue, sqs_backends

moto_attributes = Queue.attributes.fget
backend = sqs_backends["123456789012"]["us-east-1"]
plain = backend.create_queue("plain")
fifo = backend.create_queue("q.fifo", FifoQueue="true", ContentBasedDeduplication="true")
redrive = {"deadLetterTargetArn": plain.queue_arn, "maxReceiveCount": 5}
full = backend.create_queue(
    "full", RedrivePolicy=json.dumps(redrive), KmsMasterKeyId="k", Policy='{"Version": "x"}'
)
backend.send_message("plain", "visible")
backend.send_message("plain", "delayed", delay_seconds=30)
backend.receive_message("plain", 1, 0, 30)
queues = (plain, fifo, full)
expected = [list(moto_attributes(q).items()) for q in queues]

from aws_batch_emulator import sqs_speed

sqs_speed.install()
print(json.dumps({"same": [list(q.attributes.items()) == e for q, e in zip(queues, expected)],
                  "dedup": fifo.attributes.get("ContentBasedDeduplication")}))
"""


def test_queue_attributes_are_motos_names_order_and_values() -> None:
    # When moto's attributes and the emulator's are read for a plain queue (with a visible, a
    # delayed and an in-flight message), a FIFO queue, and one with every optional attribute
    ran = subprocess.run(
        [sys.executable, "-c", COMPARE], capture_output=True, text=True, timeout=60, check=True
    )
    # Then they are the same, item for item and in order
    assert ran.stdout.strip().splitlines()[-1] == (
        '{"same": [true, true, true], "dedup": "true"}'
    ), ran.stderr


def test_a_receive_reads_visible_messages_in_order_and_deletes_take_them_out() -> None:
    from aws_batch_emulator import sqs_speed
    from moto.sqs.models import sqs_backends

    sqs_speed.install()
    backend = sqs_backends["210987654321"]["us-east-1"]
    queue = backend.create_queue("speed")
    for n in range(25):
        backend.send_message("speed", f"m{n}")
    backend.send_message("speed", "later", delay_seconds=60)
    # Given 25 visible messages (and a delayed one): ten received, oldest first
    first = backend.receive_message("speed", 10, 0, 30)
    assert [m.body for m in first] == [f"m{n}" for n in range(10)]
    # Then the in-flight ten are skipped by the next receive and by the counts
    second = backend.receive_message("speed", 10, 0, 30)
    assert [m.body for m in second] == [f"m{n}" for n in range(10, 20)]
    assert len(queue.messages) == 5 and queue.messages
    assert queue.approximate_number_of_messages_not_visible == 20
    # And deleted messages are gone; the ones sent meanwhile stay, in order
    backend.delete_message_batch(
        "speed", [{"Id": str(n), "ReceiptHandle": m.receipt_handle} for n, m in enumerate(first)]
    )
    backend.send_message("speed", "m25")
    assert [m.body for m in queue._messages][:3] == ["m10", "m11", "m12"]
    rest = backend.receive_message("speed", 10, 0, 30)
    assert [m.body for m in rest] == ["m20", "m21", "m22", "m23", "m24", "m25"]
    assert not queue.messages  # only in-flight and delayed ones left: a long poll waits
