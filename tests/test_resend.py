"""Checks sent together (one publish batch on the real broker), each as Celery sends it alone."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from poller.app import app
from poller.runtime import ProcessRuntime
from poller.settings import get_settings
from poller.testing.redis_server import EmbeddedRedis
from poller.worker import resend
from tests.conftest import configured_for
from tests.fakes import admitted


def test_checks_sent_together_reach_the_checks_queue_each_under_its_job(
    rt: ProcessRuntime, poller_redis: EmbeddedRedis
) -> None:
    # Given three ended jobs, one of them in a chain
    records = [admitted(rt, f"t{n}").with_parts(schedule={"checks": n}) for n in range(3)]
    records[1] = records[1].with_parts(celery={"canvas": {"chain": [{"task": "app.load"}]}})
    broker = poller_redis.url.removesuffix("/0") + "/2"
    with configured_for({"POLLER_BROKER_URL": broker}):
        client = redis.Redis.from_url(broker)
        queue = get_settings().check_queue
        client.delete(queue)
        # When their checks are sent together
        resend.send_checks(app, records)
        # Then each job's check waits on the checks' queue under its tracking id, with its canvas
        messages = [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]
    assert [m["headers"]["id"] for m in messages] == ["t0", "t1", "t2"]
    assert {m["headers"]["task"] for m in messages} == {"poller.check_job"}
    bodies = [_body(m) for m in messages]
    assert [body[0] for body in bodies] == [["t0", 0, 0], ["t1", 1, 0], ["t2", 2, 0]]
    assert bodies[1][2]["chain"] == [{"task": "app.load"}]


def _body(message: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(message["body"]))
