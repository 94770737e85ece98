"""AWS Batch's job state-change events as a source of status: the SQS consumer in each worker.

AWS publishes every job transition as a "Batch Job State Change" event (EventBridge, source
``aws.batch``, at least once, in any order, none for the submission); a rule sends them to an SQS
queue (``poller events setup``), which every worker long-polls when ``POLLER_EVENTS_QUEUE_URL``
is set. An event goes through the same apply path as a check's observation
(:func:`poller.lifecycle.apply_event`): never backwards, a duplicate or stale event changes
nothing, each transition and signal happens once. A terminal event sends the job's check at
once, which produces its Celery result and continues its canvas.

A message is deleted only after its change is stored; one that cannot be handled yet (Redis
down) comes back after the queue's visibility timeout. Events of jobs poller does not track and
malformed bodies are counted, logged and deleted: nothing blocks the queue. While events flow,
checks wait ``events_poll_max_delay`` (polling is the safety net); after ``events_silence``
without any, with the queue unreachable, or while the events received are a backlog (the newest
older than FRESH_SECONDS), they go back to the poll policy.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from celery import bootsteps
from pydantic import ValidationError

from poller import lifecycle, resend
from poller.errors import JobNotFound
from poller.models import BatchJobView
from poller.runtime import Runtime, get_runtime
from poller.settings import get_settings
from poller.store.metrics import APPLIED, DUPLICATE, EARLY, MALFORMED, UNKNOWN_JOB

logger = logging.getLogger(__name__)

DETAIL_TYPE = "Batch Job State Change"
SOURCE = "aws.batch"
WAIT_SECONDS = 10  # SQS long poll: an event is received as soon as it arrives, whatever this is
STOP_GRACE = 2.0  # seconds a stopping worker waits for the batch of events being applied
MAX_BACKOFF = 30.0  # seconds between attempts to reach an unreachable queue, at most
# Events count as flowing only while they arrive fresh: a backlog (the newest event received is
# older than this) must not hold polling at its long cap.
FRESH_SECONDS = 30.0


@dataclass(frozen=True)
class BatchEvent:
    """What poller reads from one state-change event body (parsed once)."""

    view: BatchJobView
    tracking_tag: str | None  # poller's tracking-id tag on the job, if any
    age: float  # seconds since AWS published it (0 when its time cannot be read)


def parse(body: str) -> BatchEvent | None:
    """The state-change event in a message body, or None when it is not one."""
    try:
        event = json.loads(body)
        if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
            return None
        view = BatchJobView.from_api(event["detail"])
        tag = (event["detail"].get("tags") or {}).get(lifecycle.TRACKING_TAG)
    except (ValueError, TypeError, KeyError, AttributeError, ValidationError):
        return None
    return BatchEvent(view, tag if isinstance(tag, str) else None, _age(event.get("time")))


def _age(published: Any) -> float:
    try:
        when = datetime.fromisoformat(str(published).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (datetime.now(UTC) - when).total_seconds()


def handle(rt: Runtime, app: Any, body: str) -> str:
    """Apply one event body; returns its outcome (the message is deleted unless EARLY)."""
    return apply(rt, app, parse(body), body)


def apply(rt: Runtime, app: Any, event: BatchEvent | None, body: str) -> str:
    """Apply one parsed event (None: ``body`` is not one); returns its outcome."""
    if event is None:
        logger.warning("Batch event ignored: not a job state-change event: %.200s", body)
        return MALFORMED
    view = event.view
    tracking_id = _tracking_id(rt, event)
    if tracking_id is None:
        logger.info("Batch event for job %s ignored: poller does not track it", view.job_id)
        return UNKNOWN_JOB
    record = rt.store.get(tracking_id)
    if record.job_id is None:
        return EARLY
    if record.job_id != view.job_id:  # an array child, tagged like its parent
        return UNKNOWN_JOB
    applied = lifecycle.apply_event(rt, tracking_id, view)
    current = applied or record
    if current.is_terminal and not current.resolved:
        # Produce the result now, not at the next scheduled check (which then finds it done).
        resend.send_check(app, current)
    if applied is None:
        return DUPLICATE
    logger.debug("job %s: %s from its Batch event", tracking_id, view.status.value)
    return APPLIED


def _tracking_id(rt: Runtime, event: BatchEvent) -> str | None:
    try:
        return rt.store.tracking_id_for_job(event.view.job_id)
    except JobNotFound:
        pass
    # Not recorded yet (SubmitJob's answer on its way): poller's tag says whose it is.
    tag = event.tracking_tag
    return tag if tag is not None and rt.store.find(tag) is not None else None


def consume(rt: Runtime, app: Any, sqs: Any, queue_url: str) -> Counter[str]:
    """Receive one batch of messages (long poll), apply and delete them; count outcomes."""
    response = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=WAIT_SECONDS
    )
    messages = response.get("Messages", [])
    outcomes: Counter[str] = Counter()
    done: list[dict[str, str]] = []
    ages = []
    for message in messages:
        event = parse(message["Body"])
        outcome = apply(rt, app, event, message["Body"])
        outcomes[outcome] += 1
        ages.append(event.age if event is not None else 0.0)
        if outcome != EARLY:
            done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
    if done:
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
    if messages:
        if min(ages) <= FRESH_SECONDS:
            rt.store.note_events_flowing(rt.settings.events_silence)
        else:  # behind: polling at the normal cap until the backlog is gone
            rt.store.note_events_stopped()
        rt.store.count_events(dict(outcomes))
    return outcomes


def sqs_client() -> Any:
    """boto3's SQS client (``AWS_ENDPOINT_URL_SQS`` honoured), its read timeout above the poll."""
    config = Config(read_timeout=WAIT_SECONDS + 10, retries={"mode": "standard"})
    return boto3.client("sqs", config=config)


class EventsStep(bootsteps.StartStopStep):
    """Worker bootstep: consume ``POLLER_EVENTS_QUEUE_URL`` in a thread of its own."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._app = worker.app
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        """Start the consumer thread when an events queue is configured."""
        if get_settings().events_queue_url is None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="poller-events", daemon=True)
        self._thread.start()

    def stop(self, worker: Any) -> None:
        """Stop the consumer without waiting out its long poll (a warm shutdown stays quick).

        A batch being applied gets STOP_GRACE to finish; whatever the poll under way receives
        after that is not deleted, so SQS delivers it again (applying an event is idempotent).
        """
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE)
            self._thread = None

    def _loop(self) -> None:
        queue_url = str(get_settings().events_queue_url)
        failures, last_error = 0, ""
        logger.info("consuming Batch events from %s", queue_url)
        sqs = None
        while not self._stopping.is_set():
            try:
                rt = get_runtime()
                sqs = sqs or sqs_client()
                consume(rt, self._app, sqs, queue_url)
                if failures:
                    logger.warning("Batch events queue reachable again: %s", queue_url)
                failures, last_error = 0, ""
            except Exception as err:  # the thread must outlive any failure; polling covers
                failures += 1
                if repr(err) != last_error:
                    logger.error("Batch events: %s; polling takes over until it works", err)
                last_error = repr(err)
                self._stopped(err)
                self._stopping.wait(min(MAX_BACKOFF, 2.0**failures))

    @staticmethod
    def _stopped(err: Exception) -> None:
        """An unreachable queue: events stop counting as flowing (checks use the normal cap)."""
        if isinstance(err, BotoCoreError | ClientError):
            try:
                get_runtime().store.note_events_stopped()
            except Exception:  # Redis down too: the flag expires on its own
                logger.debug("could not note that events stopped", exc_info=True)
