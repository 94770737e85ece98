"""Benchmark: what counting the fleet's metrics costs a check (checks/s with and without).

Run with ``make bench`` (or ``.venv/bin/python bench/metrics_cost.py``). In one process, against
a real embedded Redis and AWS Batch faked in memory (so only poller's own work is measured: the
record's optimistic transaction, with or without the counts written in it), N jobs are taken
from submission through checks that see them RUNNING, then checks that see them end, with
``POLLER_METRICS`` on and off. Prints checks per second and Redis commands per check for each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from rich.console import Console
from rich.table import Table

from poller import admission
from poller.core import lifecycle
from poller.models import JobStatus
from poller.runtime import ProcessRuntime
from poller.settings import Settings
from poller.store import JobStore
from poller.testing import FakeBatch
from poller.testing.redis_server import EmbeddedRedis

console = Console()


def run(server: EmbeddedRedis, jobs: int, count_metrics: bool) -> dict[str, float]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushdb()
    settings = Settings(coalesce=False, poll_initial_delay=1, poll_max_delay=10, poll_jitter=0)
    store = JobStore(client, prefix="bench", count_metrics=count_metrics)
    batch = FakeBatch()
    rt = ProcessRuntime(settings=settings, store=store, batch=batch)
    ids = []
    for i in range(jobs):
        spec, policy, _, _ = admission.validate(settings, (f"b-{i}", "poller-local", "d"), {})
        record = lifecycle.admit(store, f"t{i}", spec, policy, None)
        ids.append(str(lifecycle.submit(rt, record).job_id))
    commands_before = int(client.info("stats")["total_commands_processed"])
    started = time.perf_counter()
    for i, job_id in enumerate(ids):
        batch.set_status(job_id, JobStatus.RUNNING)
        lifecycle.check(rt, f"t{i}", 0)
    for i, job_id in enumerate(ids):
        batch.set_status(job_id, JobStatus.SUCCEEDED)
        lifecycle.check(rt, f"t{i}", 1)
    elapsed = time.perf_counter() - started
    commands = int(client.info("stats")["total_commands_processed"]) - commands_before
    checks = 2 * jobs
    return {"checks per second": checks / elapsed, "Redis commands per check": commands / checks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        run(server, 200, True)  # warm up
        results = {
            "metrics off": run(server, args.jobs, False),
            "metrics on": run(server, args.jobs, True),
        }
    table = Table(title=f"{args.jobs} jobs, {2 * args.jobs} checks, in process")
    table.add_column("figure")
    for name in results:
        table.add_column(name, justify="right")
    for figure in results["metrics on"]:
        table.add_row(figure, *(f"{results[n][figure]:.1f}" for n in results))
    console.print(table)
    on, off = results["metrics on"], results["metrics off"]
    cost = 1 - on["checks per second"] / off["checks per second"]
    console.print(f"counting costs {cost:.1%} of in-process check throughput")


if __name__ == "__main__":
    main()
