"""The emulator's one command line: ``aws-batch-emulator`` (also ``poller local-batch``)."""

from __future__ import annotations

import ipaddress
import logging

import click

from aws_batch_emulator import resources
from aws_batch_emulator.events_server import READY_LINE as EVENTS_READY_LINE
from aws_batch_emulator.faults import FaultConfig
from aws_batch_emulator.resources import RUNTIMES
from aws_batch_emulator.server import READY_LINE, serve


def _throttle(
    context: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, float]:
    rates: dict[str, float] = {}
    for item in values:
        operation, sep, rate = item.partition("=")
        try:
            if not sep or not operation:
                raise ValueError(item)
            rates[operation] = float(rate)
        except ValueError:
            raise click.BadParameter(f"expected OP=RATE, got {item!r}") from None
    return rates


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(name="local-batch")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (0.0.0.0 only in a container).",
)
@click.option("--port", type=int, default=4566, show_default=True, help="Port (0: any free one).")
@click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default="process",
    show_default=True,
    help="process: run each job's command; simulated: durations from sim_seconds/sim_exit_code parameters.",
)
@click.option("--concurrency", type=int, default=4, show_default=True, help="Jobs running at once.")
@click.option(
    "--stage-seconds",
    type=float,
    default=0.2,
    show_default=True,
    help="Time in each state before RUNNING.",
)
@click.option(
    "--sim-seconds",
    type=float,
    default=1.0,
    show_default=True,
    help="Default simulated job duration.",
)
@click.option(
    "--throttle",
    multiple=True,
    metavar="OP=RATE",
    callback=_throttle,
    help="Throttle an operation, e.g. SubmitJob=50.",
)
@click.option(
    "--error-rate", type=float, default=0.0, show_default=True, help="Share of calls answered 500."
)
@click.option(
    "--latency", type=float, default=0.0, show_default=True, help="Seconds added to every call."
)
@click.option(
    "--outage", is_flag=True, help="Answer every Batch call 503 (until changed over HTTP)."
)
@click.option("--seed", type=int, default=None, help="Seed of the fault generators.")
@click.option(
    "--events",
    is_flag=True,
    help="Publish Batch Job State Change events to EventBridge; a rule sends them to SQS queue "
    "poller-local-events. SQS and EventBridge are served by a process of their own.",
)
@click.option(
    "--events-port",
    type=int,
    default=None,
    help="Port of SQS and EventBridge with --events [default: --port + 1, or any free one with "
    "--port 0].",
)
@click.option(
    "--event-duplicate",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of events published twice.",
)
@click.option(
    "--event-drop",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of events never published.",
)
@click.option(
    "--event-delay",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of events published late (out of order).",
)
@click.option(
    "--event-delay-seconds",
    type=float,
    default=5.0,
    show_default=True,
    help="A delayed event goes out after a random 0..this many seconds.",
)
@click.option("--log-level", default="WARNING", show_default=True, help="Logging level.")
def main(
    host: str,
    port: int,
    runtime: str,
    concurrency: int,
    stage_seconds: float,
    sim_seconds: float,
    throttle: dict[str, float],
    error_rate: float,
    latency: float,
    outage: bool,
    seed: int | None,
    events: bool,
    events_port: int | None,
    event_duplicate: float,
    event_drop: float,
    event_delay: float,
    event_delay_seconds: float,
    log_level: str,
) -> None:
    """Serve a local AWS Batch endpoint (moto) whose jobs really run, in the foreground."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        faults = FaultConfig(
            throttle=throttle,
            error_rate=error_rate,
            latency=latency,
            outage=outage,
            seed=seed,
            event_duplicate=event_duplicate,
            event_drop=event_drop,
            event_delay=event_delay,
            event_delay_seconds=event_delay_seconds,
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    if not _is_loopback(host):
        click.echo(
            f"warning: the local Batch endpoint has no authentication and is bound to {host}: "
            "anyone who can reach it can run commands on this machine",
            err=True,
        )

    def ready(url: str, events_url: str | None) -> None:
        click.echo(READY_LINE.format(url=url, runtime=runtime))  # the launcher waits for it
        services = {"BATCH": url, "CLOUDWATCH_LOGS": url}
        if events_url is not None:
            click.echo(EVENTS_READY_LINE.format(url=events_url))
            services |= {"SQS": events_url, "EVENTBRIDGE": events_url}
        click.echo(
            f"Local AWS Batch endpoint on {url} (runtime={runtime}); use it with "
            + " ".join(f"AWS_ENDPOINT_URL_{name}={value}" for name, value in services.items()),
            err=True,
        )
        if events_url is not None:
            click.echo(
                f"Batch Job State Change events go to SQS queue {resources.EVENTS_QUEUE} "
                f"({resources.REGION}, via EventBridge rule {resources.EVENTS_RULE}) on {events_url}",
                err=True,
            )

    serve(
        host=host,
        port=port,
        runtime=runtime,
        concurrency=concurrency,
        stage_seconds=stage_seconds,
        sim_seconds=sim_seconds,
        faults=faults,
        events=events,
        on_ready=ready,
        events_port=(port + 1 if port else 0) if events_port is None else events_port,
    )
