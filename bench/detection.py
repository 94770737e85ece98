"""Benchmark: how soon poller notices a job's end, and what that costs, with its defaults.

Run with ``make bench`` (or ``.venv/bin/python bench/detection.py --jobs 200``).

The workload is the one the peers were measured on: N jobs (200 by default) of 60-240 s on the
local endpoint's simulated runtime, all submitted at once, the same durations in every run
(seeded). Each mode runs against a fresh embedded Redis, endpoint and real worker processes,
with poller's default settings (no POLLER_POLL_* override):

- ``polling``: the default poll policy and coalescing, no events;
- ``events``: the same, plus AWS Batch state-change events (EventBridge -> SQS) from the endpoint,
  consumed by the workers (``POLLER_EVENTS_QUEUE_URL``), polling as the safety net.

Printed per mode: DescribeJobs calls per job (counted at the endpoint), detection lag p50/p99
(the record's finished_at minus Batch's stoppedAt), Celery result lag p99 (the result's
date_done minus stoppedAt), checks run per job, and worker CPU seconds per 1,000 jobs.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import redis
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

from bench.tracking import Workload, active_jobs, console, progress_bars, quantile, wait_all
from poller.runtime import get_store
from poller.store.counters import APPLIED, DUPLICATE, EARLY, MALFORMED, UNKNOWN_JOB
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.stack import configure_process, stack_env
from poller.testing.worker import Worker

MODES = ("polling", "events")
# The manual's worker command (docs/operations/index.md): -P POOL -c CONCURRENCY
POOL, CONCURRENCY = "threads", 16
# The test stack's short delays, dropped so that poller's own defaults apply.
TEST_DELAYS = ("POLLER_POLL_INITIAL_DELAY", "POLLER_POLL_MAX_DELAY", "POLLER_POLL_JITTER")


OUTCOMES = (APPLIED, DUPLICATE, EARLY, UNKNOWN_JOB, MALFORMED)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its children alive now (a prefork worker's pool)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children)


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of the process and its children alive now (its events process)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for each in [pid, *map(int, children)]:
        status = Path(f"/proc/{each}/status").read_text()
        total += int(
            next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
        )
    return total / 1024


class Peaks(threading.Thread):
    """Samples the workers' RSS and Redis's memory every 2 s; keeps the highest of each."""

    def __init__(self, workers: list[Worker], redis_url: str) -> None:
        super().__init__(daemon=True)
        self.workers, self.redis = workers, redis.Redis.from_url(redis_url)
        self.rss_mb = self.redis_mb = 0.0
        self.tracked = 0  # active jobs (submitted or not), at most
        self.stopping = threading.Event()

    def run(self) -> None:
        store = get_store()
        while not self.stopping.wait(2.0):
            try:
                rss = sum(tree_rss_mb(w.pid) for w in self.workers if w.pid)
                used = int(self.redis.info("memory")["used_memory"]) / 2**20
                tracked = active_jobs(store)
            except (OSError, StopIteration, redis.RedisError):
                continue
            self.rss_mb, self.redis_mb = max(self.rss_mb, rss), max(self.redis_mb, used)
            self.tracked = max(self.tracked, tracked)


def submit_all(durations: list[float]) -> list[str]:
    from poller import submit_job

    with progress_bars() as progress:
        task = progress.add_task("submitting", total=len(durations))
        ids = []
        for i, seconds in enumerate(durations):
            params = {"sim_seconds": str(seconds)}
            job = submit_job.delay(f"lag-{i}", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=params)
            ids.append(job.id)
            progress.advance(task)
    return ids


def run(
    mode: str,
    workload: Workload,
    overrides: dict[str, str],
    pool: str,
    concurrency: int,
    stop_after: float | None = None,
) -> dict[str, float]:
    """One mode's figures on a fresh stack (``overrides``: POLLER_* settings to try), over the
    jobs ended within ``stop_after`` seconds of the last submission when given."""
    saved = dict(os.environ)
    events = mode == "events"
    with EmbeddedRedis() as server, LocalBatch(runtime="simulated", events=events) as batch:
        env = stack_env(server, batch, initial_delay=1, max_delay=1)
        for name in (*TEST_DELAYS, "POLLER_NOT_FOUND_GRACE", "POLLER_AWS_RETRY_DELAY"):
            env.pop(name, None)
        if events:
            env["POLLER_EVENTS_QUEUE_URL"] = batch.events_queue_url
        env.update(overrides)
        configure_process(env)
        workers = [Worker(env, concurrency=concurrency, pool=pool) for _ in range(workload.workers)]
        try:
            for worker in workers:
                worker.start()
            cpu_before = sum(tree_cpu_seconds(w.pid) for w in workers if w.pid)
            peaks = Peaks(workers, env["POLLER_REDIS_URL"])
            peaks.start()
            ids = submit_all(workload.durations())
            with progress_bars() as progress:
                timeout = stop_after or workload.max_seconds * 4 + 600
                records = wait_all(ids, progress, mode, timeout=timeout)
            result_lags = _result_lags(records)
            cpu = sum(tree_cpu_seconds(w.pid) for w in workers if w.pid) - cpu_before
            stats = batch.stats()
            calls = stats["calls"]
            published = stats.get("events", {}).get("published", 0)
            handled = get_store().fleet.event_counts()
            peaks.stopping.set()
        finally:
            for worker in workers:
                worker.stop(timeout=60)
            os.environ.clear()
            os.environ.update(saved)
    lags = [
        (r.finished_at - r.batch.stopped_at).total_seconds()
        for r in records
        if r.finished_at and r.batch.stopped_at
    ]
    jobs = len(records)
    return {
        "DescribeJobs per job": calls.get("DescribeJobs", 0) / jobs,
        "detection lag p50 (s)": quantile(lags, 0.5),
        "detection lag p99 (s)": quantile(lags, 0.99),
        "result lag p99 (s)": quantile(result_lags, 0.99),
        "checks per job": sum(r.schedule.checks for r in records) / jobs,
        "worker CPU s per 1,000 jobs": cpu * 1000 / jobs,
        "worker peak RSS (MB)": peaks.rss_mb,
        "Redis peak memory (MB)": peaks.redis_mb,
        "jobs submitted": sum(1 for r in records if r.job_id is not None),
        "jobs ended": sum(1 for r in records if r.is_terminal),
        "jobs tracked at once (peak)": peaks.tracked,
        "Redis KB per tracked job": peaks.redis_mb * 1024 / max(1, peaks.tracked),
        # An event not applied leaves its job to the safety-net check (events_poll_max_delay)
        "events published by the endpoint": published,
        **{f"events {outcome}": handled.get(outcome, 0) for outcome in OUTCOMES},
        "detection lag max (s)": max(lags, default=0.0),
    }


def _result_lags(records: list[Any]) -> list[float]:
    """Each job's Celery result date_done minus Batch's stoppedAt (the canvas goes on then)."""
    from poller.app import app

    lags = []
    for record in records:
        done = app.AsyncResult(record.tracking_id).date_done
        if done is None or record.batch.stopped_at is None:
            continue
        done = done if done.tzinfo else done.replace(tzinfo=UTC)
        lags.append((done - record.batch.stopped_at).total_seconds())
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, action="append", help="job count (repeatable)")
    parser.add_argument("--min-seconds", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per run")
    parser.add_argument("--mode", choices=MODES, action="append", help="default: both")
    parser.add_argument("--pool", default=POOL, help=f"worker pool (default: {POOL})")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument(
        "--stop-after",
        type=float,
        metavar="SECONDS",
        help="report the jobs ended this long after the bench sent the last one (a partial run)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="POLLER_X=V", help="try another setting"
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    for jobs in args.jobs or [200]:
        workload = Workload(jobs, args.min_seconds, args.max_seconds, 0, 0, args.workers)
        console.rule(f"{jobs} jobs of {args.min_seconds:.0f}-{args.max_seconds:.0f} s")
        results = {}
        for mode in args.mode or MODES:
            started = time.monotonic()
            results[mode] = run(
                mode, workload, overrides, args.pool, args.concurrency, args.stop_after
            )
            console.print(f"{mode}: {time.monotonic() - started:.0f}s wall")
        title = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "poller's defaults"
        table = Table(title=f"{jobs} jobs, {title}")
        table.add_column("figure")
        for mode in results:
            table.add_column(mode, justify="right")
        for figure in next(iter(results.values())):
            places = 3 if figure == "DescribeJobs per job" else 2
            table.add_row(figure, *(f"{results[m][figure]:.{places}f}" for m in results))
        console.print(table)


if __name__ == "__main__":
    main()
