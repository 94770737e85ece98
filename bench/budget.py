"""Benchmark: the fleet's AWS call budget against AWS's quotas.

Run with ``.venv/bin/python bench/budget.py`` (add ``--no-budget`` for the figure without it).

Three workers as the manual runs them (``-P threads -c 16``), polling only, with poller's default
poll policy, submit N jobs (2,000 by default) of 30-90 s at once against the local endpoint
(simulated runtime) throttling SubmitJob at 50 calls/s and DescribeJobs at 10/s, as AWS would;
poller is told the same rates (``POLLER_AWS_CALL_RATES``). Printed, from the endpoint's counters
and the job records: jobs succeeded with exactly one SubmitJob each, throttled answers as a share
of all calls, the submission rate (first to last SubmitJob accepted), DescribeJobs calls per job,
and the detection lag p99 (finished_at minus Batch's stoppedAt).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aws_batch_emulator import FaultConfig, LocalBatch

from bench.tracking import Workload, console, progress_bars, quantile, submit_all, wait_all
from poller.runtime import get_store
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.stack import configure_process, stack_env
from poller.testing.worker import Worker

THROTTLE = {"SubmitJob": 50.0, "DescribeJobs": 10.0}
TEST_DELAYS = ("POLLER_POLL_INITIAL_DELAY", "POLLER_POLL_MAX_DELAY", "POLLER_POLL_JITTER")


def run(jobs: int, workers: int, budget: bool, overrides: dict[str, str]) -> dict[str, str]:
    """One run on a fresh Redis, endpoint and workers; its figures."""
    workload = Workload(jobs, 30.0, 90.0, 5.0, 25.0, workers=workers)
    saved = dict(os.environ)
    faults = FaultConfig(throttle=dict(THROTTLE))
    with EmbeddedRedis() as server, LocalBatch(runtime="simulated", faults=faults) as batch:
        env = stack_env(server, batch, initial_delay=1, max_delay=1)
        for name in (*TEST_DELAYS, "POLLER_NOT_FOUND_GRACE", "POLLER_AWS_RETRY_DELAY"):
            env.pop(name, None)
        rates = ",".join(f"{op}={rate:g}" for op, rate in THROTTLE.items())
        env["POLLER_AWS_CALL_RATES"] = rates if budget else "SubmitJob=0,DescribeJobs=0"
        env.update(overrides)
        configure_process(env)
        fleet = [Worker(env, concurrency=16, pool="threads") for _ in range(workers)]
        try:
            for worker in fleet:
                worker.start()
            batch.reset_stats()
            with progress_bars() as progress:
                ids = submit_all(workload, workload.durations(), progress)
                records = wait_all(ids, progress, "tracking", timeout=jobs / 10 + 900)
            stats = batch.stats()
            counts = get_store().budget.budget_counts()
        finally:
            for worker in fleet:
                worker.stop(timeout=60)
            os.environ.clear()
            os.environ.update(saved)
    calls, throttled = stats["calls"], stats["throttled"]
    accepted = {op: calls.get(op, 0) - throttled.get(op, 0) for op in calls}
    submitted = sorted(r.submitted_at for r in records if r.submitted_at)
    span = (submitted[-1] - submitted[0]).total_seconds() if len(submitted) > 1 else 0.0
    admitted = sorted(r.history[0].observed_at for r in records if r.history)
    intake = (admitted[-1] - admitted[0]).total_seconds() if len(admitted) > 1 else 0.0
    lags = [(r.finished_at - r.batch.stopped_at).total_seconds() for r in records if r.finished_at and r.batch.stopped_at]  # fmt: skip
    succeeded = sum(1 for r in records if r.status.value == "SUCCEEDED")
    all_calls, all_throttled = sum(calls.values()), sum(throttled.values())
    return {
        "jobs succeeded": f"{succeeded} of {jobs}",
        "SubmitJob calls accepted (one per job)": str(accepted.get("SubmitJob", 0)),
        "SubmitJob answered 429": str(throttled.get("SubmitJob", 0)),
        "DescribeJobs answered 429": str(throttled.get("DescribeJobs", 0)),
        "throttled share of all calls": f"{100 * all_throttled / max(1, all_calls):.2f} %",
        "submissions per second": f"{(len(submitted) - 1) / span:.1f}" if span else "-",
        "jobs admitted by workers per second": f"{(len(admitted) - 1) / intake:.1f}"
        if intake
        else "-",
        "DescribeJobs per job": f"{accepted.get('DescribeJobs', 0) / jobs:.3f}",
        "budget: SubmitJob / DescribeJobs told to wait": "{:.0f} / {:.0f}".format(
            counts.get(("SubmitJob", "waited"), 0), counts.get(("DescribeJobs", "waited"), 0)
        ),
        "detection lag p50 / p99 (s)": f"{quantile(lags, 0.5):.1f} / {quantile(lags, 0.99):.1f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--no-budget", action="store_true", help="poller's budget off (before)")
    parser.add_argument("--set", action="append", default=[], metavar="POLLER_X=V")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    figures = run(args.jobs, args.workers, not args.no_budget, overrides)
    label = "without the budget" if args.no_budget else "with the budget"
    table = Table(
        title=f"{args.jobs} jobs of 30-90 s, {args.workers} workers, SubmitJob 50/s and "
        f"DescribeJobs 10/s at the endpoint ({label})"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, value)
    console.print(table)


if __name__ == "__main__":
    main()
