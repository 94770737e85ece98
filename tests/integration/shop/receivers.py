"""The project's receivers of poller's signals, loaded into poller's worker by POLLER_IMPORTS."""

from __future__ import annotations

import os
from typing import Any

import redis

from poller import JobRecord, job_failed

FAILED_KEY = "shop:failed"


def count_failure(sender: Any, record: JobRecord, **_: Any) -> None:
    """Note each failed job's tracking id."""
    client = redis.Redis.from_url(os.environ["SHOP_NOTES_URL"])
    client.rpush(FAILED_KEY, record.tracking_id)
    client.close()


job_failed.connect(count_failure, weak=False)
