"""``poller demo``: the whole stack on one machine, with real jobs going through their states.

It starts the embedded Redis, the local Batch endpoint (process runtime), a Celery worker and
Flower, submits a mixed set of jobs (successes of different lengths, a failure, an array job and
a chain whose second step runs after its Batch job), shows live progress and checks that every
job ended as expected. This module also defines the chain's second step, ``poller.testing.demo.report``,
which the demo's worker imports.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from celery import chain
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from poller.app import app
from poller.models import JobRecord, JobStatus
from poller.monitoring import console as view
from poller.testing.processes import LocalStackError, free_port, sigterm_as_interrupt

DEMO_TIMEOUT = 300.0  # seconds before the demo stops waiting and reports what is unfinished
# How to leave the stack up after the jobs: from poller's clone (make), and as a command
MAKE_KEEP = "make demo ARGS=--keep"
CLI_KEEP = "poller demo --keep"


@app.task(name="poller.testing.demo.report", shared=False)
def report(record: dict[str, Any]) -> str:
    """The chain's second step: runs in the worker once the Batch job before it has ended."""
    return f"report built from Batch job {record['job_id']} ({record['status']})"


@dataclass
class DemoJob:
    """One submitted job and what the demo expects of it."""

    label: str
    tracking_id: str
    expected: JobStatus
    check: Callable[[JobRecord], bool] = lambda record: True
    result: Any = None  # the chain's final AsyncResult, for the chain job


def _sleep(name: str, seconds: float, exit_code: int = 0, **kwargs: Any) -> Any:
    from poller.tasks import submit_job

    parameters = {"seconds": str(seconds), "exit_code": str(exit_code)}
    return submit_job.s(name, JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=parameters, **kwargs)


def submit_all(successes: int) -> list[DemoJob]:
    """Submit the demo's jobs and return them with their expected outcomes."""
    jobs = []
    for i in range(successes):
        result = _sleep(f"demo-ok-{i + 1}", seconds=1 + 1.5 * i).delay()
        jobs.append(DemoJob(f"succeeds after {1 + 1.5 * i:.1f}s", result.id, JobStatus.SUCCEEDED))
    failing = _sleep("demo-fails", seconds=1, exit_code=3).delay()
    jobs.append(
        DemoJob(
            "fails with exit code 3", failing.id, JobStatus.FAILED, lambda r: r.batch.exit_code == 3
        )
    )
    array = _sleep("demo-array", seconds=1, array_properties={"size": 3}).delay()
    jobs.append(
        DemoJob(
            "array of 3 children",
            array.id,
            JobStatus.SUCCEEDED,
            lambda r: (r.batch.array_status_summary or {}).get("SUCCEEDED") == 3,
        )
    )
    flow = chain(_sleep("demo-chain", seconds=2), report.s()).apply_async()
    first = str(flow.parent.id) if flow.parent is not None else flow.id  # type: ignore[attr-defined]
    jobs.append(DemoJob("chain: job, then report", first, JobStatus.SUCCEEDED, result=flow))
    return jobs


def _table(jobs: list[DemoJob], records: dict[str, JobRecord]) -> Table:
    table = Table(title="poller demo")
    for column in ("job", "scenario", "status", "checks", "elapsed", "batch job id"):
        table.add_column(column)
    for job in jobs:
        record = records.get(job.tracking_id)
        if record is None:
            table.add_row("-", job.label, "QUEUED", "0", "-", "-")
            continue
        table.add_row(
            record.job_name,
            job.label,
            view.status_text(record.status),
            str(record.schedule.checks),
            view.elapsed(record),
            record.job_id or "-",
        )
    return table


def _finished(jobs: list[DemoJob], records: dict[str, JobRecord]) -> bool:
    done = all(job.tracking_id in records and records[job.tracking_id].is_terminal for job in jobs)
    chained = [job.result for job in jobs if job.result is not None]
    return done and all(result.ready() for result in chained)


def verdicts(jobs: list[DemoJob], records: dict[str, JobRecord]) -> list[tuple[DemoJob, bool, str]]:
    """For each job: did it end as expected, and what it ended as."""
    results = []
    for job in jobs:
        record = records.get(job.tracking_id)
        if record is None:
            results.append((job, False, "never recorded"))
            continue
        ok = record.status is job.expected and job.check(record)
        detail = record.status.value
        if record.batch.exit_code is not None:
            detail += f", exit code {record.batch.exit_code}"
        if job.result is not None:
            step_ok = job.result.successful()
            ok = ok and step_ok
            detail += f"; next step: {job.result.result if step_ok else 'did not run'}"
        results.append((job, ok, detail))
    return results


def flower_note(keep: bool) -> list[str]:
    """The lines under Flower's URL: how long the stack stays up, and how to keep it up (the
    demo stops everything it started once its jobs end, which can be before Flower is read)."""
    if keep:
        return ["stays up after the jobs (--keep): Ctrl-C stops the stack"]
    return [
        "stops when the jobs end; to keep the stack up afterwards:",
        f"{MAKE_KEEP}  (or: {CLI_KEEP}; Ctrl-C stops it)",
    ]


@contextlib.contextmanager
def running_stack(console: Console, flower_port: int, keep: bool = False) -> Iterator[str]:
    """Start Redis, the local Batch endpoint, a worker and Flower; stop them all on exit."""
    from aws_batch_emulator import EmulatorError, LocalBatch

    from poller.testing.redis_server import EmbeddedRedis
    from poller.testing.stack import configure_process, stack_env
    from poller.testing.worker import Flower, Worker

    with contextlib.ExitStack() as stack:
        with console.status("starting Redis and the local AWS Batch endpoint"):
            redis_server = stack.enter_context(EmbeddedRedis())
            try:
                batch = stack.enter_context(LocalBatch(runtime="process", concurrency=4))
            except EmulatorError as err:
                raise LocalStackError(str(err)) from err
        env = stack_env(redis_server, batch, initial_delay=0.5, max_delay=2.0)
        configure_process(env)
        with console.status("starting a Celery worker and Flower"):
            worker = Worker(env, includes=["poller.testing.demo"])
            stack.callback(worker.stop)
            worker.start()
            flower = Flower(env, flower_port)
            stack.callback(flower.stop)
            flower.start()
        console.print(f"Redis        {redis_server.url}")
        console.print(f"AWS Batch    {batch.endpoint_url}  (queue {JOB_QUEUE})")
        console.print(f"Flower       [bold]{flower.url}[/]")
        for line in flower_note(keep):
            console.print(f"{'':13}{line}", highlight=False)
        console.print(f"Metrics      [bold]{_serve_metrics()}[/]  (Prometheus, the whole fleet)")
        yield flower.url


def _serve_metrics() -> str:
    """Serve the fleet's job metrics from this process (as `poller metrics` would); its URL."""
    from poller.monitoring.exporter import serve
    from poller.runtime import get_store
    from poller.settings import get_settings

    port = free_port()
    serve(get_store(), get_settings(), port, "127.0.0.1")
    return f"http://127.0.0.1:{port}/metrics"


def run(successes: int = 3, keep: bool = False, flower_port: int | None = None) -> int:
    """Run the demo; return 0 when every job ended as expected, 1 otherwise."""
    console = Console()
    try:
        with sigterm_as_interrupt(), running_stack(console, flower_port or free_port(), keep):
            code = _run_jobs(console, successes)
            if keep:
                console.print("[bold]--keep[/]: the stack stays up; press Ctrl-C to stop it")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(1)
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything the demo started")
        return 130
    console.print("stopped Redis, the local Batch endpoint, the worker and Flower")
    if not keep:
        console.print(
            f"(to keep them up after the jobs: {MAKE_KEEP} or {CLI_KEEP})", highlight=False
        )
    return code


def _run_jobs(console: Console, successes: int) -> int:
    from poller.runtime import get_store

    store = get_store()
    jobs = submit_all(successes)
    deadline = time.monotonic() + DEMO_TIMEOUT
    records: dict[str, JobRecord] = {}
    with Live(_table(jobs, records), console=console, refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            records = {r.tracking_id: r for r in store.records([j.tracking_id for j in jobs])}
            live.update(_table(jobs, records))
            if _finished(jobs, records):
                break
            time.sleep(0.25)
    summary = Table(title="summary")
    for column in ("scenario", "expected", "ended", "ok"):
        summary.add_column(column)
    results = verdicts(jobs, records)
    for job, ok, detail in results:
        summary.add_row(
            job.label, job.expected.value, detail, "[green]yes[/]" if ok else "[red]NO[/]"
        )
    console.print()
    console.print(Group(summary))
    passed = sum(ok for _, ok, _ in results)
    console.print(f"{passed} of {len(results)} jobs ended as expected")
    return 0 if passed == len(results) else 1
