"""How the CLI and the demo show jobs: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from poller.core.redaction import public
from poller.models import JobRecord, JobStatus, Submission, utcnow

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


# Stored strings come from outside (job names sent by name, Batch's reasons, a job's own log
# lines): shown as text, never as Rich markup, and with no escape sequence reaching the terminal.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")
_WHITESPACE_CONTROL = re.compile(r"[\t\n\r\v\f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with terminal escape sequences and control characters removed (line breaks and
    tabs become spaces), safe to print as it is."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    return _CONTROL.sub("", _WHITESPACE_CONTROL.sub(" ", text))


def plain(value: object) -> Text:
    """A stored value as Rich text: printable, never parsed as markup."""
    return value if isinstance(value, Text) else Text(printable(str(value)))


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


def age(record: JobRecord, now: datetime) -> str:
    """Time since the job was accepted: ``42s``, ``7m05s``, ``3h12m``, ``2d04h``."""
    if not record.history:
        return "-"
    seconds = max(int((now - record.history[0].observed_at).total_seconds()), 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days}d{hours % 24:02d}h"
    if hours:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{minutes}m{seconds % 60:02d}s" if minutes else f"{seconds}s"


def ended_reason(record: JobRecord) -> str:
    """Batch's reason for an ended job, empty for an active one (its exit code has a column of
    its own: :func:`exit_text`)."""
    return (record.status_reason or "") if record.is_terminal else ""


def exit_text(record: JobRecord) -> str:
    """The exit code of an ended job's container, empty when it has none (still active, or it
    never ran: rejected, an image that could not be pulled)."""
    if not record.is_terminal or record.batch.exit_code is None:
        return ""
    return str(record.batch.exit_code)


_UNBOUNDED = 100_000  # wider than any row: the width a table asks for when nothing limits it


class NaturalWidth:
    """A table drawn as wide as its values, whatever the console's width (80 when piped): a
    line may be longer than the terminal, a value is never cut. Print it on a console that
    does not crop (``soft_wrap=True``, as the CLI's stdout is)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        natural = Measurement.get(console, options.update(max_width=_UNBOUNDED), self.table)
        yield from console.render(self.table, options.update(width=natural.maximum))


def jobs_table(
    records: list[JobRecord], title: str | None = None, wide: bool = False
) -> Table | NaturalWidth:
    """One row per job: name, status, exit code and age and, for ended jobs, Batch's reason.

    It fits the console's width (80 columns when piped): a long name or reason is cut with an
    ellipsis, the exit code never is. ``wide`` adds checks, the region and account, the Batch
    job id and the tracking id, and cuts nothing: each line is as long as its values (the
    table is a :class:`NaturalWidth`). The region shows without ``wide`` too when the jobs are
    in more than one.
    """
    regions = len({record.aws_region for record in records}) > 1
    # Narrow, the table takes the console's width: name and reason share what the fixed
    # columns leave, 2:3, and are cut with an ellipsis rather than wrapped. Wide, it does not
    # expand: each column is as wide as its longest value.
    table = Table(
        title=None if title is None else plain(title),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        expand=not wide,
    )
    table.add_column("job", overflow="ellipsis", no_wrap=True, ratio=2)
    table.add_column("status", no_wrap=True, width=max(len(s.value) for s in JobStatus))
    table.add_column("exit", no_wrap=True, justify="right", width=4)  # 0-255
    table.add_column("age", no_wrap=True, justify="right", width=6)
    table.add_column("reason", overflow="ellipsis", no_wrap=True, ratio=3)
    if regions or wide:
        longest = max((len(record.aws_region or "-") for record in records), default=1)
        table.add_column("region", no_wrap=True, min_width=longest)
    if wide:
        table.add_column("account", no_wrap=True, min_width=12)
        table.add_column("checks", justify="right", no_wrap=True, width=6)
        table.add_column("batch job id", no_wrap=True, min_width=36)
        table.add_column("tracking id", no_wrap=True, min_width=36)
    now = utcnow()
    for record in records:
        row: list[object] = [
            record.job_name,
            status_text(record.status),
            exit_text(record),
            age(record, now),
            ended_reason(record),
        ]
        if regions or wide:
            row.append(record.aws_region or "-")
        if wide:
            row += [record.aws_account or "-", str(record.schedule.checks)]
            row += [record.job_id or "-", record.tracking_id]
        table.add_row(*(plain(cell) for cell in row))
    return NaturalWidth(table) if wide else table


def record_table(record: JobRecord) -> Table:
    """One job in detail: a field per row, then its history."""
    table = Table(show_header=False, title=plain(f"job {record.job_name}"))
    table.add_column("field", style="bold")
    table.add_column("value")
    rows: list[tuple[str, Any]] = [
        ("tracking id", record.tracking_id),
        ("batch job id", record.job_id),
        ("status", status_text(record.status)),
        ("reason", record.status_reason),
        ("waiting on AWS", record.schedule.waiting_reason),
        ("exit code", record.batch.exit_code),
        ("container reason", record.batch.container_reason),
        ("failure kind", record.failure_kind.value if record.failure_kind else None),
        ("queue / definition", f"{record.job_queue} / {record.job_definition}"),
        ("region / account", f"{record.aws_region or '-'} / {record.aws_account or '-'}"),
        ("aws profile", record.aws_profile),
        ("attempts", record.batch.attempts),
        (
            "attempt kinds",
            ", ".join(k.value if k else "-" for k in record.batch.attempt_kinds) or None,
        ),
        ("checks", record.schedule.checks),
        ("log stream", record.batch.log_stream_name),
        ("array", record.batch.array_status_summary),
        ("submitted", record.submitted_at),
        (
            "started / stopped",
            f"{record.batch.started_at or '-'} / {record.batch.stopped_at or '-'}",
        ),
        ("finished", record.finished_at),
        # An ended job is never checked again: a next check would read as one still to come
        ("next check", None if record.is_terminal else record.schedule.next_check_at),
    ]
    for name, value in rows:
        if value is not None:
            table.add_row(name, plain(value))
    for submission in record.submissions if len(record.submissions) > 1 else ():
        table.add_row(f"submission {submission.number}", plain(submission_line(submission)))
    history = ", ".join(f"{t.status.value} {t.observed_at:%H:%M:%S}" for t in record.history)
    table.add_row("history", plain(history))
    return table


def submission_line(submission: Submission) -> str:
    """One Batch job of a resubmitted job: id, queue, memory, how it ended, when."""
    parts = [submission.job_id, submission.job_queue]
    if submission.memory is not None:
        parts.append(f"{submission.memory} MiB")
    if submission.status is not None:
        kind = f" ({submission.failure_kind.value})" if submission.failure_kind else ""
        parts.append(f"{submission.status.value}{kind}")
    parts.append(f"submitted {submission.submitted_at:%H:%M:%S}")
    if submission.ended_at is not None:
        parts.append(f"ended {submission.ended_at:%H:%M:%S}")
    return ", ".join(parts)


def to_json(value: Any) -> str:
    """JSON for ``--json`` output (records with ISO timestamps, their secrets masked)."""
    if isinstance(value, JobRecord):
        value = public(value).model_dump(mode="json")
    elif isinstance(value, list):
        value = [
            public(v).model_dump(mode="json") if isinstance(v, JobRecord) else v for v in value
        ]
    return json.dumps(value, indent=2, default=str)
