"""What every ``poller`` command shares: the two consoles, the one-line ``error:`` exit, the
``--json`` option, and the helpers of the job commands (parsing ``KEY=VALUE`` options, finding a
job by either id, showing a record, following a job until it ends)."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from poller.models import JobRecord
from poller.monitoring import console as view

console = Console(stderr=True)  # progress and tables; stdout stays clean for ids and --json
out = Console(soft_wrap=True)  # plain lines (ids, JSON, logs) are never wrapped


def fail(ctx: click.Context, message: str) -> None:
    """Print one ``error:`` line (never wrapped) and exit with code 3."""
    one_line = escape(" ".join(message.split()))  # `pip install 'poller[local]'` is no markup
    console.print(f"[bold red]error:[/] {one_line}", highlight=False, soft_wrap=True)
    ctx.exit(view.EXIT_ERROR)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def parse_pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``KEY=VALUE`` option values as a dict (a usage error naming ``option`` otherwise)."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        pairs[key] = value
    return pairs


def parse_number(value: str) -> float | bool:
    """A --poll value: true/false, or a number (the policy validates ranges)."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a number or true/false, got {value!r}", param_hint="--poll"
        ) from None


def job_handle(identifier: str) -> Any:
    """The job handle of a tracking id or a Batch job id."""
    from poller.client import JobHandle

    handle = JobHandle(identifier)
    if handle.store.find(identifier) is not None:
        return handle
    return JobHandle.from_job_id(identifier, handle.store)


def follow(handle: Any, timeout: float | None, as_json: bool) -> None:
    """Show progress until the job ends, then exit with its outcome's code."""
    record: JobRecord | None = None
    with console.status("waiting") as status:
        for record in handle.watch(timeout):
            line = view.plain(f"{record.job_name}: ")
            line.append(record.status.value, "bold")
            line.append(f" (checks {record.schedule.checks}, elapsed {view.elapsed(record)})")
            status.update(line)
    assert record is not None
    show(record, as_json)
    sys.exit(view.exit_code(record))


def show(record: JobRecord, as_json: bool) -> None:
    """A job's record: a table, or its JSON with ``--json``."""
    if as_json:
        out.print_json(view.to_json(record))
    else:
        out.print(view.record_table(record))
