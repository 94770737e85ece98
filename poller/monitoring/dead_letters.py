"""The events queues' dead-letter queues, watched: ``poller_events_dead_letters`` for Prometheus.

A message the workers received and could not handle ``MAX_RECEIVES`` times (Redis down for long,
a bug) goes to the events queue's dead-letter queue (``poller events setup`` creates it), where
nothing reads it: the shipped alert fires when one is there. ``poller metrics`` asks SQS for each
events queue's dead-letter queue (from its RedrivePolicy) and its depth, at most once a minute
whatever the scrape interval (SQS calls are cheap, but a scrape must stay fast).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0


def dead_letter_depth(sqs: Any, queue_url: str) -> int | None:
    """Messages waiting in ``queue_url``'s dead-letter queue; None when it has none."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return None
    arn = str(json.loads(policy)["deadLetterTargetArn"])
    account, name = arn.split(":")[4], arn.split(":")[5]
    dlq = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    depth = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"
    ]["ApproximateNumberOfMessages"]
    return int(depth)


class DeadLetterCollector(Collector):
    """``poller_events_dead_letters{queue}``: the depth of each events queue's dead-letter
    queue, refreshed at most every REFRESH_SECONDS; a queue SQS did not answer for is left out
    (its last answer stands until then)."""

    def __init__(self, queue_urls: list[str], client_for: Callable[[str], Any]) -> None:
        self._queue_urls = queue_urls
        self._client_for = client_for
        self._lock = threading.Lock()
        self._depths: dict[str, int] = {}
        self._read_at = -REFRESH_SECONDS

    def collect(self) -> Iterator[Metric]:
        """One gauge sample per events queue that has a dead-letter queue."""
        with self._lock:
            if time.monotonic() - self._read_at >= REFRESH_SECONDS:
                self._read_at = time.monotonic()
                self._refresh()
            depths = dict(self._depths)
        family = GaugeMetricFamily(
            "poller_events_dead_letters",
            "Messages in the dead-letter queue of each events queue (read at most once a minute).",
            labels=["queue"],
        )
        for url, depth in sorted(depths.items()):
            family.add_metric([url.rsplit("/", 1)[-1]], depth)
        yield family

    def _refresh(self) -> None:
        for url in self._queue_urls:
            try:
                depth = dead_letter_depth(self._client_for(url), url)
            except (BotoCoreError, ClientError, KeyError, ValueError, IndexError) as err:
                logger.warning("poller metrics: dead-letter queue of %s not read: %s", url, err)
                continue
            if depth is not None:
                self._depths[url] = depth
