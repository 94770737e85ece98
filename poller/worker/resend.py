"""Messages poller sends itself to move a job on: a check now, or the submission again.

Both go out under the job's tracking id (its Celery result lives there) with the canvas links
stored in its record, so a chain or chord continues from whichever message produces the result.
Sending one too many is harmless: checks are fenced by their number, submissions by the record.

A check sent now goes to the checks' queue (``<POLLER_QUEUE>.checks``), which workers take from
in turn with poller's queue: the job's end, and its Celery result, are not queued behind a burst
of submissions. Scheduled checks (countdowns) stay on poller's queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from celery.result import denied_join_result

from poller.core.redaction import kwargs_repr
from poller.models import JobRecord
from poller.monitoring import flower_view
from poller.settings import get_settings


def _send_check(app: Any, record: JobRecord, producer: Any) -> None:
    """Send the job's next check, to run now (on the checks' queue)."""
    app.send_task(
        "poller.check_job",
        args=(record.tracking_id, record.schedule.checks, 0),
        task_id=record.tracking_id,
        queue=get_settings().check_queue,
        shadow=flower_view.check_name(record),
        producer=producer,
        **(record.celery.canvas or {}),
    )


def send_checks(app: Any, records: Iterable[JobRecord]) -> None:
    """Send several jobs' checks with one producer, in one batch: on Redis, one round trip for
    them all and their Flower events (kombu's ``Producer.batch``; other brokers publish each).

    Nobody in this process waits on their results: denied_join_result keeps Celery's Redis
    backend from subscribing to each one (as in a worker's pool)."""
    with denied_join_result(), app.producer_or_acquire() as producer, _batch(producer):
        for record in records:
            _send_check(app, record, producer)


def _batch(producer: Any) -> AbstractContextManager[Any]:
    """kombu's publish batch (kombu 5.7 and later), else nothing: each message goes at once."""
    batch = getattr(producer, "batch", None)
    return batch() if batch is not None else nullcontext()


def send_submit(app: Any, record: JobRecord) -> None:
    """Send the job's submission again (it was never submitted)."""
    kwargs = {
        **record.spec,
        "poll": record.poll.model_dump(),
        "idempotency_key": record.idempotency_key,
    }
    app.send_task(
        "poller.submit_job",
        kwargs=kwargs,
        kwargsrepr=kwargs_repr(kwargs),  # Flower and task events: environment values masked
        task_id=record.tracking_id,
        shadow=flower_view.submit_name((), record.spec),
        **(record.celery.canvas or {}),
    )
