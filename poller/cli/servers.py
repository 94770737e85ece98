"""The commands that run in the foreground until stopped: the fleet's Prometheus ``metrics``
server and a ``worker`` started again if it dies, and the local stack for development, an
embedded ``redis`` and the ``demo`` (Redis, a local AWS Batch, a worker and Flower with real
jobs). SIGTERM and Ctrl-C stop each of them."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from poller.cli.common import console
from poller.cli.group import main
from poller.settings import mask_url


@main.command("metrics")
@click.option("--port", type=int, default=9808, show_default=True, help="Port to listen on.")
@click.option(
    "--address", default="127.0.0.1", show_default=True,
    help="Address to bind (0.0.0.0 in a container).",
)  # fmt: skip
def metrics_command(port: int, address: str) -> None:
    """Serve the fleet's job metrics at /metrics for Prometheus (one process for every worker)."""
    from poller.monitoring.exporter import serve
    from poller.runtime import get_store
    from poller.settings import get_settings

    with _until_stopped():
        serve(get_store(), get_settings(), port, address)
        shown = f"[{address}]" if ":" in address else address
        console.print(f"poller metrics on [bold]http://{shown}:{port}/metrics[/]", soft_wrap=True)


@main.command("worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(celery_args: tuple[str, ...]) -> None:
    """Run ``celery -A poller worker CELERY_ARGS``, starting it again if it dies.

    For Procfile runners (honcho, foreman), which do not restart a process that exits.
    SIGTERM / Ctrl-C stop the worker (warm shutdown) and this command with it.
    """
    import logging

    from poller.worker.supervise import celery_worker_command, supervise

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(supervise(celery_worker_command(celery_args)))


@main.command("redis")
@click.option("--port", type=int, default=6379, show_default=True, help="Port on 127.0.0.1.")
@click.option("--password", envvar="POLLER_LOCAL_REDIS_PASSWORD", help="Require this password.")
@click.option(
    "--appendonly/--no-appendonly", default=True, show_default=True, help="Persist writes."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the data here across restarts (default: a temporary directory, deleted on exit).",
)
def redis_command(port: int, password: str | None, appendonly: bool, data_dir: Path | None) -> None:
    """Run an embedded Redis server in the foreground (Ctrl-C stops it)."""
    from poller.testing.redis_server import EmbeddedRedis

    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedRedis(port=port, password=password, appendonly=appendonly, data_dir=data_dir)
    if data_dir is None:
        kept = "temporary, deleted on exit"
    else:
        kept = "kept across restarts" if appendonly else "not persisted: --no-appendonly"
    try:
        with _until_stopped():
            server.start()
            console.print(
                f"Redis listening on [bold]{mask_url(server.url)}[/] (pid {server.pid}); data in "
                f"{server.data_dir} ({kept})",
                soft_wrap=True,
            )
    finally:
        server.close()


@main.command()
@click.option(
    "--jobs",
    "successes",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="Jobs that succeed (plus a failing one, an array job and a chain).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the stack running afterwards, to explore Flower (Ctrl-C stops).",
)
@click.option(
    "--flower-port",
    type=int,
    default=None,
    help="Flower's port on 127.0.0.1 (default: a free one).",
)
def demo(successes: int, keep: bool, flower_port: int | None) -> None:
    """Start Redis, a local AWS Batch, a worker and Flower, and run real jobs through them.

    Everything it started stops when the jobs have ended, Flower too; with --keep, at Ctrl-C.
    """
    try:
        from poller.testing.demo import run
    except ModuleNotFoundError as err:  # a user install: the emulator is a dev distribution
        raise click.ClickException(
            f"poller demo needs the AWS Batch emulator and poller[testing] ({err}): run it from "
            "poller's repository (`make demo`), or `pip install './aws-batch-emulator' "
            "'poller[testing]'`"
        ) from err

    sys.exit(run(successes=successes, keep=keep, flower_port=flower_port))


@contextlib.contextmanager
def _until_stopped() -> Iterator[None]:
    """Run the block (start a server, say it is ready), then wait for SIGINT or SIGTERM.

    Both are handled from the block's start: a supervisor that stops the process as soon as it
    reads the ready line gets a clean stop (exit 0), not death by SIGTERM.
    """
    from poller.testing.processes import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            yield
            signal.pause()
    except KeyboardInterrupt:
        console.print("stopping")
