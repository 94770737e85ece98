"""The worker's receivers of AWS Batch's events, in a process of their own.

:class:`EventsStep` forks one process at worker start, which runs ``POLLER_EVENTS_RECEIVERS``
receiver threads (each long-polls SQS and applies a batch at a time,
:func:`poller.worker.batch_events.consume`). It is forked, so it keeps the worker's settings,
logging and the app's signal receivers (``POLLER_IMPORTS``), and signals fire in it. The worker
restarts it if it dies; it stops with the worker, or on its own when the worker is gone.

A process of their own, not threads of the worker's: applying events costs CPU (SQS calls
through botocore, records parsed and written), and in the worker's process it would take the GIL
from Celery's consumer loop, which would then fetch submissions and checks late
(docs/performance.md).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import bootsteps

from poller.aws.sqs import sqs_client
from poller.runtime import get_runtime
from poller.settings import get_settings
from poller.worker.batch_events import consume

logger = logging.getLogger(__name__)

STOP_GRACE = 2.0  # seconds a stopping worker gives the batches being applied
MAX_BACKOFF = 30.0  # seconds between attempts to reach an unreachable queue, at most
WATCH_SECONDS = 2.0  # how often the worker looks whether its events process still runs
_FORK = multiprocessing.get_context("fork")


class Receivers:
    """Receiver threads sharing one stop flag and one log of failures."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._clients: dict[str, Any] = {}  # SQS client per queue URL
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._last_error = ""  # the receivers' latest failure, logged once for all of them

    def run(self, count: int, queue_urls: list[str]) -> list[threading.Thread]:
        """Start ``count`` receiver threads, shared round robin by the queues (one at least
        each)."""
        threads = [
            threading.Thread(
                target=self.loop, args=(queue_urls[n % len(queue_urls)],),
                name=f"poller-events-{n}", daemon=True,
            )
            for n in range(max(count, len(queue_urls)))
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        return threads

    def loop(self, queue_url: str) -> None:
        """Receive and apply ``queue_url``'s batches until stopped. An unreachable queue is
        retried less and less often; any other failure (Redis away a moment) after a second."""
        rt = get_runtime()
        failures = 0
        while not self.stopping.is_set():
            try:
                consume(rt, self.app, self._sqs_client(queue_url), queue_url)
                failures = 0
                self._note_outcome(None)
            except Exception as err:  # the thread must outlive any failure; polling covers
                self._note_outcome(err)
                _note_stopped(err)
                failures = failures + 1 if isinstance(err, BotoCoreError | ClientError) else 0
                self.stopping.wait(min(MAX_BACKOFF, 2.0**failures))

    def _sqs_client(self, queue_url: str) -> Any:
        """One client per queue for its receivers: boto3's clients are thread-safe, but
        creating them from one session at once is not."""
        with self._lock:
            if queue_url not in self._clients:
                self._clients[queue_url] = sqs_client(queue_url)
            return self._clients[queue_url]

    def _note_outcome(self, err: Exception | None) -> None:
        """Log a failure once when it first happens (whichever receiver meets it), and the
        recovery once."""
        with self._lock:
            last, self._last_error = self._last_error, repr(err) if err is not None else ""
        if err is not None and repr(err) != last:
            logger.error("Batch events: %s; polling takes over until it works", err)
        elif err is None and last:
            logger.warning("Batch events queue reachable again")


def _note_stopped(err: Exception) -> None:
    """An unreachable queue: events stop counting as flowing (checks use the normal cap)."""
    if isinstance(err, BotoCoreError | ClientError):
        try:
            get_runtime().store.fleet.note_events_stopped()
        except Exception:  # Redis down too: the flag expires on its own
            logger.debug("could not note that events stopped", exc_info=True)


def run_process(app: Any, stop: Connection, worker_end: Connection) -> None:
    """The events process: receivers until ``stop``, a pipe from the worker, reads as closed
    (the worker stops, or is gone). A pipe, not a shared lock: a process killed holding a
    lock it shares with the worker would leave the worker waiting on it for ever."""
    worker_end.close()  # this process's copy: the worker's own is the one whose end we await
    # The worker decides when this process ends: its Ctrl-C and Celery's own handlers are not ours
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    get_runtime()  # built once here, before the receiver threads share it
    receivers = Receivers(app)
    settings = get_settings()
    threads = receivers.run(settings.events_receivers, settings.events_queue_urls)
    stop.poll(None)  # returns once the worker closes its end, or exits
    receivers.stopping.set()
    deadline = time.monotonic() + STOP_GRACE  # for all of them: the batches under way end
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


class EventsStep(bootsteps.StartStopStep):
    """Worker bootstep: run the events process while the worker runs, when
    ``POLLER_EVENTS_QUEUE_URL`` is set."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.app = worker.app
        self._stopping = threading.Event()
        self._process: Any = None
        self._stop_end: Connection | None = None  # closing it stops the events process
        self._watch: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        """Fork the events process, and a thread that restarts it if it dies."""
        settings = get_settings()
        if settings.events_queue_url is None:
            return
        logger.info(
            "consuming Batch events from %s (%d receivers, in a process of their own)",
            settings.events_queue_url, settings.events_receivers,
        )  # fmt: skip
        self._stopping.clear()
        self._start_process()
        self._watch = threading.Thread(target=self._watch_process, name="poller-events-watch")
        self._watch.daemon = True
        self._watch.start()

    def _start_process(self) -> None:
        stop, self._stop_end = _FORK.Pipe(duplex=False)
        self._process = _FORK.Process(
            target=run_process, args=(self.app, stop, self._stop_end), name="poller-events"
        )
        self._process.daemon = True
        self._process.start()
        stop.close()  # the process's end

    def _watch_process(self) -> None:
        while not self._stopping.wait(WATCH_SECONDS):
            if not self._process.is_alive():
                logger.error(
                    "Batch events process exited (code %s); starting another",
                    self._process.exitcode,
                )
                self._close_stop_end()
                self._start_process()

    def _close_stop_end(self) -> None:
        if self._stop_end is None:
            return
        # Say it as well as close it: a process forked later (a prefork pool's) holds a copy
        with suppress(OSError):
            self._stop_end.send_bytes(b"stop")
        self._stop_end.close()
        self._stop_end = None

    def stop(self, worker: Any) -> None:
        """Stop the events process: the batches under way get STOP_GRACE, then it is killed
        (whatever it received and did not delete comes back from SQS; applying is idempotent)."""
        if self._process is None:
            return
        self._stopping.set()
        if self._watch is not None:
            self._watch.join(timeout=WATCH_SECONDS * 2)
        self._close_stop_end()
        self._process.join(timeout=STOP_GRACE + 1)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        self._process = None
