"""Part of the store: the counters behind the fleet's job metrics, kept in Redis.

A record change is counted in the same MULTI as the change itself (:func:`count_change`), so any
number of workers on any number of hosts neither double-count (a change is stored once) nor
lose one (a crash loses the change and its count together). Keys (``<p>`` the key prefix)::

    <p>:metrics:jobs                 hash: active status -> jobs in it now
    <p>:metrics:finished:<STATUS>    sorted set: tracking id -> when it finished (a job counts
                                     while its record is kept; trimmed when read)
    <p>:metrics:transitions          hash: status -> transitions into it
    <p>:metrics:finished_total       hash: "<STATUS>|<job queue>|<region>" -> jobs that ended so
    <p>:metrics:failures             hash: "<failure kind>|<job queue>|<region>" -> jobs that ended so,
                                     and Batch jobs that failed and were resubmitted
    <p>:metrics:histogram:<name>     hash: "<label>|<bucket index>", "<label>|sum", "<label>|count"
    <p>:metrics:job_queues           set: every job queue a job was accepted for (its series
                                     exist at 0 from then on)
    <p>:metrics:aws_calls            hash: "<operation>|<outcome>|<region>" -> calls
    <p>:metrics:reconciler_resends   counter: messages the reconciler re-sent
    <p>:metrics:events               hash: outcome -> Batch events handled
    <p>:metrics:workers              sorted set: worker hostname -> when it last said it runs

Labels are bounded: statuses, job queues, regions, operations and outcomes, never a job's id or
name. A count stored without a region reads as region "". A job queue is a label value
only once AWS accepted a job for it (a refused job counts under job queue ""), label values are
escaped in the hash fields (``|`` separates them), and a scrape shows at most
``MAX_LABEL_VALUES`` job queues and as many regions, the busiest; the others add up under
``_other``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from poller.models import JobRecord, JobStatus
from poller.store.base import ACTIVE_INDEX, StoreBase

JOBS = "metrics:jobs"
FINISHED = "metrics:finished"
TRANSITIONS = "metrics:transitions"
FINISHED_TOTAL = "metrics:finished_total"
FAILURES = "metrics:failures"
# Bucket indexes are stored, not bounds: other bounds need another key name (counts under an
# earlier one, "metrics:hist", are for other bounds and never read).
HISTOGRAM = "metrics:histogram"
JOB_QUEUES = "metrics:job_queues"
AWS_CALLS = "metrics:aws_calls"
RESENDS = "metrics:reconciler_resends"
EVENTS = "metrics:events"
WORKERS = "metrics:workers"

# Upper bounds (seconds) of each histogram's buckets; +Inf is implied. Neighbours are at most
# x2.5 apart, so a quantile read from them is off by less than that: Batch times from 1 s to a
# day, detection lag from 0.1 s (events) to 10 min (polling's worst).
_BATCH_TIMES = (
    1,
    2.5,
    5,
    10,
    25,
    60,
    150,
    300,
    600,
    1200,
    2400,
    3600,
    7200,
    14400,
    28800,
    57600,
    86400,
)
BUCKETS: dict[str, tuple[float, ...]] = {
    "detection_lag_seconds": (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 150, 300, 600),
    "queue_wait_seconds": _BATCH_TIMES,
    "job_run_seconds": _BATCH_TIMES,
}

# What became of a Batch state-change event (poller.worker.batch_events), counted by outcome
APPLIED = "applied"  # it moved the job forward
DUPLICATE = "duplicate"  # a duplicate, or older than what is recorded: nothing changed
UNKNOWN_JOB = "unknown_job"  # not a job poller tracks (another app's, an array child)
MALFORMED = "malformed"  # not a Batch job state-change event
EARLY = "early"  # poller's job, whose submission is not recorded yet: left for redelivery
FOREIGN = "foreign"  # from another account or region than its job's: forged, never applied
CHECKED = "checked"  # a job's end its check confirms with DescribeJobs (POLLER_EVENTS_CONFIRM)
EVENT_OUTCOMES = (APPLIED, DUPLICATE, UNKNOWN_JOB, MALFORMED, EARLY, FOREIGN, CHECKED)

MAX_LABEL_VALUES = 100  # job queues (and regions) a scrape shows; the rest add up under OTHER
OTHER = "_other"


def _label(value: str) -> str:
    """A label value as stored in a hash field, where ``|`` separates the labels."""
    return quote(value, safe="")


def _queue_label(record: JobRecord) -> str:
    """The job queue a job counts under: its own once AWS accepted the job, else ""."""
    return _label(record.job_queue) if record.job_id is not None else ""


def count_change(pipe: Any, key: Any, previous: JobRecord | None, record: JobRecord) -> None:
    """Queue on ``pipe`` (inside the change's MULTI) the counts ``previous`` -> ``record`` makes.

    ``key`` builds a key under the store's prefix; ``previous`` is None for a new record.
    """
    if previous is not None and previous.status is record.status:
        return
    if record.job_id is not None and (previous is None or previous.job_id is None):
        pipe.sadd(key(JOB_QUEUES), _label(record.job_queue))  # AWS accepted a job for it
    pipe.hincrby(key(TRANSITIONS), record.status.value, 1)
    if record.resubmitting and previous is not None and not previous.resubmitting:
        # A Batch job that failed and is resubmitted counts as a failure of its own queue
        ended = record.submissions[-1]
        if ended.failure_kind is not None:
            where = f"{_label(ended.job_queue)}|{_label(record.aws_region or '')}"
            pipe.hincrby(key(FAILURES), f"{ended.failure_kind.value}|{where}", 1)
    if previous is not None and not previous.is_terminal:
        pipe.hincrby(key(JOBS), previous.status.value, -1)
    if not record.is_terminal:
        pipe.hincrby(key(JOBS), record.status.value, 1)
        return
    finished = (record.finished_at or datetime.now().astimezone()).timestamp()
    pipe.zadd(key(FINISHED, record.status.value), {record.tracking_id: finished})
    queue = _queue_label(record)
    labels = f"{record.status.value}|{queue}|{_label(record.aws_region or '')}"
    pipe.hincrby(key(FINISHED_TOTAL), labels, 1)
    if record.failure_kind is not None:
        where = f"{queue}|{_label(record.aws_region or '')}"
        pipe.hincrby(key(FAILURES), f"{record.failure_kind.value}|{where}", 1)
    _observe(pipe, key, "detection_lag_seconds", "", record.finished_at, record.batch.stopped_at)
    _observe(
        pipe, key, "queue_wait_seconds", queue, record.batch.started_at, record.batch.created_at
    )
    _observe(pipe, key, "job_run_seconds", queue, record.batch.stopped_at, record.batch.started_at)


def _observe(
    pipe: Any, key: Any, name: str, label: str, end: datetime | None, start: datetime | None
) -> None:
    if end is None or start is None:
        return
    seconds = max(0.0, (end - start).total_seconds())
    bucket = next((i for i, bound in enumerate(BUCKETS[name]) if seconds <= bound), None)
    fields = key(HISTOGRAM, name)
    pipe.hincrby(fields, f"{label}|{'inf' if bucket is None else bucket}", 1)
    pipe.hincrbyfloat(fields, f"{label}|sum", seconds)
    pipe.hincrby(fields, f"{label}|count", 1)


@dataclass
class Histogram:
    """One histogram's cumulative buckets, sum and count, per label value."""

    bounds: tuple[float, ...]
    buckets: dict[str, list[int]] = field(default_factory=dict)  # label -> cumulative counts
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Snapshot:
    """Every counter, read at one moment (a scrape)."""

    jobs: dict[str, int]
    transitions: dict[str, int]
    finished_total: dict[tuple[str, str, str], int]  # (status, job queue, region)
    failures: dict[tuple[str, str, str], int]  # (failure kind, job queue, region)
    histograms: dict[str, Histogram]
    aws_calls: dict[tuple[str, str, str], int]  # (operation, outcome, region)
    reconciler_resends: int
    events: dict[str, int]
    checks_overdue: int
    workers: int
    job_queues: set[str] = field(default_factory=set)


def read(
    client: Any, key: Any, *, now: float, kept_for: float, overdue: tuple[str, float],
    alive_for: float,
) -> Snapshot:  # fmt: skip
    """Read every counter in one round trip; finished jobs whose record expired are dropped
    from their sets first. ``overdue``: the active index's key and the score before which a
    check counts as overdue; a worker counts while it said it runs within ``alive_for`` s."""
    terminal = [s.value for s in JobStatus if s.is_terminal]
    with client.pipeline(transaction=False) as pipe:
        for status in terminal:
            pipe.zremrangebyscore(key(FINISHED, status), "-inf", now - kept_for)
            pipe.zcard(key(FINISHED, status))
        pipe.hgetall(key(JOBS))
        pipe.hgetall(key(TRANSITIONS))
        pipe.hgetall(key(FINISHED_TOTAL))
        pipe.hgetall(key(FAILURES))
        for name in BUCKETS:
            pipe.hgetall(key(HISTOGRAM, name))
        pipe.hgetall(key(AWS_CALLS))
        pipe.get(key(RESENDS))
        pipe.hgetall(key(EVENTS))
        pipe.zcount(overdue[0], "-inf", overdue[1])
        pipe.zremrangebyscore(key(WORKERS), "-inf", now - alive_for)
        pipe.zcard(key(WORKERS))
        pipe.smembers(key(JOB_QUEUES))
        answers = pipe.execute()
    finished = answers[1 : 2 * len(terminal) : 2]
    jobs_now, transitions, finished_total, failed, *rest = answers[2 * len(terminal) :]
    raw_histograms, rest = rest[: len(BUCKETS)], rest[len(BUCKETS) :]
    aws_calls, resends, events, overdue_count, _, workers, job_queues = rest
    jobs = {status: max(0, int(n)) for status, n in jobs_now.items()}
    jobs.update(dict(zip(terminal, (int(n) for n in finished), strict=True)))
    finished_counts = {_triple(k): int(v) for k, v in finished_total.items()}
    queue_use = Counter({unquote(str(queue)): 0 for queue in job_queues})
    region_use = Counter[str]()
    for (_, queue, region), count in finished_counts.items():
        queue_use[queue] += count
        region_use[region] += count
    shown = _busiest(queue_use), _busiest(region_use)
    failure_counts = {_triple(k): int(v) for k, v in failed.items()}
    return Snapshot(
        jobs=jobs,
        transitions={k: int(v) for k, v in transitions.items()},
        finished_total=_capped(finished_counts, *shown),
        failures=_capped(failure_counts, *shown),
        histograms={
            name: _histogram(BUCKETS[name], raw, shown[0])
            for name, raw in zip(BUCKETS, raw_histograms, strict=True)
        },
        aws_calls={_triple(k): int(v) for k, v in aws_calls.items()},
        reconciler_resends=int(resends or 0),
        events={k: int(v) for k, v in events.items()},
        checks_overdue=int(overdue_count),
        workers=int(workers),
        job_queues={_shown(unquote(str(queue)), shown[0]) for queue in job_queues},
    )


def _busiest(use: Counter[str]) -> set[str]:
    """The MAX_LABEL_VALUES label values used most (all of them when there are no more)."""
    return {value for value, _ in use.most_common(MAX_LABEL_VALUES)}


def _shown(value: str, shown: set[str]) -> str:
    return value if value in shown else OTHER


def _capped(
    counts: dict[tuple[str, str, str], int], queues: set[str], regions: set[str]
) -> dict[tuple[str, str, str], int]:
    """(first label, job queue, region) counts, the queues and regions not shown under OTHER."""
    capped: Counter[tuple[str, str, str]] = Counter()
    for (first, queue, region), count in counts.items():
        capped[(first, _shown(queue, queues), _shown(region, regions))] += count
    return dict(capped)


def _triple(field_name: str) -> tuple[str, str, str]:
    first, second, third = [*str(field_name).split("|", 2), "", ""][:3]
    return unquote(first), unquote(second), unquote(third)


def _histogram(bounds: tuple[float, ...], raw: dict[str, str], shown: set[str]) -> Histogram:
    """A histogram's fields read back; labels (job queues) not ``shown`` add up under OTHER."""
    histogram = Histogram(bounds)
    per_bucket: dict[str, list[int]] = {}
    for field_name, value in raw.items():
        stored, _, part = str(field_name).rpartition("|")
        label = unquote(stored)
        label = label if label == "" or label in shown else OTHER
        if part == "sum":
            histogram.sums[label] = histogram.sums.get(label, 0.0) + float(value)
        elif part == "count":
            histogram.counts[label] = histogram.counts.get(label, 0) + int(value)
        else:
            counts = per_bucket.setdefault(label, [0] * (len(bounds) + 1))
            counts[len(bounds) if part == "inf" else int(part)] += int(value)
    for label, counts in per_bucket.items():
        running, cumulative = 0, []
        for count in counts:
            running += count
            cumulative.append(running)
        histogram.buckets[label] = cumulative
    return histogram


class FleetCounters(StoreBase):
    """The fleet's counters beside the records' own (counted with each change): AWS calls,
    the reconciler's re-sends, the workers that run; and a snapshot of every counter."""

    def count_aws_calls(self, calls: dict[tuple[str, str, str], int]) -> None:
        """Add AWS calls by (operation, outcome, region) to the fleet's counters (one round
        trip)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for labels, count in calls.items():
                pipe.hincrby(self.key(AWS_CALLS), "|".join(labels), count)
            pipe.execute()

    def count_resends(self, count: int) -> None:
        """Add messages the reconciler re-sent to the fleet's counter."""
        if count:
            self.redis.incrby(self.key(RESENDS), count)

    def note_worker(self, hostname: str) -> None:
        """A worker says it runs (every reconcile interval)."""
        self.redis.zadd(self.key(WORKERS), {hostname: time.time()})

    def metrics_snapshot(self, overdue_after: float, alive_for: float) -> Snapshot:
        """Every fleet counter now; a check counts as overdue ``overdue_after`` seconds late,
        a worker as running while it said so within ``alive_for`` seconds."""
        now = time.time()
        return read(
            self.redis, self.key, now=now, kept_for=self.record_ttl,
            overdue=(self.key(ACTIVE_INDEX), now - overdue_after), alive_for=alive_for,
        )  # fmt: skip
