"""AWS Batch's job state-change events as a source of status: the SQS consumer in each worker.

AWS publishes every job transition as a "Batch Job State Change" event (EventBridge, source
``aws.batch``, at least once, in any order, none for the submission); a rule sends them to an SQS
queue (``poller events setup``), which every worker long-polls when ``POLLER_EVENTS_QUEUE_URL``
is set (in a process of its own: :mod:`poller.worker.batch_events_process`). Events go through
the same apply path as a check's observation, a received batch in one transaction
(:func:`poller.core.event_apply.apply_events`): never backwards, a duplicate or stale event
changes nothing, each transition and signal happens once. A terminal event sends the job's
check at once, which produces its Celery result and continues its canvas.

A message is deleted only after its change is stored; one that cannot be handled yet (Redis
down) comes back after the queue's visibility timeout. Events of jobs poller does not track and
malformed bodies are counted, logged and deleted: nothing blocks the queue. While events flow,
checks wait ``events_poll_max_delay`` (polling is the safety net); after ``events_silence``
without any, or with the queue unreachable, they go back to the poll policy. Events received late
(a backlog) still count as flowing: going back to the poll policy while they catch up would ask
for a check of every tracked job at the policy's cap, more than a large fleet can run beside its
submissions (docs/operations/events.md).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from poller.aws.batch_wire import MalformedInput, parse_event
from poller.aws.sqs import WAIT_SECONDS
from poller.core import event_apply, tracking
from poller.models import TRACKING_TAG, BatchJobView, JobRecord
from poller.runtime import ProcessRuntime
from poller.store.counters import (
    APPLIED,
    CHECKED,
    DUPLICATE,
    EARLY,
    FOREIGN,
    MALFORMED,
    UNKNOWN_JOB,
)
from poller.worker import confirm, resend

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchEvent:
    """What poller reads from one state-change event body (parsed once)."""

    view: BatchJobView  # its origin is the event's account and region
    tracking_tag: str | None  # poller's tracking-id tag on the job, if any


def parse(body: str) -> BatchEvent | None:
    """The state-change event in a message body, or None when it is not one (logged in one
    capped line). Never raises, whatever the body: one bad message is set aside alone."""
    try:
        event = parse_event(body)
    except MalformedInput as err:
        # The body is not logged: a real event's detail holds the job's environment values
        logger.warning("Batch event ignored, malformed (%d bytes): %.200s", len(body), err)
        return None
    view = replace(event.detail.view(), origin=(event.account, event.region))
    return BatchEvent(view, (event.detail.tags or {}).get(TRACKING_TAG))


def handle(rt: ProcessRuntime, app: Any, body: str) -> str:
    """Apply one event body; returns its outcome (the message is deleted unless EARLY)."""
    return apply_all(rt, app, [(body, parse(body))])[0]


def apply_all(
    rt: ProcessRuntime, app: Any, received: list[tuple[str, BatchEvent | None]]
) -> list[str]:
    """Apply a batch of events (each body, parsed: None when it is not one) together; returns
    each one's outcome, in order.

    A few Redis round trips whatever the batch's size: one finds the jobs, one transaction
    stores every change (:func:`poller.core.event_apply.apply_events`), one notes the signals sent.
    """
    job_ids = [event.view.job_id for _, event in received if event is not None]
    found = rt.store.tracking_ids_for_jobs(job_ids)
    # Not recorded yet (SubmitJob's answer on its way): poller's tag says whose it is.
    owners = [
        None if event is None else found.get(event.view.job_id, event.tracking_tag)
        for _, event in received
    ]
    seen = [None if event is None else event.view for _, event in received]
    confirming = (
        confirm.ends_to_check(rt, seen, owners)
        if rt.settings.events_confirm == confirm.TERMINAL
        else {}
    )
    views: dict[str, list[BatchJobView]] = {}
    for n, (view, owner) in enumerate(zip(seen, owners, strict=True)):
        if view is not None and owner is not None and n not in confirming:
            views.setdefault(owner, []).append(view)
    moved, records = event_apply.apply_events(rt, views) if views else ({}, {})
    # Produce the results now, not at the next scheduled checks (which then find them done).
    ended = [
        record
        for owner, record in records.items()
        if (
            record.is_terminal
            and not record.celery.resolved
            and any(view.job_id == record.job_id for view in views[owner])
        )
        or (record.resubmitting and any(moved.get(owner, [])))  # its check resubmits it
    ]
    # With confirmation, the ends' checks ask DescribeJobs (coalesced) and apply what it says
    to_check = {r.tracking_id: r for r in [*ended, *confirming.values()]}
    if to_check:
        resend.send_checks(app, to_check.values())
    position = {owner: iter(flags) for owner, flags in moved.items()}
    return [
        CHECKED
        if n in confirming
        else _outcome(event, records.get(owner) if owner else None, position.get(owner or ""))
        for n, ((_, event), owner) in enumerate(zip(received, owners, strict=True))
    ]


def _outcome(
    event: BatchEvent | None, record: JobRecord | None, moved: Iterator[bool] | None
) -> str:
    if event is None:
        return MALFORMED
    if record is None:
        logger.info("Batch event for job %s ignored: poller does not track it", event.view.job_id)
        return UNKNOWN_JOB
    applied = next(moved) if moved is not None else False
    if record.job_id is None:
        return EARLY
    if record.job_id != event.view.job_id:  # an array child, tagged like its parent
        return UNKNOWN_JOB
    if not tracking.from_its_target(record, event.view):
        logger.warning(
            "job %s: Batch event from account %s, region %s ignored: the job is in %s, %s",
            record.tracking_id, *(event.view.origin or ("?", "?")),
            record.aws_account, record.aws_region,
        )  # fmt: skip
        return FOREIGN
    if not applied:
        return DUPLICATE
    logger.debug("job %s: %s from its Batch event", record.tracking_id, event.view.status.value)
    return APPLIED


def consume(rt: ProcessRuntime, app: Any, sqs: Any, queue_url: str) -> Counter[str]:
    """Receive one batch of messages (long poll), apply them together, delete them; count
    outcomes."""
    response = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=WAIT_SECONDS
    )
    messages = response.get("Messages", [])
    if not messages:
        return Counter()
    received = [(message["Body"], parse(message["Body"])) for message in messages]
    outcomes = apply_all(rt, app, received)
    done = [
        {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
        for n, (message, outcome) in enumerate(zip(messages, outcomes, strict=True))
        if outcome != EARLY
    ]
    if done:
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
    # Events flow for the targets (account, region) genuine events came from: their jobs' checks
    # wait for events; every other job is polled by its policy
    origins = {
        event.view.origin
        for (_, event), outcome in zip(received, outcomes, strict=True)
        if event is not None and event.view.origin is not None and outcome != FOREIGN
    }
    rt.store.fleet.count_events(
        Counter(outcomes), flowing_for=rt.settings.events_silence, origins=origins
    )
    return Counter(outcomes)
