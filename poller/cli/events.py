"""The event commands: ``events`` follows poller's own job event channel in Redis, and
``events setup`` creates the SQS queue and EventBridge rule that bring AWS Batch's job
state-change events to the workers."""

from __future__ import annotations

import json
import time

import click

from poller.cli.common import console, json_option, out
from poller.cli.group import main
from poller.monitoring import console as view


@main.group(invoke_without_command=True)
@click.option("--count", type=int, default=None, help="Stop after this many events.")
@json_option
@click.pass_context
def events(ctx: click.Context, count: int | None, as_json: bool) -> None:
    """Follow the job event channel (Ctrl-C stops); `events setup` for AWS Batch's events."""
    if ctx.invoked_subcommand is not None:
        return
    from poller.runtime import get_store

    seen = 0
    with get_store().subscribe() as pubsub:
        console.print("following job events (Ctrl-C stops)")
        try:
            while count is None or seen < count:
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                seen += 1
                event = json.loads(message["data"])
                if as_json:
                    out.print(json.dumps(event), highlight=False)
                else:
                    line = (
                        f"{time.strftime('%H:%M:%S')} {event['event']:<20} {event['status']:<10} "
                        f"{event['tracking_id']} {event.get('job_id') or ''}"
                    )
                    out.print(view.plain(line), highlight=False)
        except KeyboardInterrupt:
            pass


@events.command("setup")
@click.option(
    "--queue-name", default="poller-batch-events", show_default=True, help="The SQS queue."
)
@click.option(
    "--rule-name", default="poller-batch-job-state-change", show_default=True,
    help="The EventBridge rule.",
)  # fmt: skip
@click.option("--profile", help="AWS profile (its account and region) to set up in.")
@click.option("--region", help="AWS region to set up in (over the profile's).")
@click.option("--dry-run", is_flag=True, help="Say what would change, change nothing.")
def events_setup_command(
    queue_name: str, rule_name: str, profile: str | None, region: str | None, dry_run: bool
) -> None:
    """Create or update the SQS queue and EventBridge rule bringing Batch's job state-change
    events to poller's workers (idempotent), and print POLLER_EVENTS_QUEUE_URL. Run it once
    per region (or account) jobs run in; the workers take every URL, comma-separated."""
    from poller.aws.events_setup import setup
    from poller.aws.targets import known_profiles, session_for

    if profile is not None and profile not in known_profiles():
        message = f"no profile {profile!r} in the AWS config"
        raise click.BadParameter(message, param_hint="--profile")
    session = session_for(profile)
    region = region or session.region_name
    report = setup(
        session.client("sqs", region_name=region), session.client("events", region_name=region),
        queue_name=queue_name, rule_name=rule_name, dry_run=dry_run,
    )  # fmt: skip
    for action in report.actions:
        console.print(action, highlight=False, soft_wrap=True)
    if report.queue_url:
        console.print("Set this for every worker:")
        out.print(f"POLLER_EVENTS_QUEUE_URL={report.queue_url}", highlight=False)
