"""Benchmark: what a job costs in Celery and botocore alone, before poller does any work.

Run with ``.venv/bin/python bench/floors.py`` (also in ``make bench``).

The issue's budget is 10 ms of worker CPU per job with events (submission, events, result,
signals, metrics). These are the parts of it poller does not write, measured on the same stack
the end-to-end bench uses (embedded Redis, the local endpoint, a real worker started as the
manual says):

- **a Celery task**: worker CPU per task for a task that does nothing (Celery's builtin
  ``celery.accumulate``), N sent at once to poller's queue: receive, the Flower events of ``-E``,
  trace, result stored, ack. A job is two tasks (its submission, then the check that produces its
  result).
- **botocore calls** (this process's CPU per call, the endpoint answering in another process):
  SubmitJob (one per job), DescribeJobs, and SQS ReceiveMessage (10) + DeleteMessageBatch (10)
  per event (AWS Batch sends about five per job).

Printed: each figure, and their sum for one job: the floor under which poller cannot get with
one Celery task per submission and per result, and botocore for each call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from rich.table import Table

from bench.detection import CONCURRENCY, POOL, tree_cpu_seconds
from bench.tracking import console, progress_bars
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.stack import configure_process, stack_env
from poller.testing.worker import Worker

SQS_EVENT = "SQS event (its share of a receive and a delete of 10)"
EVENTS_PER_JOB = 5  # PENDING, RUNNABLE, STARTING, RUNNING and the end, after the submission


def celery_task_cpu_ms(env: dict[str, str], tasks: int, pool: str, concurrency: int) -> float:
    """Worker CPU ms per no-op task (its pool processes too), the worker started with ``-E``."""
    from poller.app import app
    from poller.settings import get_settings

    worker = Worker(env, concurrency=concurrency, pool=pool)
    worker.start()
    try:
        assert worker.pid is not None
        time.sleep(2)  # let the worker settle (its first heartbeat, the reconciler's first pass)
        before = tree_cpu_seconds(worker.pid)
        queue = get_settings().queue
        with progress_bars() as progress:
            bar = progress.add_task("no-op tasks", total=tasks)
            results = []
            for _ in range(tasks):
                results.append(app.send_task("celery.accumulate", args=(1,), queue=queue))
                progress.advance(bar)
            done = progress.add_task("done", total=tasks)
            for result in results:
                result.get(timeout=120)
                progress.advance(done)
        return (tree_cpu_seconds(worker.pid) - before) * 1000 / tasks
    finally:
        worker.stop(timeout=60)


def per_call_ms(calls: int, call: Any) -> float:
    """This process's CPU ms per ``call()``."""
    before = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - before) * 1000 / calls


def botocore_ms(batch: Any, calls: int) -> dict[str, float]:
    """CPU ms per SubmitJob, per DescribeJobs, and per event received and deleted from SQS."""
    client = batch.client("batch")
    params = {"sim_seconds": "600"}
    job_id = client.submit_job(
        jobName="floor", jobQueue=JOB_QUEUE, jobDefinition=SLEEP_JOB_DEFINITION, parameters=params
    )["jobId"]
    sqs = batch.client("sqs")
    url = sqs.create_queue(QueueName="floors")["QueueUrl"]
    body = json.dumps({"detail": client.describe_jobs(jobs=[job_id])["jobs"][0]}, default=str)
    for _ in range(calls):
        entries = [{"Id": str(n), "MessageBody": body} for n in range(10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    def receive_and_delete() -> None:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        handles = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]  # fmt: skip
        sqs.delete_message_batch(QueueUrl=url, Entries=handles)

    def submit() -> None:
        client.submit_job(
            jobName="floor", jobQueue=JOB_QUEUE, jobDefinition=SLEEP_JOB_DEFINITION,
            parameters=params,
        )  # fmt: skip

    return {
        "SubmitJob": per_call_ms(calls, submit),
        "DescribeJobs (1 job)": per_call_ms(calls, lambda: client.describe_jobs(jobs=[job_id])),
        SQS_EVENT: per_call_ms(calls, receive_and_delete) / 10,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000, help="no-op Celery tasks")
    parser.add_argument("--calls", type=int, default=300, help="calls of each AWS operation")
    parser.add_argument("--pool", default=POOL, help=f"worker pool (default: {POOL}, the manual's)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    saved = dict(os.environ)
    try:
        with EmbeddedRedis() as server, LocalBatch(runtime="simulated", events=True) as batch:
            env = stack_env(server, batch, initial_delay=60, max_delay=600)
            configure_process(env)
            with console.status("botocore calls"):
                calls = botocore_ms(batch, args.calls)
            task = celery_task_cpu_ms(env, args.tasks, args.pool, args.concurrency)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    event = calls[SQS_EVENT]
    floor = 2 * task + calls["SubmitJob"] + EVENTS_PER_JOB * event
    table = Table(title="per-job floor: Celery and botocore alone (CPU ms)")
    table.add_column("part")
    table.add_column("CPU ms", justify="right")
    table.add_column("per job", justify="right")
    table.add_row(
        f"Celery no-op task (worker -P {args.pool} -c {args.concurrency} -E)", f"{task:.2f}", "x2"
    )
    for name, ms in calls.items():
        each = "x1" if name == "SubmitJob" else (f"x{EVENTS_PER_JOB}" if "SQS" in name else "-")
        table.add_row(f"botocore {name}", f"{ms:.2f}", each)
    table.add_row("floor per job with events", f"{floor:.2f}", "")
    console.print(table)


if __name__ == "__main__":
    main()
