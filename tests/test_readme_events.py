"""The events page's CloudFormation snippet describes what `poller events setup` creates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from poller.aws import events_setup

PAGE = Path(__file__).parent.parent / "docs" / "operations" / "events.md"


class _CloudFormation(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!GetAtt, !Ref) read as plain values."""


_CloudFormation.add_multi_constructor(
    "!", lambda loader, suffix, node: loader.construct_scalar(node)
)  # type: ignore[no-untyped-call]


def snippet() -> dict[str, Any]:
    (block,) = re.findall(r"```yaml\n(Resources:.*?)```", PAGE.read_text(), flags=re.DOTALL)
    return dict(yaml.load(block, Loader=_CloudFormation))


def test_the_cloudformation_snippet_matches_the_setup_command() -> None:
    resources = snippet()["Resources"]
    queue = resources["PollerEvents"]["Properties"]
    rule = resources["PollerBatchJobStateChange"]["Properties"]
    assert queue["QueueName"] == events_setup.DEFAULT_QUEUE
    assert queue["VisibilityTimeout"] == events_setup.VISIBILITY_TIMEOUT
    assert queue["RedrivePolicy"]["maxReceiveCount"] == events_setup.MAX_RECEIVES
    assert rule["Name"] == events_setup.DEFAULT_RULE
    assert rule["EventPattern"] == events_setup.EVENT_PATTERN
    assert rule["Targets"][0]["Id"] == events_setup.TARGET_ID
    dead = resources["PollerEventsDeadLetters"]["Properties"]
    assert dead["QueueName"] == f"{events_setup.DEFAULT_QUEUE}-dlq"
