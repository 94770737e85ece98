"""Benchmark: how fast the local AWS Batch endpoint takes and describes many simulated jobs.

Run with ``make bench`` (or ``.venv/bin/python bench/emulator_scale.py --jobs 10000``). Starts the
endpoint (simulated runtime) as its own process, submits N jobs from 4 threads, then describes
them in pages of 100 ids, as poller's coalesced checks do. Prints the seconds each phase took
and checks that every job was found: the endpoint must not be what a poller benchmark measures.

With ``--events``, it also measures the endpoint's publishing: N jobs of short stages with events
on, and the events per second from their transitions to the SQS queue (five per job, PENDING to
SUCCEEDED), counted by the endpoint from the first submission to the last event published. That
figure is bounded by the submissions; the publisher's own capacity is measured apart, in this
process: N changes queued in advance, each shaped as AWS sends it and delivered through moto's
EventBridge rule to the SQS queue, with where the time goes (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
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


EVENTS_PER_JOB = 5  # PENDING, RUNNABLE, STARTING, RUNNING, SUCCEEDED


def publishing(jobs: int) -> tuple[float, float]:
    """(seconds to submit, events published per second) for ``jobs`` jobs with events on."""
    with LocalBatch(
        runtime="simulated", stage_seconds=0.05, sim_seconds=0.3, events=True
    ) as server:
        client: Any = server.client(max_pool_connections=8)

        def submit(index: int) -> None:
            client.submit_job(
                jobName=f"evt-{index}", jobQueue=JOB_QUEUE, jobDefinition=ECHO_JOB_DEFINITION
            )

        started = perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(track(pool.map(submit, range(jobs)), total=jobs, description="submitting"))
        submitted = perf_counter()
        expected = jobs * EVENTS_PER_JOB
        deadline = time.monotonic() + 120
        with console.status("waiting for every event to be published"):
            while (count := server.stats()["events"]["published"]) < expected:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{count:,} of {expected:,} events published in 120 s")
                time.sleep(0.1)
        published = perf_counter()
    return submitted - started, expected / (published - started)


def publisher_capacity(events: int) -> tuple[float, list[tuple[str, float]]]:
    """(events per second, [(part, share of the time)]) of the endpoint's publisher alone: this
    process delivers ``events`` job changes, queued in advance, to the events queue."""
    from aws_batch_emulator.changes import JobChange
    from aws_batch_emulator.eventbridge import create_event_resources, deliver
    from aws_batch_emulator.events import EventPublisher
    from aws_batch_emulator.resources import ACCOUNT_ID, REGION

    with LocalBatch(runtime="simulated", stage_seconds=0.05, sim_seconds=0.3) as server:
        client: Any = server.client()
        job_id = client.submit_job(
            jobName="shape", jobQueue=JOB_QUEUE, jobDefinition=ECHO_JOB_DEFINITION
        )["jobId"]
        job = client.describe_jobs(jobs=[job_id])["jobs"][0]
    job = json.loads(json.dumps(job, default=str))  # a DescribeJobs item, as jobs report it
    create_event_resources(ACCOUNT_ID, REGION)
    publisher = EventPublisher(deliver)
    changes = [
        JobChange(ACCOUNT_ID, REGION, job["jobArn"], "RUNNING", time.time(),
                  json.dumps({**job, "jobId": f"job-{n}"}))
        for n in range(events)
    ]  # fmt: skip
    started = perf_counter()
    for change in changes[: events // 2]:
        publisher._publish(change)  # what its thread does with each change it takes
    rate = (events // 2) / (perf_counter() - started)
    profile = cProfile.Profile()
    profile.runcall(lambda: [publisher._publish(change) for change in changes[events // 2 :]])
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values())
    parts = {
        "shaping the event (DescribeJobs reshaping)": "job_state_change_event",
        "moto EventBridge: matching the rule's pattern": "matches_event",
        "moto SQS: storing the message": "send_message",
    }
    shares = [
        (label, sum(row[3] for (_, _, name), row in stats.items() if name == fn) / total)
        for label, fn in parts.items()
    ]
    return rate, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, action="append", help="jobs per run (repeatable)")
    parser.add_argument("--events", action="store_true", help="also measure event publishing")
    args = parser.parse_args()
    for jobs in args.jobs or [10_000]:
        submit_s, describe_s = run(jobs)
        console.print(
            f"{jobs:,} simulated jobs: submitted in {submit_s:.1f}s "
            f"({jobs / submit_s:,.0f}/s), described in {describe_s:.1f}s "
            f"({jobs / describe_s:,.0f}/s), every job found"
        )
        if args.events:
            submit_s, rate = publishing(jobs)
            console.print(
                f"{jobs:,} jobs with events: submitted in {submit_s:.1f}s, "
                f"{jobs * EVENTS_PER_JOB:,} events published at {rate:,.0f} events/s"
            )
    if args.events:
        count = 4 * (args.jobs or [10_000])[0]
        with console.status(f"the publisher alone: {count:,} changes"):
            rate, shares = publisher_capacity(count)
        console.print(f"the endpoint's publisher alone: {rate:,.0f} events/s (one thread)")
        for label, share in shares:
            console.print(f"  {label}: {share:.0%}")


if __name__ == "__main__":
    main()
