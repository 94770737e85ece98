"""The emulator's events in moto's EventBridge and SQS: the ready-made rule and queue, delivery.

`create_event_resources` makes what a ``--events`` server starts with: the SQS queue
`resources.EVENTS_QUEUE` and the rule `resources.EVENTS_RULE` on the default bus, matching every
job state change, with the queue as its target.

`deliver` hands an event to the default bus as AWS Batch does: each enabled rule whose pattern
matches sends it to its targets. moto's PutEvents cannot do that faithfully: it makes up its own
event id and time, and its default input template drops ``account``. So `deliver` calls the rules
directly, with the event untransformed: an SQS target gets the event JSON itself as the message
body, as on AWS. (Input transformers of other rules are not applied.)
"""

from __future__ import annotations

import calendar
import json
import logging
import time
from typing import Any

from moto.events.models import events_backends
from moto.sqs.models import sqs_backends

from aws_batch_emulator import resources, sqs_speed

logger = logging.getLogger(__name__)


def create_event_resources(
    account_id: str = resources.ACCOUNT_ID, region: str = resources.REGION
) -> str:
    """Create the events queue, the rule and its target; return the queue's ARN."""
    sqs_speed.install()
    queue = sqs_backends[account_id][region].create_queue(resources.EVENTS_QUEUE)
    bus = events_backends[account_id][region]
    bus.put_rule(
        name=resources.EVENTS_RULE,
        description="Batch job state changes of the local Batch endpoint, to its events queue",
        event_bus_arn=resources.EVENT_BUS,
        event_pattern=json.dumps(resources.EVENTS_PATTERN),
        state="ENABLED",
    )
    bus.put_targets(
        resources.EVENTS_RULE,
        resources.EVENT_BUS,
        [{"Id": resources.EVENTS_TARGET_ID, "Arn": queue.queue_arn}],
    )
    logger.info("events of Batch jobs go to SQS queue %s", queue.queue_arn)
    return str(queue.queue_arn)


def deliver(event: dict[str, Any]) -> None:
    """Send `event` to the targets of every enabled rule of its account's default bus that
    matches it. Every rule gets it even if one fails; RuntimeError afterwards if any did."""
    bus = events_backends[event["account"]][event["region"]].describe_event_bus(resources.EVENT_BUS)
    # moto's SQS and log group targets write "time" themselves, from epoch seconds, in the same
    # ISO-8601 form: hand them the epoch of the event's time.
    epoch = calendar.timegm(time.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ"))
    message: Any = {**event, "time": epoch}  # moto's EventMessageType, by shape
    failed: list[str] = []
    for rule in list(bus.rules.values()):
        if rule.state != "ENABLED":
            continue
        try:
            rule.send_to_targets(message, transform_input=False)
        except Exception as err:  # moto's target code; one bad rule must not stop the others
            failed.append(f"{rule.name}: {err!r}")
    if failed:
        raise RuntimeError(f"event {event['id']} not delivered by rule(s) {'; '.join(failed)}")
