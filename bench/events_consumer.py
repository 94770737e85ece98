"""Benchmark: the events consumer on its own, in events applied per second by one process.

Run with ``.venv/bin/python bench/events_consumer.py --jobs 2000`` (also in ``make bench``).

N jobs are admitted and submitted in process (AWS Batch faked in memory, the records in a real
embedded Redis); then a queue is filled in advance with each job's state-change events
(``--lifecycle full``: PENDING to SUCCEEDED, the five AWS Batch sends after a submission;
``short``: RUNNING and SUCCEEDED, so every other event ends a job), and poller's consumer
(:func:`poller.worker.batch_events.consume`: receive 10, apply the batch in one transaction, delete it) drains
it in 1..N threads, as a worker's receiver threads do. A terminal event sends the job's check to
the real broker (the same Redis), as in a worker.

Two queues, each run timed on its own: ``endpoint`` is the local endpoint's SQS (moto, in
another process: each call costs what moto costs), ``memory`` an in-process queue answering at
once, so the figure is poller's own ceiling (Redis, broker, parsing) without SQS's latency.

Printed: events applied per second, CPU milliseconds per event (this process), Redis commands per
event, and where the time goes (cProfile, by cumulative time: SQS calls, Redis round trips,
poller's own work).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aws_batch_emulator import LocalBatch
from rich.table import Table

from bench.tracking import console, progress_bars
from poller import admission
from poller.app import app
from poller.aws import batch_wire
from poller.core import lifecycle
from poller.models import JobRecord
from poller.runtime import ProcessRuntime, get_runtime
from poller.settings import get_settings
from poller.testing import FakeBatch
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.stack import configure_process, stack_env
from poller.worker import batch_events

QUEUE_NAME = "bench-events"
QUEUE = "bench-queue"  # the Batch job queue of FakeBatch
SOURCES = ("endpoint", "memory")


def state_change(record: JobRecord, status: str) -> str:
    """A "Batch Job State Change" body as EventBridge delivers it to SQS."""
    detail: dict[str, Any] = {
        "jobId": record.job_id, "jobName": record.job_name, "jobQueue": record.job_queue,
        "status": status, "tags": {lifecycle.TRACKING_TAG: record.tracking_id},
        "createdAt": 1_796_000_000_000, "startedAt": 1_796_000_001_000, "attempts": [],
    }  # fmt: skip
    if status == "SUCCEEDED":
        detail |= {"stoppedAt": 1_796_000_002_000, "container": {"exitCode": 0}}
    return json.dumps(
        {
            "version": "0", "id": f"{record.job_id}-{status}", "detail-type": batch_wire.DETAIL_TYPE,
            "source": batch_wire.SOURCE, "account": "123456789012", "time": "2026-12-03T08:00:00Z",
            "region": "us-east-1", "resources": [f"arn:aws:batch:::job/{record.job_id}"],
            "detail": detail,
        }
    )  # fmt: skip


def tracked_jobs(rt: ProcessRuntime, count: int, prefix: str) -> list[JobRecord]:
    """``count`` jobs admitted and submitted (to Batch faked in memory)."""
    records = []
    with progress_bars() as progress:
        task = progress.add_task("tracking jobs", total=count)
        for i in range(count):
            spec, policy, _, _ = admission.validate(rt.settings, (f"{prefix}-{i}", QUEUE, "d"), {})
            record = lifecycle.admit(rt.store, f"{prefix}{i}", spec, policy, None)
            records.append(lifecycle.submit(rt, record))
            progress.advance(task)
    return records


# Each job's events, in the order the queue holds them. "full": every change after the
# submission, as AWS Batch and the local endpoint send them (five a job: one in five ends a job and
# sends its check); "short": every other event ends a job (the sends' worst case).
LIFECYCLES = {
    "full": ("PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"),
    "short": ("RUNNING", "SUCCEEDED"),
}


def events_of(records: list[JobRecord], lifecycle_name: str) -> list[str]:
    """The jobs' state-change events of that lifecycle, as jobs running side by side send them:
    every job's first change, then every job's second, ... (a batch holds ten jobs' events)."""
    statuses = LIFECYCLES[lifecycle_name]
    return [state_change(record, status) for status in statuses for record in records]


class MemoryQueue:
    """An in-process stand-in for SQS's receive and batch delete, answering at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict[str, str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> None:  # noqa: N803
        with self._lock:
            self._messages += [
                {"Body": e["MessageBody"], "ReceiptHandle": str(len(self._messages) + n)}
                for n, e in enumerate(Entries)
            ]

    def receive_message(self, MaxNumberOfMessages: int, **_: Any) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            batch = self._messages[:MaxNumberOfMessages]
            del self._messages[:MaxNumberOfMessages]
        if not batch:
            time.sleep(0.05)  # a long poll on an empty queue
        return {"Messages": batch}

    def delete_message_batch(self, **_: Any) -> None:
        pass


def fill(sqs: Any, url: str, bodies: list[str]) -> None:
    with progress_bars() as progress:
        task = progress.add_task("filling the queue", total=len(bodies))
        for start in range(0, len(bodies), 10):
            batch = bodies[start : start + 10]
            entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(batch)]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
            progress.advance(task, len(batch))


def drain(
    rt: ProcessRuntime, sqs: Any, url: str, expected: int, threads: int = 1
) -> tuple[float, int]:
    """Consume with ``threads`` consumers until ``expected`` events were handled: (seconds until
    the last one was, events handled). Returns once every thread ended its last long poll."""
    lock = threading.Lock()
    handled = 0
    done = threading.Event()
    finished_at = 0.0

    def consumer() -> None:
        nonlocal handled, finished_at
        while not done.is_set():
            count = sum(batch_events.consume(rt, app, sqs, url).values())
            with lock:
                handled += count
                if handled >= expected and not done.is_set():
                    finished_at = time.perf_counter()
                    done.set()

    started = time.perf_counter()
    if threads == 1:
        consumer()
    else:
        running = [threading.Thread(target=consumer, daemon=True) for _ in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()
    return finished_at - started, handled


def where_the_time_goes(profile: cProfile.Profile, total: float, source: str) -> Table:
    """Cumulative seconds of the calls that make up a consumed batch."""
    stats = pstats.Stats(profile)
    wanted = {
        "SQS calls (receive, delete)": ("client.py", "_api_call"),
        "poller.worker.batch_events.apply_all (all)": ("batch_events.py", "apply_all"),
        "  store.tracking_ids_for_jobs": ("__init__.py", "tracking_ids_for_jobs"),
        "  event_apply.apply_events": ("event_apply.py", "apply_events"),
        "    store.update_each": ("__init__.py", "update_each"),
        "    outbox.deliver_each": ("outbox.py", "deliver_each"),
        "  resend.send_checks (broker)": ("resend.py", "send_checks"),
        "Redis round trips (all)": ("connection.py", "read_response"),
    }
    table = Table(title=f"where the time goes ({source} queue, 1 thread, cProfile, cumulative)")
    for column in ("part", "seconds", "share"):
        table.add_column(column, justify="right" if column != "part" else "left")
    for label, (file, function) in wanted.items():
        seconds = sum(
            row[3]
            for (path, _, name), row in stats.stats.items()  # type: ignore[attr-defined]
            if name == function and path.endswith(file)
        )
        table.add_row(label, f"{seconds:.2f}", f"{seconds / total:.0%}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument(
        "--threads", type=int, action="append", help="consumer threads per run (repeatable)"
    )
    parser.add_argument(
        "--source", choices=SOURCES, action="append", help="queue to drain (default: both)"
    )
    parser.add_argument(
        "--lifecycle", choices=LIFECYCLES, default="full", help="events per job (default: full)"
    )
    args = parser.parse_args()
    runs = args.threads or [1]
    sources = args.source or list(SOURCES)
    with EmbeddedRedis() as redis_server, LocalBatch(runtime="simulated", events=True) as batch:
        configure_process(stack_env(redis_server, batch, initial_delay=60, max_delay=600))
        rt = ProcessRuntime(
            settings=get_settings(), store=get_runtime().store, batch=FakeBatch(queues=[QUEUE])
        )
        endpoint = batch.client("sqs")
        queues = {"endpoint": endpoint, "memory": MemoryQueue()}
        url = endpoint.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
        # Timed without a profiler, a fresh set of jobs per run; then a quarter as many, in one
        # thread under cProfile, for where the time goes
        rates: dict[tuple[str, int], tuple[float, float, float]] = {}
        for source in sources:
            sqs = queues[source]
            for threads in runs:
                prefix = f"{source[0]}{threads}-"
                timed = events_of(tracked_jobs(rt, args.jobs, prefix), args.lifecycle)
                fill(sqs, url, timed)
                before = int(rt.store.redis.info("stats")["total_commands_processed"])
                cpu_before = time.process_time()
                with console.status(f"{source}: {len(timed)} events, {threads} thread(s)"):
                    seconds, handled = drain(rt, sqs, url, len(timed), threads)
                cpu = time.process_time() - cpu_before
                commands = int(rt.store.redis.info("stats")["total_commands_processed"]) - before
                rates[source, threads] = (
                    handled / seconds,
                    cpu * 1000 / handled,
                    commands / handled,
                )
        sqs = queues[sources[0]]
        profiled = events_of(tracked_jobs(rt, args.jobs // 4, "pr"), args.lifecycle)
        fill(sqs, url, profiled)
        profile = cProfile.Profile()
        with console.status(f"{sources[0]}: {len(profiled)} events under cProfile"):
            profiled_seconds, _ = profile.runcall(drain, rt, sqs, url, len(profiled))
        counts = rt.store.fleet.event_counts()
    per_job = LIFECYCLES[args.lifecycle]
    table = Table(
        title=f"events consumer: {len(per_job) * args.jobs} events of {args.jobs} jobs per run "
        f"({', '.join(per_job)})"
    )
    columns = ("queue", "receiver threads", "events applied per second", "CPU ms per event",
               "Redis commands per event")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for (source, threads), (rate, cpu_ms, commands_per_event) in rates.items():
        table.add_row(
            source, str(threads), f"{rate:,.0f}", f"{cpu_ms:.2f}", f"{commands_per_event:.1f}"
        )
    console.print(table)
    console.print(f"outcomes: {json.dumps(counts)}")
    console.print(where_the_time_goes(profile, profiled_seconds, sources[0]))


if __name__ == "__main__":
    main()
