"""Benchmark: how fast the local AWS Batch endpoint takes and describes many simulated jobs.

Run with ``make bench`` (or ``.venv/bin/python bench/emulator_scale.py --jobs 10000``). Starts the
endpoint (simulated runtime) as its own process, submits N jobs from 4 threads, then describes
them in pages of 100 ids, as poller's coalesced checks do. Prints the seconds each phase took
and checks that every job was found: the endpoint must not be what a poller benchmark measures.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Any

from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import ECHO_JOB_DEFINITION, JOB_QUEUE
from rich.console import Console
from rich.progress import track

console = Console()


def run(jobs: int) -> tuple[float, float]:
    """Seconds to submit and then describe ``jobs`` simulated jobs."""
    with LocalBatch(runtime="simulated", stage_seconds=0.05, sim_seconds=0.3) as server:
        client: Any = server.client(max_pool_connections=8)

        def submit(index: int) -> str:
            answer = client.submit_job(
                jobName=f"bulk-{index}", jobQueue=JOB_QUEUE, jobDefinition=ECHO_JOB_DEFINITION
            )
            return str(answer["jobId"])

        started = perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            job_ids = list(
                track(pool.map(submit, range(jobs)), total=jobs, description="submitting")
            )
        submitted = perf_counter()
        found: set[str] = set()
        for page in range(0, len(job_ids), 100):
            described = client.describe_jobs(jobs=job_ids[page : page + 100])["jobs"]
            found.update(job["jobId"] for job in described)
        described_at = perf_counter()
    if found != set(job_ids):
        raise SystemExit(f"{len(set(job_ids) - found)} of {jobs} jobs were not found")
    return submitted - started, described_at - submitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, action="append", help="jobs per run (repeatable)")
    for jobs in parser.parse_args().jobs or [10_000]:
        submit_s, describe_s = run(jobs)
        console.print(
            f"{jobs:,} simulated jobs: submitted in {submit_s:.1f}s "
            f"({jobs / submit_s:,.0f}/s), described in {describe_s:.1f}s "
            f"({jobs / describe_s:,.0f}/s), every job found"
        )


if __name__ == "__main__":
    main()
