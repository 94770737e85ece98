"""What the test runs inside the project (``python -m orders.scenario QUEUE DEFINITION``):
a chain into the project's task, and submissions on commit and on rollback. Prints JSON."""

import json
import sys

import django

django.setup()

from celery import chain  # noqa: E402
from django.db import transaction  # noqa: E402

import poller  # noqa: E402
from orders.tasks import record_result  # noqa: E402
from poller import submit_job  # noqa: E402

queue, definition = sys.argv[1], sys.argv[2]
# importing poller left the project's app current: its shared task is the project's
app_of_shared_task = record_result.app.main
chained = chain(
    submit_job.s("chained", queue, definition, parameters={"seconds": "0.3"}), record_result.s()
).delay()
with transaction.atomic():
    submit_job.delay_on_commit("on-commit", queue, definition, parameters={"seconds": "0.3"})
try:
    with transaction.atomic():
        submit_job.delay_on_commit("rolled-back", queue, definition)
        raise RuntimeError("the view failed")
except RuntimeError:
    pass
print(
    json.dumps(
        {
            "app_of_shared_task": app_of_shared_task,
            "poller_app": poller.app.main,
            "chain_result": chained.get(timeout=120),
            "chained_job": chained.parent.id,
        }
    )
)
