"""The project's app as its beat runs it: a schedule entry for poller's task by name, and the one
line of standard Celery routing that sends ``poller.*`` to poller's queue (the manual's)."""

from __future__ import annotations

import os

from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

from tests.integration.shop.app import app

app.conf.task_routes = {"poller.*": {"queue": "poller"}}
app.conf.beat_schedule = {
    "nightly-batch-job": {
        "task": "poller.submit_job",
        "schedule": float(os.environ.get("SHOP_BEAT_EVERY", "1")),
        "kwargs": {
            "job_name": "beat-job",
            "job_queue": JOB_QUEUE,
            "job_definition": SLEEP_JOB_DEFINITION,
            "parameters": {"seconds": "0.2"},
        },
    }
}
