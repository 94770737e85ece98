"""Benchmark: coalesced status checks against per-job DescribeJobs, and submitting under a throttle.

Run with ``make bench`` (or ``.venv/bin/python bench/tracking.py --jobs 1000 --jobs 10000``).

For each job count, the same workload (same seed, same job durations) runs twice in one
invocation against a fresh embedded Redis, the local Batch endpoint (simulated runtime) and real
worker processes: once with coalescing on, once with one DescribeJobs call per check as naive
pollers do. It prints Batch calls by operation, job-checks per DescribeJobs call, detection lag
(record finished_at minus Batch stoppedAt) p50/p99, worker peak RSS, Redis peak memory, wall time,
and the ratios between the two runs. A second scenario submits jobs through a SubmitJob throttle of
50 requests/s at the endpoint and reports the sustained submit rate and the errors seen.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aws_batch_emulator import FaultConfig, LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

from poller.testing.redis_server import EmbeddedRedis
from poller.testing.stack import configure_process, stack_env
from poller.testing.worker import Worker

console = Console()


@dataclass
class Workload:
    """What every run of one size does: the jobs, their durations and the poll policy."""

    jobs: int
    min_seconds: float
    max_seconds: float
    initial_delay: float
    max_delay: float
    workers: int
    pace: float = 0.0  # jobs submitted per second by the bench (0: as fast as it can)
    seed: int = 42

    def durations(self) -> list[float]:
        rng = random.Random(self.seed)
        return [round(rng.uniform(self.min_seconds, self.max_seconds), 2) for _ in range(self.jobs)]


@dataclass
class RunResult:
    """The figures of one run."""

    label: str
    calls: dict[str, int]
    checks: int
    lags: list[float]
    stop_offsets: list[float]  # each lag's job stopped this many seconds after the first submit
    peak_active: int  # most jobs tracked at the same time (submitted, not yet finished)
    worker_peak_rss_mb: list[float]
    worker_idle_rss_mb: list[float]
    redis_peak_mb: float
    wall_seconds: float
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def describe_calls(self) -> int:
        return self.calls.get("DescribeJobs", 0)

    @property
    def checks_per_call(self) -> float:
        return self.checks / max(1, self.describe_calls)

    def kb_per_job(self, workload: Workload) -> float:
        """Peak worker memory above its idle size, per job that worker tracked (jobs spread
        evenly over the workers)."""
        grown = max(
            p - i for p, i in zip(self.worker_peak_rss_mb, self.worker_idle_rss_mb, strict=True)
        )
        return grown * 1024 / (workload.jobs / workload.workers)

    def lag_by_stop_time(self, bucket: float = 30.0) -> str:
        """p99 detection lag of the jobs that stopped in each ``bucket`` seconds of the run."""
        buckets: dict[int, list[float]] = {}
        for offset, lag in zip(self.stop_offsets, self.lags, strict=True):
            buckets.setdefault(int(offset // bucket), []).append(lag)
        return ", ".join(
            f"{int(k * bucket)}-{int((k + 1) * bucket)}s: {quantile(lags, 0.99):.1f}"
            for k, lags in sorted(buckets.items())
        )

    def lag(self, q: float) -> float:
        return quantile(self.lags, q)


def peak_active(records: list[Any]) -> int:
    """Most jobs that were submitted and not yet finished at the same moment."""
    moments = [(r.submitted_at, 1) for r in records if r.submitted_at and r.finished_at]
    moments += [(r.finished_at, -1) for r in records if r.submitted_at and r.finished_at]
    active = peak = 0
    for _, step in sorted(moments):
        active += step
        peak = max(peak, active)
    return peak


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank); NaN when empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak (VmHWM) or current (VmRSS) resident set size, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def stack(
    workload: Workload, faults: FaultConfig | None, **settings: str
) -> Iterator[tuple[LocalBatch, EmbeddedRedis, list[Worker]]]:
    """A fresh Redis, local Batch endpoint (simulated) and worker processes for one run."""
    saved = dict(os.environ)
    with (
        EmbeddedRedis() as server,
        LocalBatch(runtime="simulated", stage_seconds=0.5, faults=faults) as batch,
    ):
        env = {
            **stack_env(
                server, batch, initial_delay=workload.initial_delay, max_delay=workload.max_delay
            ),
            "POLLER_POLL_JITTER": "0.2",
            "POLLER_RECONCILE_GRACE": "120",
            **settings,
        }
        configure_process(env)
        workers = [Worker(env, concurrency=16) for _ in range(workload.workers)]
        try:
            for worker in workers:
                worker.start()
            yield batch, server, workers
        finally:
            for worker in workers:
                worker.stop(timeout=60)
            os.environ.clear()
            os.environ.update(saved)


def progress_bars() -> Progress:
    """Progress bars for submitting and tracking."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, TimeElapsedColumn(), console=console)


def submit_all(workload: Workload, durations: list[float], progress: Progress) -> list[str]:
    from poller import submit_job

    task = progress.add_task("submitting", total=len(durations))
    ids = []
    started = time.monotonic()
    for i, seconds in enumerate(durations):
        if workload.pace > 0:  # hold the i-th submission until its turn
            time.sleep(max(0.0, started + i / workload.pace - time.monotonic()))
        params = {"sim_seconds": str(seconds)}
        ids.append(
            submit_job.delay(f"bench-{i}", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=params).id
        )
        progress.advance(task)
    return ids


def active_jobs(store: Any) -> int:
    """Jobs still tracked (submitted or not), from the store's active indexes."""
    never = datetime(9999, 1, 1, tzinfo=UTC)
    return int(
        store.count_active(due_before=never) + store.count_active(due_before=never, queued=True)
    )


def wait_all(ids: list[str], progress: Progress, label: str, timeout: float) -> list[Any]:
    from poller.runtime import get_store

    store = get_store()
    task = progress.add_task(f"tracking ({label})", total=len(ids))
    deadline = time.monotonic() + timeout
    # Counted from the active indexes, not by reading every record each second: at 100,000
    # jobs that would take a core from the workers being measured.
    while time.monotonic() < deadline:
        active = active_jobs(store)
        progress.update(task, completed=len(ids) - active)
        if active == 0:
            break
        time.sleep(1.0)
    records = []
    for start in range(0, len(ids), 1000):
        records += store.records(ids[start : start + 1000])
    return records


def run_tracking(workload: Workload, coalesce: bool) -> RunResult:
    label = "coalesced" if coalesce else "per-job"
    durations = workload.durations()
    with stack(workload, None, POLLER_COALESCE=str(coalesce).lower()) as (batch, server, workers):
        started = time.monotonic()
        idle_rss = [rss_mb(w.pid, "VmRSS") for w in workers if w.pid]
        with progress_bars() as progress:
            ids = submit_all(workload, durations, progress)
            records = wait_all(
                ids, progress, label, timeout=workload.max_seconds * 3 + workload.jobs / 10 + 600
            )
        wall = time.monotonic() - started
        stats = batch.stats()
        rss = [rss_mb(w.pid) for w in workers if w.pid]
        info = redis.Redis.from_url(server.url).info("memory")
    statuses: dict[str, int] = {}
    for record in records:
        statuses[record.status.value] = statuses.get(record.status.value, 0) + 1
    first_submit = min((r.submitted_at for r in records if r.submitted_at), default=None)
    ended = [r for r in records if r.finished_at and r.batch.stopped_at and first_submit]
    lags = [(r.finished_at - r.batch.stopped_at).total_seconds() for r in ended]
    stop_offsets = [(r.batch.stopped_at - first_submit).total_seconds() for r in ended]
    return RunResult(
        label=label,
        calls=dict(stats["calls"]),
        checks=sum(r.schedule.checks for r in records),
        lags=lags,
        stop_offsets=stop_offsets,
        peak_active=peak_active(records),
        worker_peak_rss_mb=rss,
        worker_idle_rss_mb=idle_rss,
        redis_peak_mb=int(info["used_memory_peak"]) / 2**20,
        wall_seconds=wall,
        statuses=statuses,
    )


def show_tracking(workload: Workload, coalesced: RunResult, naive: RunResult | None) -> None:
    """Print both runs side by side with their ratios (only the coalesced one if alone)."""
    table = Table(title=f"{workload.jobs} jobs ({workload.min_seconds:.0f}-{workload.max_seconds:.0f}s each), "
                        f"backoff {workload.initial_delay:.0f}s..{workload.max_delay:.0f}s cap, "
                        f"{workload.workers} workers"
                        + (f", submitted at {workload.pace:.0f}/s" if workload.pace else ""))  # fmt: skip
    table.add_column("figure")
    table.add_column("coalesced", justify="right")
    if naive is not None:
        table.add_column("per-job", justify="right")
        table.add_column("per-job / coalesced", justify="right")

    def row(name: str, figure: Callable[[RunResult], float], fmt: str = "{:.1f}") -> None:
        a = figure(coalesced)
        if naive is None:
            table.add_row(name, fmt.format(a))
            return
        b = figure(naive)
        table.add_row(name, fmt.format(a), fmt.format(b), f"{b / a:.2f}x" if a else "-")

    operations = set(coalesced.calls) | set(naive.calls if naive else {})

    def calls_of(operation: str) -> Callable[[RunResult], float]:
        return lambda r: r.calls.get(operation, 0)

    for operation in sorted(operations):
        row(f"{operation} calls", calls_of(operation), "{:.0f}")
    row("peak active jobs", lambda r: r.peak_active, "{:.0f}")
    row("job-checks", lambda r: r.schedule.checks, "{:.0f}")
    row("job-checks per DescribeJobs call", lambda r: r.checks_per_call)
    row("detection lag p50 (s)", lambda r: r.lag(0.5), "{:.2f}")
    row("detection lag p99 (s)", lambda r: r.lag(0.99), "{:.2f}")
    row("worker RSS before submitting (MB)", lambda r: max(r.worker_idle_rss_mb))
    row("worker peak RSS, max (MB)", lambda r: max(r.worker_peak_rss_mb))
    row("worker memory per tracked job (KB, upper bound)", lambda r: r.kb_per_job(workload))
    row("Redis peak memory (MB)", lambda r: r.redis_peak_mb)
    row("wall time (s)", lambda r: r.wall_seconds)
    row("job-checks per second (workers' throughput)", lambda r: r.schedule.checks / r.wall_seconds)
    console.print(table)
    for result in (coalesced, naive) if naive else (coalesced,):
        console.print(f"  {result.label}: statuses {result.statuses}")
        console.print(f"  {result.label}: p99 lag by stop time: {result.lag_by_stop_time()}")
    target = workload.max_delay + 2
    console.print(
        f"  targets: checks/call >= 50: {coalesced.checks_per_call:.1f}; "
        f"p99 lag <= cap + 2 s = {target:.0f} s: {coalesced.lag(0.99):.2f} s; "
        f"worker RSS < 500 MB: {max(coalesced.worker_peak_rss_mb):.0f} MB "
        f"({coalesced.kb_per_job(workload):.1f} KB per tracked job above the idle worker)"
    )


def run_throttled_submits(jobs: int, rate: float) -> None:
    """Submit ``jobs`` jobs through a SubmitJob throttle of ``rate``/s; print the sustained rate."""
    workload = Workload(jobs, 1, 1, 1.0, 5.0, workers=2)
    faults = FaultConfig(throttle={"SubmitJob": rate})
    with stack(workload, faults, POLLER_AWS_RETRY_DELAY="0.2") as (batch, _server, _workers):
        with progress_bars() as progress:
            ids = submit_all(workload, workload.durations(), progress)
            records = wait_all(ids, progress, "throttled submits", timeout=jobs / rate * 4 + 120)
        stats = batch.stats()
    submitted = sorted(r.submitted_at for r in records if r.submitted_at)
    span = (submitted[-1] - submitted[0]).total_seconds() if len(submitted) > 1 else float("nan")
    sustained = (len(submitted) - 1) / span if span else float("nan")
    rejected = sum(1 for r in records if r.status.value == "REJECTED")
    table = Table(title=f"{jobs} submissions through a SubmitJob throttle of {rate:.0f}/s")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("jobs submitted to Batch", f"{len(submitted)} of {jobs}")
    table.add_row("sustained submit rate (/s)", f"{sustained:.1f}")
    table.add_row(
        "within 10% of the throttle", "yes" if abs(sustained - rate) <= rate * 0.1 else "no"
    )
    table.add_row("SubmitJob calls", str(stats["calls"].get("SubmitJob", 0)))
    table.add_row(
        "SubmitJob answered 429 (TooManyRequests)", str(stats["throttled"].get("SubmitJob", 0))
    )
    table.add_row(
        "jobs lost to throttling (REJECTED or never submitted)",
        str(rejected + jobs - len(submitted)),
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jobs", type=int, action="append", help="job count (repeatable); default 1000 and 10000"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes per run")
    parser.add_argument("--min-seconds", type=float, default=60.0, help="shortest job")
    parser.add_argument("--max-seconds", type=float, default=180.0, help="longest job")
    parser.add_argument("--initial-delay", type=float, default=5.0)
    parser.add_argument("--max-delay", type=float, default=30.0, help="backoff cap")
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="submit at most this many jobs per second (e.g. 50, AWS's SubmitJob quota); 0: at once",
    )
    parser.add_argument(
        "--submit-jobs", type=int, default=1000, help="jobs in the throttled-submit scenario"
    )
    parser.add_argument("--submit-rate", type=float, default=50.0, help="SubmitJob throttle (/s)")
    parser.add_argument(
        "--skip-submit", action="store_true", help="skip the throttled-submit scenario"
    )
    parser.add_argument(
        "--coalesced-only", action="store_true", help="only the coalesced mode (to size memory)"
    )
    parser.add_argument(
        "--submit-only", action="store_true", help="only the throttled-submit scenario"
    )
    args = parser.parse_args()
    for jobs in [] if args.submit_only else args.jobs or [1000, 10000]:
        workload = Workload(
            jobs,
            args.min_seconds,
            args.max_seconds,
            args.initial_delay,
            args.max_delay,
            args.workers,
            args.pace,
        )
        console.rule(f"{jobs} jobs")
        coalesced = run_tracking(workload, coalesce=True)
        if args.coalesced_only:
            show_tracking(workload, coalesced, None)
            continue
        naive = run_tracking(workload, coalesce=False)
        show_tracking(workload, coalesced, naive)
    if not args.skip_submit:
        console.rule("throttled submissions")
        run_throttled_submits(args.submit_jobs, args.submit_rate)


if __name__ == "__main__":
    main()
