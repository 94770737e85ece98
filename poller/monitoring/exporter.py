"""``poller metrics``: the fleet's job metrics for Prometheus, from the store's counters.

One process serves the whole fleet (every worker counts into Redis): run it beside Flower.
Celery's own exporters count tasks (every check is a task, rescheduling itself); these count
Batch jobs: how many are in each status, how they end, how long they wait and run, how late
their end is noticed, and what poller asks of AWS. Labels are bounded: status, job queue,
region, operation, outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from poller.aws.aws_calls import OPERATIONS, OUTCOMES
from poller.aws.sqs import sqs_client
from poller.aws.targets import default_region
from poller.models import JobStatus
from poller.monitoring.dead_letters import DeadLetterCollector
from poller.settings import DEFAULT_CALL_RATES, Settings
from poller.store import JobStore
from poller.store.budget import OUTCOMES as BUDGET_OUTCOMES
from poller.store.counters import EVENT_OUTCOMES, Histogram, Snapshot

logger = logging.getLogger(__name__)

HISTOGRAM_HELP = {
    "detection_lag_seconds": ("When poller noticed a job's end, minus Batch's stoppedAt.", None),
    "queue_wait_seconds": ("A job's startedAt minus its createdAt, by job queue.", "job_queue"),
    "job_run_seconds": ("A job's stoppedAt minus its startedAt, by job queue.", "job_queue"),
}


class FleetCollector(Collector):
    """Reads every counter from the store at each scrape (one Redis round trip)."""

    def __init__(
        self,
        store: JobStore,
        overdue_after: float,
        alive_for: float,
        default_region: str = "",
        dead_letters: Collector | None = None,
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._overdue_after = overdue_after
        self._alive_for = alive_for
        self._default_region = default_region  # where the zero series of a new label set go

    def collect(self) -> Iterator[Metric]:
        """The metrics of one scrape: ``poller_up`` 1 and every counter, or ``poller_up`` 0
        alone when Redis does not answer (redis_exporter's ``redis_up`` convention: the
        scrape itself succeeds, so alerts can tell "Redis down" from "exporter down")."""
        try:
            snap = self._store.counters.metrics_snapshot(self._overdue_after, self._alive_for)
        except redis.RedisError:
            logger.warning("poller metrics: Redis does not answer", exc_info=True)
            yield _up(0)
            return
        yield _up(1)
        yield from _families(snap, self._default_region)
        yield from _budget_families(self._store.budget.budget_counts(), time.time())
        if self._dead_letters is not None:
            yield from self._dead_letters.collect()


def _up(value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "poller_up", "1 when the job store (Redis) answered this scrape, else 0.", value=value
    )


def _families(snap: Snapshot, default_region: str = "") -> Iterator[Metric]:
    """Every counter of a snapshot; a known label set is there at 0 before its first event, so
    that rate() and increase() see that event."""
    jobs = GaugeMetricFamily(
        "poller_jobs",
        "Jobs in each status now (finished ones while their record is kept).",
        labels=["status"],
    )
    for each in JobStatus:
        jobs.add_metric([each.value], snap.jobs.get(each.value, 0))
    yield jobs
    transitions = CounterMetricFamily(
        "poller_job_transitions", "Transitions into each status.", labels=["status"]
    )
    for each in JobStatus:
        transitions.add_metric([each.value], snap.transitions.get(each.value, 0))
    yield transitions
    finished = CounterMetricFamily(
        "poller_jobs_finished", "Jobs that ended, by status, job queue and region.",
        labels=["status", "job_queue", "region"],
    )  # fmt: skip
    # Every status of a (queue, region) seen, and of each known queue in the default region
    places = {(queue, region) for _, queue, region in snap.finished_total}
    places |= {(queue, default_region) for queue in snap.job_queues}
    for queue, region in sorted(places):
        for each in JobStatus.TERMINAL:
            count = snap.finished_total.get((each.value, queue, region), 0)
            finished.add_metric([each.value, queue, region], count)
    yield finished
    failures = CounterMetricFamily(
        "poller_job_failures", "Jobs that ended other than SUCCEEDED, by failure kind, job queue "
        "and region.", labels=["kind", "job_queue", "region"],
    )  # fmt: skip
    for labels, count in sorted(snap.failures.items()):
        failures.add_metric(list(labels), count)
    yield failures
    for name, histogram in snap.histograms.items():
        yield _histogram(name, histogram)
    calls = CounterMetricFamily(
        "poller_aws_calls", "AWS API calls by operation, outcome and region.",
        labels=["operation", "outcome", "region"],
    )  # fmt: skip
    regions = {region for _, _, region in snap.aws_calls} | {default_region}
    known = {(op, end, region): 0 for op in OPERATIONS for end in OUTCOMES for region in regions}
    for labels, count in sorted({**known, **snap.aws_calls}.items()):
        calls.add_metric(list(labels), count)
    yield calls
    yield GaugeMetricFamily(
        "poller_checks_overdue",
        "Active jobs whose check is late by more than the coalesce window.",
        value=snap.checks_overdue,
    )
    yield GaugeMetricFamily(
        "poller_workers",
        "Workers that said they run within three reconcile intervals.",
        value=snap.workers,
    )
    yield CounterMetricFamily(
        "poller_reconciler_resends",
        "Lost messages the reconciler sent again.",
        value=snap.reconciler_resends,
    )
    events = CounterMetricFamily(
        "poller_events", "AWS Batch state-change events handled, by outcome.",
        labels=["outcome"],
    )  # fmt: skip
    for outcome, count in sorted({**dict.fromkeys(EVENT_OUTCOMES, 0), **snap.events}.items()):
        events.add_metric([outcome], count)
    yield events


def _budget_families(counts: dict[tuple[str, str], float], now: float) -> Iterator[Metric]:
    """The fleet's AWS call budget: calls per family and outcome, and how long calls wait."""
    calls = CounterMetricFamily(
        "poller_aws_budget_calls", "Calls through the fleet's AWS call budget, by call family "
        "and outcome: taken (made), waited (told to come back), throttled (AWS said 429 anyway).",
        labels=["family", "outcome"],
    )  # fmt: skip
    waits = GaugeMetricFamily(
        "poller_aws_budget_wait_seconds",
        "The last wait the budget gave a call of each family (0 after a quiet minute).",
        labels=["family"],
    )
    for family in DEFAULT_CALL_RATES:
        for outcome in BUDGET_OUTCOMES:
            calls.add_metric([family, outcome], counts.get((family, outcome), 0))
        recent = now - counts.get((family, "wait_at"), 0) < 60
        waits.add_metric([family], counts.get((family, "wait"), 0) if recent else 0)
    yield calls
    yield waits


def _histogram(name: str, histogram: Histogram) -> HistogramMetricFamily:
    text, label = HISTOGRAM_HELP[name]
    family = HistogramMetricFamily(f"poller_{name}", text, labels=[label] if label else [])
    for value, cumulative in sorted(histogram.buckets.items()):
        bounds = [*(str(float(b)) for b in histogram.bounds), "+Inf"]
        family.add_metric(
            [value] if label else [],
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=histogram.sums.get(value, 0.0),
        )
    return family


def registry_for(store: JobStore, settings: Settings) -> CollectorRegistry:
    """A registry holding only the fleet's metrics: a check is overdue past the coalesce
    window, a worker alive while it said so within three reconcile intervals; new label sets
    start at 0 in this process's default AWS region."""
    registry = CollectorRegistry(auto_describe=False)
    alive_for = 3 * settings.reconcile_interval
    region = default_region()
    # (the dead letters' gauge is there without samples when no events queue is set: the alert
    # rules can name it whatever the deployment)
    dead_letters = DeadLetterCollector(settings.events_queue_urls, sqs_client)
    registry.register(
        FleetCollector(store, settings.coalesce_window, alive_for, region, dead_letters)
    )
    return registry


def serve(store: JobStore, settings: Settings, port: int, address: str) -> None:
    """Serve ``/metrics`` on ``address:port`` in a background thread."""
    start_http_server(port, addr=address, registry=registry_for(store, settings))
