"""The project's own tasks; each notes where it ran and what it received in the Redis of
SHOP_NOTES_URL."""

from __future__ import annotations

import json
import os
from typing import Any

import redis

from tests.integration.shop.app import app

RAN_KEY = "shop:ran"


def note(task: Any, received: Any) -> None:
    """Append {task, worker, received} to the shop:ran list."""
    client = redis.Redis.from_url(os.environ["SHOP_NOTES_URL"])
    entry = {"task": task.name, "worker": task.request.hostname, "received": received}
    client.rpush(RAN_KEY, json.dumps(entry))
    client.close()


@app.task(bind=True, name="shop.prepare")
def prepare(self: Any) -> str:
    """A step before the Batch job."""
    note(self, None)
    return "prepared"


@app.task(bind=True, name="shop.load_warehouse")
def load_warehouse(self: Any, result: dict[str, Any]) -> str:
    """A step after the Batch job: receives its result."""
    note(self, result)
    return str(result["tracking_id"])


@app.task(bind=True, name="shop.summarize")
def summarize(self: Any, results: list[dict[str, Any]]) -> list[str]:
    """A chord body over Batch jobs."""
    note(self, results)
    return sorted(r["status"] for r in results)


@app.task(bind=True, name="shop.on_batch_error")
def on_batch_error(self: Any, task_id: str) -> None:
    """An errback (link_error) of a Batch job submission."""
    note(self, task_id)
