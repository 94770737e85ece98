"""How the CLI and the demo show jobs: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from poller.models import JobRecord, JobStatus, utcnow

STATUS_STYLE = {
    JobStatus.SUCCEEDED: "bold green",
    JobStatus.FAILED: "bold red",
    JobStatus.REJECTED: "bold red",
    JobStatus.TIMED_OUT: "bold yellow",
    JobStatus.RUNNING: "cyan",
}

# Exit codes of `poller submit --wait` and `poller wait`, by outcome.
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_TIMED_OUT = 2
EXIT_ERROR = 3  # unknown id, unreachable server, bad configuration


def exit_code(record: JobRecord) -> int:
    """The exit code for a finished job."""
    if record.status is JobStatus.SUCCEEDED:
        return EXIT_SUCCEEDED
    if record.status is JobStatus.TIMED_OUT:
        return EXIT_TIMED_OUT
    return EXIT_FAILED


def status_text(status: JobStatus) -> Text:
    """A job status, coloured by outcome."""
    return Text(status.value, style=STATUS_STYLE.get(status, ""))


def elapsed(record: JobRecord, now: datetime | None = None) -> str:
    """Time since the job was accepted, until it finished."""
    if not record.history:
        return "-"
    end = record.finished_at or now or utcnow()
    seconds = int((end - record.history[0].observed_at).total_seconds())
    minutes, seconds = divmod(max(seconds, 0), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def jobs_table(records: list[JobRecord], title: str | None = None) -> Table:
    """One row per job: name, status, checks, elapsed, Batch job id, tracking id."""
    table = Table(title=title)
    for column in ("job", "status", "checks", "elapsed", "batch job id", "tracking id"):
        table.add_column(column, no_wrap=column.endswith("id"))
    now = utcnow()
    for record in records:
        table.add_row(
            record.job_name,
            status_text(record.status),
            str(record.checks),
            elapsed(record, now),
            record.job_id or "-",
            record.tracking_id,
        )
    return table


def record_table(record: JobRecord) -> Table:
    """One job in detail: a field per row, then its history."""
    table = Table(show_header=False, title=f"job {record.job_name}")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows: list[tuple[str, Any]] = [
        ("tracking id", record.tracking_id),
        ("batch job id", record.job_id),
        ("status", status_text(record.status)),
        ("reason", record.status_reason),
        ("waiting on AWS", record.waiting_reason),
        ("exit code", record.exit_code),
        ("container reason", record.container_reason),
        ("queue / definition", f"{record.job_queue} / {record.job_definition}"),
        ("attempts", record.attempts),
        ("checks", record.checks),
        ("log stream", record.log_stream_name),
        ("array", record.array_status_summary),
        ("submitted", record.submitted_at),
        ("started / stopped", f"{record.started_at or '-'} / {record.stopped_at or '-'}"),
        ("finished", record.finished_at),
        ("next check", record.next_check_at),
    ]
    for name, value in rows:
        if value is not None:
            table.add_row(name, value if isinstance(value, Text) else str(value))
    history = ", ".join(f"{t.status.value} {t.observed_at:%H:%M:%S}" for t in record.history)
    table.add_row("history", history)
    return table


def to_json(value: Any) -> str:
    """JSON for ``--json`` output (records with ISO timestamps)."""
    if isinstance(value, JobRecord):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, JobRecord) else v for v in value]
    return json.dumps(value, indent=2, default=str)
