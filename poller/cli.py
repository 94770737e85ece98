"""The ``poller`` command line."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click
from rich.console import Console

from poller import __version__

console = Console(stderr=True)


@click.group()
@click.version_option(__version__, prog_name="poller")
def main() -> None:
    """Run AWS Batch jobs from Celery and know when they are done."""


@main.command("redis")
@click.option("--port", type=int, default=6379, show_default=True, help="Port on 127.0.0.1.")
@click.option("--password", envvar="POLLER_LOCAL_REDIS_PASSWORD", help="Require this password.")
@click.option(
    "--appendonly/--no-appendonly", default=True, show_default=True, help="Persist writes."
)
def redis_command(port: int, password: str | None, appendonly: bool) -> None:
    """Run an embedded Redis server in the foreground (Ctrl-C stops it)."""
    from poller.local import LocalStackError
    from poller.local.redis_server import EmbeddedRedis

    server = EmbeddedRedis(port=port, password=password, appendonly=appendonly)
    try:
        server.start()
    except LocalStackError as err:
        raise click.ClickException(str(err)) from err
    shown = server.url.replace(f":{password}@", ":***@") if password else server.url
    console.print(
        f"Redis listening on [bold]{shown}[/] (pid {server.pid}, data in {server.data_dir})"
    )
    _wait_for_stop_signal()
    server.close()


@main.command("local-batch")
@click.option(
    "--port", type=int, default=4566, show_default=True, help="Port on 127.0.0.1 (0: any free one)."
)
@click.option(
    "--runtime",
    type=click.Choice(["process", "simulated"]),
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
    "--throttle", multiple=True, metavar="OP=RATE", help="Throttle an operation, e.g. SubmitJob=50."
)
@click.option(
    "--error-rate", type=float, default=0.0, show_default=True, help="Share of calls answered 500."
)
@click.option(
    "--latency", type=float, default=0.0, show_default=True, help="Seconds added to every call."
)
@click.option("--seed", type=int, default=None, help="Seed of the fault generator.")
def local_batch_command(
    port: int,
    runtime: str,
    concurrency: int,
    stage_seconds: float,
    sim_seconds: float,
    throttle: tuple[str, ...],
    error_rate: float,
    latency: float,
    seed: int | None,
) -> None:
    """Serve a local AWS Batch endpoint (moto) whose jobs really run, in the foreground."""
    from poller.local.batch_server import serve
    from poller.local.faults import FaultConfig

    rates: dict[str, float] = {}
    for item in throttle:
        operation, _, rate = item.partition("=")
        try:
            rates[operation] = float(rate)
        except ValueError:
            raise click.BadParameter(
                f"expected OP=RATE, got {item!r}", param_hint="--throttle"
            ) from None
    try:
        faults = FaultConfig(throttle=rates, error_rate=error_rate, latency=latency, seed=seed)
    except ValueError as err:
        raise click.UsageError(str(err)) from err

    def ready(url: str) -> None:
        console.print(
            f"Local AWS Batch endpoint on [bold]{url}[/] (runtime={runtime}); "
            f"use it with AWS_ENDPOINT_URL_BATCH={url} AWS_ENDPOINT_URL_LOGS={url}"
        )

    serve(
        port=port,
        runtime=runtime,
        concurrency=concurrency,
        stage_seconds=stage_seconds,
        sim_seconds=sim_seconds,
        faults=faults,
        on_ready=ready,
    )


def _wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        signal.pause()
    except KeyboardInterrupt:
        console.print("stopping")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
