"""``poller events setup``: the AWS resources that bring Batch's state-change events to poller.

An SQS queue (with a dead-letter queue for messages that keep failing), its policy letting
EventBridge send to it from this rule only, and an EventBridge rule matching every "Batch Job
State Change" event with the queue as its target. Each resource is created when missing, updated
when it differs, and left alone when it matches, so a second run changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from poller.aws.batch_wire import DETAIL_TYPE, SOURCE

DEFAULT_QUEUE = "poller-batch-events"
DEFAULT_RULE = "poller-batch-job-state-change"
TARGET_ID = "poller-events-queue"
EVENT_PATTERN = {"source": [SOURCE], "detail-type": [DETAIL_TYPE]}
VISIBILITY_TIMEOUT = 30  # seconds before a message a dead worker held is delivered again
MAX_RECEIVES = 5  # deliveries before a message that keeps failing goes to the dead-letter queue
RETENTION = 4 * 24 * 3600  # seconds an undelivered event is kept (SQS's default)
DLQ_RETENTION = 14 * 24 * 3600  # the most SQS keeps a message, for a look at what failed


@dataclass
class SetupReport:
    """What a run did (or, with ``dry_run``, would do), and the URL to set."""

    queue_url: str | None = None
    actions: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether anything was (or would be) created or updated."""
        return any(not a.startswith("unchanged") for a in self.actions)


def setup(
    sqs: Any,
    events: Any,
    *,
    queue_name: str = DEFAULT_QUEUE,
    rule_name: str = DEFAULT_RULE,
    dry_run: bool = False,
) -> SetupReport:
    """Create or update the queue, its dead-letter queue and policy, and the rule and target."""
    report = SetupReport()
    verb = "would " if dry_run else ""
    dlq_url = _queue(sqs, f"{queue_name}-dlq", {"MessageRetentionPeriod": str(DLQ_RETENTION)},
                     report, verb, dry_run)  # fmt: skip
    dlq_arn = _arn(sqs, dlq_url) if dlq_url else f"<arn of {queue_name}-dlq>"
    attributes = {
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT),
        "MessageRetentionPeriod": str(RETENTION),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
        ),
    }
    queue_url = _queue(sqs, queue_name, attributes, report, verb, dry_run)
    queue_arn = _arn(sqs, queue_url) if queue_url else f"<arn of {queue_name}>"
    rule_arn = _rule(events, rule_name, report, verb, dry_run)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "poller-batch-events",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
    if queue_url:
        _queue(sqs, queue_name, {"Policy": json.dumps(policy)}, report, verb, dry_run)
    _target(events, rule_name, queue_arn, report, verb, dry_run)
    report.queue_url = queue_url
    return report


def _queue(
    sqs: Any, name: str, wanted: dict[str, str], report: SetupReport, verb: str, dry_run: bool
) -> str | None:
    """The queue's URL, created with or updated to ``wanted`` attributes (None: dry run, none)."""
    try:
        url = str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as err:
        if "NonExistentQueue" not in str(err) and "QueueDoesNotExist" not in str(err):
            raise
        report.actions.append(f"{verb}create SQS queue {name}")
        if dry_run:
            return None
        return str(sqs.create_queue(QueueName=name, Attributes=wanted)["QueueUrl"])
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    differ = {k: v for k, v in wanted.items() if not _same(k, current.get(k), v)}
    if not differ:
        report.actions.append(f"unchanged SQS queue {name} ({', '.join(sorted(wanted))})")
        return url
    report.actions.append(f"{verb}update SQS queue {name}: {', '.join(sorted(differ))}")
    if not dry_run:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=differ)
    return url


def _same(name: str, current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if name in ("RedrivePolicy", "Policy"):  # JSON: compare values, not spelling
        return bool(_normalized(json.loads(current)) == _normalized(json.loads(wanted)))
    return current == wanted


def _normalized(value: Any) -> Any:
    """JSON with numbers as strings (SQS answers maxReceiveCount as either)."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return str(value)


def _arn(sqs: Any, url: str) -> str:
    return str(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    )


def _rule(events: Any, name: str, report: SetupReport, verb: str, dry_run: bool) -> str:
    pattern = json.dumps(EVENT_PATTERN)
    try:
        rule = events.describe_rule(Name=name)
    except ClientError as err:
        if "ResourceNotFoundException" not in str(err):
            raise
        report.actions.append(f"{verb}create EventBridge rule {name}")
        if dry_run:
            return f"<arn of rule {name}>"
        return str(events.put_rule(Name=name, EventPattern=pattern, State="ENABLED")["RuleArn"])
    same = json.loads(rule.get("EventPattern") or "{}") == EVENT_PATTERN
    if same and rule.get("State") == "ENABLED":
        report.actions.append(f"unchanged EventBridge rule {name}")
    else:
        report.actions.append(f"{verb}update EventBridge rule {name}: pattern and state")
        if not dry_run:
            events.put_rule(Name=name, EventPattern=pattern, State="ENABLED")
    return str(rule["Arn"])


def _target(
    events: Any, rule: str, queue_arn: str, report: SetupReport, verb: str, dry_run: bool
) -> None:
    try:
        targets = events.list_targets_by_rule(Rule=rule)["Targets"]
    except ClientError as err:
        if "ResourceNotFoundException" not in str(err):
            raise
        targets = []
    if any(t["Id"] == TARGET_ID and t["Arn"] == queue_arn for t in targets):
        report.actions.append(f"unchanged target of {rule}: the queue")
        return
    report.actions.append(f"{verb}set target of {rule}: the queue")
    if not dry_run:
        events.put_targets(Rule=rule, Targets=[{"Id": TARGET_ID, "Arn": queue_arn}])


_SEND_ACTIONS = {"sqs:sendmessage", "sqs:*", "*"}
_SOURCE_CONDITIONS = {"aws:sourcearn"}


def policy_problems(policy: str | None) -> list[str]:
    """What in an events queue's policy lets someone other than an EventBridge rule send to it.

    A statement allowing ``sqs:SendMessage`` is fine only for EventBridge (the
    ``events.amazonaws.com`` service) limited to named rules by ``aws:SourceArn``, as ``setup``
    writes it. Anyone else who may send can forge Batch events (``poller check`` warns).
    """
    if not policy:
        return []
    statements = json.loads(policy).get("Statement", [])
    problems = []
    for n, statement in enumerate(statements if isinstance(statements, list) else [statements]):
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") != "Allow" or not _SEND_ACTIONS & {a.lower() for a in actions}:
            continue
        principal = statement.get("Principal")
        conditions = {
            key.lower() for test in (statement.get("Condition") or {}).values() for key in test
        }
        if principal == {"Service": "events.amazonaws.com"} and conditions & _SOURCE_CONDITIONS:
            continue
        name = statement.get("Sid") or f"statement {n + 1}"
        problems.append(f"{name} lets {json.dumps(principal)} send messages")
    return problems
