"""The job commands: ``submit`` a Batch job through the workers, then ``status``, ``wait`` for,
``cancel``, list (``jobs``) and read the ``logs`` of jobs, each found by its tracking id or its
Batch job id."""

from __future__ import annotations

import json
from typing import Any

import click

from poller.cli.common import (
    console,
    follow,
    job_handle,
    json_option,
    out,
    parse_number,
    parse_pairs,
    show,
)
from poller.cli.group import main
from poller.models import JobStatus
from poller.monitoring import console as view


@main.command()
@click.argument("name")
@click.option("--queue", "-q", required=True, help="Job queue name or ARN.")
@click.option(
    "--definition", "-d", required=True, help="Job definition name, name:revision or ARN."
)
@click.option(
    "--param", "-p", multiple=True, metavar="KEY=VALUE", help="A job parameter (Ref::KEY)."
)
@click.option(
    "--env", "-e", multiple=True, metavar="NAME=VALUE", help="A container environment variable."
)
@click.option("--tag", "-t", multiple=True, metavar="KEY=VALUE", help="A tag on the Batch job.")
@click.option(
    "--poll", multiple=True, metavar="KEY=VALUE", help="Poll policy override, e.g. max_wait=3600."
)
@click.option("--profile", "aws_profile", help="AWS profile the job runs with (~/.aws/config).")
@click.option("--region", "aws_region", help="AWS region the job runs in (over the profile's).")
@click.option(
    "--wait", "wait_", is_flag=True, help="Show progress until the job ends; exit with its outcome."
)
@click.option(
    "--timeout", type=float, default=None, help="With --wait: give up waiting after SECONDS."
)
@json_option
def submit(
    name: str,
    queue: str,
    definition: str,
    param: tuple[str, ...],
    env: tuple[str, ...],
    tag: tuple[str, ...],
    poll: tuple[str, ...],
    aws_profile: str | None,
    aws_region: str | None,
    wait_: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a Batch job through the workers; print its tracking id."""
    from poller.client import JobHandle
    from poller.tasks import submit_job

    kwargs: dict[str, Any] = {}
    if param:
        kwargs["parameters"] = parse_pairs(param, "--param")
    if env:
        variables = parse_pairs(env, "--env")
        kwargs["container_overrides"] = {
            "environment": [{"name": k, "value": v} for k, v in variables.items()]
        }
    if tag:
        kwargs["tags"] = parse_pairs(tag, "--tag")
    if poll:
        kwargs["poll"] = {
            key: parse_number(value) for key, value in parse_pairs(poll, "--poll").items()
        }
    if aws_profile:
        kwargs["aws_profile"] = aws_profile
    if aws_region:
        kwargs["aws_region"] = aws_region
    result = submit_job.delay(name, queue, definition, **kwargs)
    if as_json and not wait_:
        out.print_json(json.dumps({"tracking_id": result.id}))
    elif not as_json:
        out.print(result.id, highlight=False)
    if wait_:
        follow(JobHandle(result.id), timeout, as_json)


@main.command()
@click.argument("identifier", metavar="ID")
@json_option
def status(identifier: str, as_json: bool) -> None:
    """Show a job (by tracking id or Batch job id)."""
    show(job_handle(identifier).record, as_json)


@main.command()
@click.argument("identifier", metavar="ID")
@click.option("--timeout", type=float, default=None, help="Give up waiting after SECONDS.")
@json_option
def wait(identifier: str, timeout: float | None, as_json: bool) -> None:
    """Wait for a job to end, showing progress; exit 0 / 1 (failed) / 2 (timed out)."""
    follow(job_handle(identifier), timeout, as_json)


@main.command()
@click.argument("identifier", metavar="ID")
@click.option("--reason", default="cancelled with the poller CLI", show_default=True)
@json_option
def cancel(identifier: str, reason: str, as_json: bool) -> None:
    """Stop a job's Batch job and record why (an error when the job has already ended)."""
    handle = job_handle(identifier)
    ended = handle.record
    if ended.is_terminal:
        raise click.ClickException(
            f"job {ended.tracking_id} already ended {ended.status.value}; nothing to cancel"
        )
    record = handle.cancel(reason)
    if as_json:
        out.print_json(view.to_json(record))
    else:
        console.print(
            view.plain(f"cancel requested for {record.job_name} ({record.tracking_id}): {reason}")
        )


@main.command()
@click.option("--active", is_flag=True, help="Only jobs still being tracked.")
@click.option(
    "--status",
    "status_",
    type=click.Choice([s.value for s in JobStatus], case_sensitive=False),
    help="Only jobs in this status (any case).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option(
    "--wide",
    is_flag=True,
    help="Add region, account, checks and both ids; cut no value (a line as long as it needs).",
)
@json_option
def jobs(active: bool, status_: str | None, limit: int, wide: bool, as_json: bool) -> None:
    """List tracked jobs, most recent first: name, status, exit code, age, and Batch's reason
    once ended."""
    from poller.runtime import get_store

    records = get_store().list(active_only=active, limit=10_000 if status_ else limit)
    if status_:
        records = [r for r in records if r.status.value == status_][:limit]
    if as_json:
        out.print_json(view.to_json(records))
    else:
        out.print(view.jobs_table(records, title=f"{len(records)} job(s)", wide=wide))


@main.command()
@click.argument("identifier", metavar="ID")
@json_option
def logs(identifier: str, as_json: bool) -> None:
    """Print a job's output from CloudWatch Logs (in the job's region and account)."""
    from poller.aws.logs import log_events
    from poller.core import budget
    from poller.runtime import get_runtime

    record = job_handle(identifier).record
    if not record.batch.log_stream_name:
        raise click.ClickException(
            f"job {record.tracking_id} has no log stream yet ({record.status.value})"
        )
    rt = get_runtime()
    client = (
        rt.targets.client(record.aws_profile, record.aws_region, "logs") if rt.targets else None
    )
    target = budget.target_of(rt, record)
    pages = log_events(
        record.batch.log_stream_name,
        client=client,
        before_call=lambda: budget.wait_for(rt, "GetLogEvents", target),
    )
    for at, message in pages:
        if as_json:
            out.print(
                json.dumps({"timestamp": at.isoformat(), "message": message}), highlight=False
            )
        else:
            out.print(view.plain(f"{at:%H:%M:%S} {message}"), highlight=False)
