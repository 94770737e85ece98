"""Read a Batch job's output from CloudWatch Logs (boto3 finds the endpoint and credentials)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from poller.errors import BatchUnavailable, JobNotFound

BATCH_LOG_GROUP = "/aws/batch/job"  # where AWS Batch sends a container's stdout and stderr


def log_events(
    stream: str,
    *,
    group: str = BATCH_LOG_GROUP,
    client: Any = None,
    before_call: Callable[[], None] | None = None,
) -> Iterator[tuple[datetime, str]]:
    """Yield (timestamp, message) for every event of a log stream, oldest first.
    ``before_call`` runs before each GetLogEvents page (the fleet's call budget)."""
    logs = client or boto3.client("logs")
    token: str | None = None
    try:
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            if before_call is not None:
                before_call()
            page = logs.get_log_events(**kwargs)
            for event in page["events"]:
                yield datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC), event["message"]
            if page.get("nextForwardToken") in (None, token):
                return
            token = page["nextForwardToken"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise JobNotFound(f"no log stream {stream!r} in {group}") from err
        raise BatchUnavailable(f"GetLogEvents: {err}") from err
    except BotoCoreError as err:
        raise BatchUnavailable(f"GetLogEvents: {err}") from err
