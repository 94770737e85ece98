"""The events queues' dead-letter queues, watched: ``poller_events_dead_letters`` for Prometheus.

A message the workers received and could not handle ``MAX_RECEIVES`` times (Redis down for long,
a bug) goes to the events queue's dead-letter queue (``poller events setup`` creates it), where
nothing reads it: the shipped alert fires when one is there. ``poller metrics`` finds each events
queue's dead-letter queue once (from its RedrivePolicy), then asks SQS for its depth at most once a
minute whatever the scrape interval: one call a queue, so that a scrape stays fast.
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


def dead_letter_queue(sqs: Any, queue_url: str) -> str | None:
    """The URL of ``queue_url``'s dead-letter queue (from its RedrivePolicy); None if it has none."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return None
    _, _, _, _, account, name = str(json.loads(policy)["deadLetterTargetArn"]).split(":", 5)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def depth(sqs: Any, queue_url: str) -> int:
    """Messages waiting in a queue (SQS's approximate count)."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


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
        # Looked up once each: a client, and the dead-letter queue's URL once one is found
        self._clients: dict[str, Any] = {}
        self._dead_letter_urls: dict[str, str] = {}

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
        for url, count in sorted(depths.items()):
            family.add_metric([url.rsplit("/", 1)[-1]], count)
        yield family

    def _refresh(self) -> None:
        for url in self._queue_urls:
            try:
                sqs = self._clients.get(url) or self._clients.setdefault(url, self._client_for(url))
                dead_letters = self._dead_letter_urls.get(url) or dead_letter_queue(sqs, url)
                if dead_letters is None:
                    continue
                self._dead_letter_urls[url] = dead_letters
                self._depths[url] = depth(sqs, dead_letters)
            except (BotoCoreError, ClientError, KeyError, ValueError, IndexError) as err:
                logger.warning("poller metrics: dead-letter queue of %s not read: %s", url, err)
