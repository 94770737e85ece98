"""The ``poller`` command line: submit, inspect, await and cancel jobs; run the local stack.

Human output by default (rich), ``--json`` for scripts. Exit codes: 0 success; for ``submit
--wait`` and ``wait``, 1 when the job FAILED or was REJECTED and 2 when poller gave up
(TIMED_OUT); 3 for an unknown id, an unreachable server or bad settings (one line, no traceback).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import redis
from botocore.exceptions import BotoCoreError
from rich.console import Console

from poller import __version__
from poller import console as view
from poller.errors import ConfigurationError, PollerError
from poller.models import JobRecord, JobStatus
from poller.settings import mask_url

console = Console(stderr=True)  # progress and tables; stdout stays clean for ids and --json
out = Console(soft_wrap=True)  # plain lines (ids, JSON, logs) are never wrapped


PLUGIN_GROUP = "poller.commands"  # entry points adding commands (the emulator's `local-batch`)


@functools.cache
def plugin_commands() -> dict[str, importlib.metadata.EntryPoint]:
    """Commands other installed distributions add to ``poller``, by name."""
    return {e.name: e for e in importlib.metadata.entry_points(group=PLUGIN_GROUP)}


class PollerGroup(click.Group):
    """Turns every error (usage, poller, Redis, AWS, local stack) into one ``error:`` line and
    exit code 3, never a traceback; adds the commands of installed plugins."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """poller's own commands and the plugins', sorted."""
        return sorted({*super().list_commands(ctx), *plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A command by name; a plugin's is loaded only when asked for."""
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in plugin_commands():
            loaded: click.Command = plugin_commands()[cmd_name].load()
            return loaded
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from poller.testing.processes import LocalStackError  # no extra dependencies

        try:
            return super().invoke(ctx)
        except click.ClickException as err:
            fail(ctx, err.format_message())
        except (
            PollerError, ConfigurationError, redis.RedisError, BotoCoreError, LocalStackError
        ) as err:  # fmt: skip
            fail(ctx, str(err))


def fail(ctx: click.Context, message: str) -> None:
    """Print one ``error:`` line (never wrapped) and exit with code 3."""
    one_line = " ".join(message.split())
    console.print(f"[bold red]error:[/] {one_line}", highlight=False, soft_wrap=True)
    ctx.exit(view.EXIT_ERROR)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group(cls=PollerGroup)
@click.version_option(__version__, prog_name="poller")
def main() -> None:
    """Run AWS Batch jobs from Celery and know when they are done."""


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        pairs[key] = value
    return pairs


def _number(value: str) -> float | bool:
    """A --poll value: true/false, or a number (the policy validates ranges)."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a number or true/false, got {value!r}", param_hint="--poll"
        ) from None


def _handle(identifier: str) -> Any:
    """The job handle of a tracking id or a Batch job id."""
    from poller.client import JobHandle

    handle = JobHandle(identifier)
    if handle.store.find(identifier) is not None:
        return handle
    return JobHandle.from_job_id(identifier, handle.store)


def _follow(handle: Any, timeout: float | None, as_json: bool) -> None:
    """Show progress until the job ends, then exit with its outcome's code."""
    record: JobRecord | None = None
    with console.status("waiting") as status:
        for record in handle.watch(timeout):
            status.update(
                f"{record.job_name}: [bold]{record.status.value}[/] "
                f"(checks {record.checks}, elapsed {view.elapsed(record)})"
            )
    assert record is not None
    _show(record, as_json)
    sys.exit(view.exit_code(record))


def _show(record: JobRecord, as_json: bool) -> None:
    if as_json:
        out.print_json(view.to_json(record))
    else:
        out.print(view.record_table(record))


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
    wait_: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a Batch job through the workers; print its tracking id."""
    from poller.client import JobHandle
    from poller.tasks import submit_job

    kwargs: dict[str, Any] = {}
    if param:
        kwargs["parameters"] = _pairs(param, "--param")
    if env:
        variables = _pairs(env, "--env")
        kwargs["container_overrides"] = {
            "environment": [{"name": k, "value": v} for k, v in variables.items()]
        }
    if tag:
        kwargs["tags"] = _pairs(tag, "--tag")
    if poll:
        kwargs["poll"] = {key: _number(value) for key, value in _pairs(poll, "--poll").items()}
    result = submit_job.delay(name, queue, definition, **kwargs)
    if as_json and not wait_:
        out.print_json(json.dumps({"tracking_id": result.id}))
    elif not as_json:
        out.print(result.id, highlight=False)
    if wait_:
        _follow(JobHandle(result.id), timeout, as_json)


@main.command()
@click.argument("identifier", metavar="ID")
@json_option
def status(identifier: str, as_json: bool) -> None:
    """Show a job (by tracking id or Batch job id)."""
    _show(_handle(identifier).record, as_json)


@main.command()
@click.argument("identifier", metavar="ID")
@click.option("--timeout", type=float, default=None, help="Give up waiting after SECONDS.")
@json_option
def wait(identifier: str, timeout: float | None, as_json: bool) -> None:
    """Wait for a job to end, showing progress; exit 0 / 1 (failed) / 2 (timed out)."""
    _follow(_handle(identifier), timeout, as_json)


@main.command()
@click.argument("identifier", metavar="ID")
@click.option("--reason", default="cancelled with the poller CLI", show_default=True)
@json_option
def cancel(identifier: str, reason: str, as_json: bool) -> None:
    """Stop a job's Batch job and record why (an error when the job has already ended)."""
    handle = _handle(identifier)
    ended = handle.record
    if ended.is_terminal:
        raise click.ClickException(
            f"job {ended.tracking_id} already ended {ended.status.value}; nothing to cancel"
        )
    record = handle.cancel(reason)
    if as_json:
        out.print_json(view.to_json(record))
    else:
        console.print(f"cancel requested for {record.job_name} ({record.tracking_id}): {reason}")


@main.command()
@click.option("--active", is_flag=True, help="Only jobs still being tracked.")
@click.option(
    "--status",
    "status_",
    type=click.Choice([s.value for s in JobStatus], case_sensitive=False),
    help="Only jobs in this status (any case).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
def jobs(active: bool, status_: str | None, limit: int, as_json: bool) -> None:
    """List tracked jobs, most recent first."""
    from poller.runtime import get_store

    records = get_store().list(active_only=active, limit=10_000 if status_ else limit)
    if status_:
        records = [r for r in records if r.status.value == status_][:limit]
    if as_json:
        out.print_json(view.to_json(records))
    else:
        out.print(view.jobs_table(records, title=f"{len(records)} job(s)"))


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
                    out.print(
                        f"{time.strftime('%H:%M:%S')} {event['event']:<20} {event['status']:<10} "
                        f"{event['tracking_id']} {event.get('job_id') or ''}",
                        highlight=False,
                    )
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
@click.option("--dry-run", is_flag=True, help="Say what would change, change nothing.")
def events_setup_command(queue_name: str, rule_name: str, dry_run: bool) -> None:
    """Create or update the SQS queue and EventBridge rule bringing Batch's job state-change
    events to poller's workers (idempotent), and print POLLER_EVENTS_QUEUE_URL."""
    import boto3

    from poller.events_setup import setup

    report = setup(
        boto3.client("sqs"), boto3.client("events"),
        queue_name=queue_name, rule_name=rule_name, dry_run=dry_run,
    )  # fmt: skip
    for action in report.actions:
        console.print(action, highlight=False, soft_wrap=True)
    if report.queue_url:
        console.print("Set this for every worker:")
        out.print(f"POLLER_EVENTS_QUEUE_URL={report.queue_url}", highlight=False)


@main.command()
@click.argument("identifier", metavar="ID")
@json_option
def logs(identifier: str, as_json: bool) -> None:
    """Print a job's output from CloudWatch Logs."""
    from poller.logs import log_events

    record = _handle(identifier).record
    if not record.log_stream_name:
        raise click.ClickException(
            f"job {record.tracking_id} has no log stream yet ({record.status.value})"
        )
    for at, message in log_events(record.log_stream_name):
        if as_json:
            out.print(
                json.dumps({"timestamp": at.isoformat(), "message": message}), highlight=False
            )
        else:
            out.print(f"{at:%H:%M:%S} {message}", highlight=False, markup=False)


@main.command()
@json_option
def check(as_json: bool) -> None:
    """Check that Redis (broker and records) and AWS Batch answer; exit 3 when not."""
    from poller.batch import BatchClient
    from poller.settings import get_settings

    settings = get_settings()
    probes: dict[str, tuple[str, Callable[[], Any]]] = {
        "broker": (
            mask_url(settings.broker_url.get_secret_value()),
            lambda: redis.Redis.from_url(
                settings.broker_url.get_secret_value(), socket_timeout=3
            ).ping(),
        ),
        "records": (
            mask_url(settings.effective_redis_url),
            lambda: redis.Redis.from_url(settings.effective_redis_url, socket_timeout=3).ping(),
        ),
    }
    batch = BatchClient.create(max_attempts=1)
    probes["batch"] = (f"{batch.endpoint_url} ({batch.region})", batch.ping)
    if settings.events_queue_url is not None:
        probes["events"] = (settings.events_queue_url, _events_probe(settings.events_queue_url))
    results = {}
    for name, (target, probe) in probes.items():
        try:
            detail = probe()
            results[name] = {"target": target, "ok": True}
            if isinstance(detail, str):
                results[name]["detail"] = detail
        except Exception as err:  # report every failure, whatever the client raised
            results[name] = {"target": target, "ok": False, "error": str(err)}
    if as_json:
        out.print_json(json.dumps(results))
    else:
        for name, result in results.items():
            mark = "[green]ok[/]" if result["ok"] else f"[red]FAILED[/] {result.get('error')}"
            if result.get("detail"):
                mark += f" ({result['detail']})"
            console.print(f"{name:<8} {result['target']}: {mark}", highlight=False)
    if not all(r["ok"] for r in results.values()):
        sys.exit(view.EXIT_ERROR)


def _events_probe(queue_url: str) -> Callable[[], Any]:
    """Reach the events queue; then say whether events arrive (some worker saw one lately)."""

    def probe() -> str:
        from poller.events import sqs_client
        from poller.runtime import get_store

        attributes = sqs_client().get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        waiting = attributes.get("ApproximateNumberOfMessages", "?")
        arriving = "events arriving" if get_store().events_flowing() else "no events lately"
        return f"{arriving}; {waiting} waiting"

    return probe


@main.command("metrics")
@click.option("--port", type=int, default=9808, show_default=True, help="Port to listen on.")
@click.option(
    "--address", default="127.0.0.1", show_default=True,
    help="Address to bind (0.0.0.0 in a container).",
)  # fmt: skip
def metrics_command(port: int, address: str) -> None:
    """Serve the fleet's job metrics at /metrics for Prometheus (one process for every worker)."""
    from poller.metrics import serve
    from poller.runtime import get_store
    from poller.settings import get_settings

    serve(get_store(), get_settings(), port, address)
    shown = f"[{address}]" if ":" in address else address
    console.print(f"poller metrics on [bold]http://{shown}:{port}/metrics[/]", soft_wrap=True)
    _wait_for_stop_signal()


@main.command("config")
@json_option
def config_command(as_json: bool) -> None:
    """Show the effective settings (passwords masked)."""
    from poller.settings import get_settings

    shown = get_settings().masked()
    if as_json:
        out.print_json(json.dumps(shown))
    else:
        for name, value in shown.items():
            out.print(f"POLLER_{name.upper()}={'' if value is None else value}", highlight=False)


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
    """Start Redis, a local AWS Batch, a worker and Flower, and run real jobs through them."""
    try:
        from poller.testing.demo import run
    except ModuleNotFoundError as err:  # a user install: the emulator is a dev distribution
        raise click.ClickException(
            f"poller demo needs the AWS Batch emulator and poller[testing] ({err}): run it from "
            "poller's repository (`make demo`), or `pip install './aws-batch-emulator' "
            "'poller[testing]'`"
        ) from err

    sys.exit(run(successes=successes, keep=keep, flower_port=flower_port))


@main.command("worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(celery_args: tuple[str, ...]) -> None:
    """Run ``celery -A poller worker CELERY_ARGS``, starting it again if it dies.

    For Procfile runners (honcho, foreman), which do not restart a process that exits.
    SIGTERM / Ctrl-C stop the worker (warm shutdown) and this command with it.
    """
    import logging

    from poller.supervise import celery_worker_command, supervise

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
    server.start()
    shown = mask_url(server.url)
    if data_dir is None:
        kept = "temporary, deleted on exit"
    else:
        kept = "kept across restarts" if appendonly else "not persisted: --no-appendonly"
    console.print(
        f"Redis listening on [bold]{shown}[/] (pid {server.pid}); data in {server.data_dir} "
        f"({kept})",
        soft_wrap=True,
    )
    _wait_for_stop_signal()
    server.close()


def _wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    from poller.testing.processes import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            signal.pause()
    except KeyboardInterrupt:
        console.print("stopping")


if __name__ == "__main__":  # pragma: no cover
    main()
