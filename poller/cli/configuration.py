"""The configuration commands: ``check`` that the broker, Redis (records), AWS Batch and the
events queue answer with the current settings, and show the effective settings (``config``,
passwords masked).

Both print what they found on stdout, as a report or with ``--json``; when a probe fails,
``check`` ends as every command's error does: one ``error:`` line on stderr, exit code 3."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click
import kombu

from poller.cli.common import json_option, out
from poller.cli.group import main
from poller.monitoring import console as view
from poller.settings import mask_url


@main.command()
@json_option
def check(as_json: bool) -> None:
    """Check that the broker, Redis (records) and AWS Batch answer: a report on stdout; exit 3
    (and an error line on stderr) when one does not."""
    from poller.aws.batch import BatchClient
    from poller.aws.targets import aws_configuration_problem
    from poller.settings import get_settings

    settings = get_settings()
    probes: dict[str, tuple[str, Callable[[], Any]]] = {
        "broker": (
            mask_url(settings.broker_url.get_secret_value()),
            functools.partial(
                _broker_probe,
                settings.broker_url.get_secret_value(),
                settings.broker_is_rabbitmq,
                settings.sentinel_master,
            ),
        ),
        "records": (mask_url(settings.effective_redis_url), _records_probe),
    }
    problem = aws_configuration_problem()
    if problem is None:
        batch = BatchClient.create(max_attempts=1)
        probes["batch"] = (f"{batch.endpoint_url} ({batch.region})", batch.ping)
    else:  # boto3's own message ("You must specify a region.") says not what to set
        probes["batch"] = ("AWS Batch", functools.partial(_refuse, problem))
    urls = settings.events_queue_urls
    for n, url in enumerate(urls):
        probes["events" if len(urls) == 1 else f"events {n + 1}"] = (url, _events_probe(url))
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
            line = view.plain(f"{name:<8} {result['target']}: ")
            if result["ok"]:
                line.append("ok", "green")
            else:
                line.append("FAILED", "red")
                line.append(view.plain(f" {result.get('error')}"))
            if result.get("detail"):
                line.append(view.plain(f" ({result['detail']})"))
            out.print(line, highlight=False)
    failed = [name for name, result in results.items() if not result["ok"]]
    if failed:  # one error line, as for any command (exit code 3), after the whole report
        raise click.ClickException(
            f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}"
        )


def _broker_probe(url: str, rabbitmq: bool, sentinel_master: str | None = None) -> None:
    """Connect to the broker as Celery does (kombu: Redis, Sentinel or RabbitMQ), once, within
    seconds (kombu's Redis transport ignores ``connect_timeout``: its socket options are set)."""
    options: dict[str, Any] = (
        {"read_timeout": 3, "write_timeout": 3}
        if rabbitmq
        else {"socket_timeout": 3, "socket_connect_timeout": 3}
    )
    if sentinel_master is not None:
        options["master_name"] = sentinel_master
    with kombu.Connection(url, connect_timeout=3, transport_options=options) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)


def _records_probe() -> str | None:
    """Reach Redis; then name the records set aside as unreadable, if any."""
    from poller.runtime import get_store

    store = get_store()
    store.redis.ping()
    topology = store.topology()
    replicas = ", ".join(f"{r.address} {r.lag_bytes} B behind" for r in topology.replicas)
    persistence = "+".join(
        n for n, on in (("AOF", topology.aof), ("RDB", topology.rdb_saves)) if on
    )
    min_replicas = topology.min_replicas_to_write
    parts = [
        f"{topology.role}, {len(topology.replicas)} replica(s){': ' + replicas if replicas else ''}",
        f"persistence {persistence or 'none'}",
        f"min-replicas-to-write {'?' if min_replicas is None else min_replicas}",
    ]
    parts += [f"WARNING: {warning}" for warning in topology.warnings()]
    aside = store.quarantined()
    if aside:
        shown = ", ".join(view.printable(tracking_id) for tracking_id in aside[:5])
        more = f" and {len(aside) - 5} more" if len(aside) > 5 else ""
        parts.append(f"{len(aside)} unreadable record(s) set aside: {shown}{more}")
    return "; ".join(parts)


def _refuse(problem: str) -> None:
    raise RuntimeError(problem)


def _events_probe(queue_url: str) -> Callable[[], Any]:
    """Reach the events queue; then say whether events arrive (some worker saw one lately)."""

    def probe() -> str:
        from poller.aws.events_setup import policy_problems
        from poller.aws.sqs import sqs_client
        from poller.runtime import get_store

        attributes = sqs_client(queue_url).get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "Policy"]
        )["Attributes"]
        waiting = attributes.get("ApproximateNumberOfMessages", "?")
        arriving = "events arriving" if get_store().fleet.events_flowing() else "no events lately"
        detail = f"{arriving}; {waiting} waiting"
        for problem in policy_problems(attributes.get("Policy")):
            detail += f"; WARNING: its policy's {problem}: they could forge Batch events"
        return detail

    return probe


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
            if isinstance(value, list):  # the variable's own format: comma-separated
                value = ",".join(map(str, value))
            out.print(f"POLLER_{name.upper()}={'' if value is None else value}", highlight=False)
