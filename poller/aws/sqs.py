"""The events queue's SQS client: long polls, in the region the queue's URL names."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

WAIT_SECONDS = 10  # SQS long poll: an event is received as soon as it arrives, whatever this is


def sqs_client(queue_url: str | None = None) -> Any:
    """boto3's SQS client (``AWS_ENDPOINT_URL_SQS`` honoured), its read timeout above the poll;
    in the queue's region when its URL names one (``https://sqs.<region>.amazonaws.com/...``)."""
    config = Config(read_timeout=WAIT_SECONDS + 10, retries={"mode": "standard"})
    return boto3.session.Session().client("sqs", config=config, region_name=queue_region(queue_url))


def queue_region(queue_url: str | None) -> str | None:
    """The region an AWS SQS queue URL names, or None (another endpoint's: the default)."""
    host = urlsplit(queue_url or "").hostname or ""
    match = re.fullmatch(
        r"sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com", host
    )
    return (match.group(1) or match.group(3)) if match else None
