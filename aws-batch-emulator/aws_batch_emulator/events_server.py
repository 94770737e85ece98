"""The events endpoint: SQS and EventBridge in a process of their own, beside a ``--events`` server.

The Batch endpoint simulates every job in one Python process; with its SQS in the same process,
each ReceiveMessage and DeleteMessageBatch of an event consumer waited for that process's GIL
(10,000 jobs: events applied ~130 a second, ~30 s behind), so a benchmark measured the emulator.
Here SQS and EventBridge are a moto server of their own (clients reach it through
``AWS_ENDPOINT_URL_SQS`` and ``AWS_ENDPOINT_URL_EVENTBRIDGE``). The Batch endpoint's publisher
still shapes each event and draws its faults; it hands them over in batches
(``POST /_poller/deliver``, a JSON list of events), and they go through EventBridge's rules to
their targets here, as before (`aws_batch_emulator.eventbridge`).

`EventsEndpoint` starts and stops this process for the Batch server; ``python -m
aws_batch_emulator.events_main --host H --port P`` is what it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from types import FrameType
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aws_batch_emulator import resources

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from aws_batch_emulator.events import Event

logger = logging.getLogger(__name__)

READY_LINE = "AWS Batch emulator events (SQS, EventBridge) listening on {url}"
READY_PATTERN = re.compile(r"events \(SQS, EventBridge\) listening on (http://\S+)")
DELIVER_PATH = "/_poller/deliver"
START_TIMEOUT = 30.0


class _Deliveries:
    """``POST /_poller/deliver`` delivers the events in the body; any other request goes to moto."""

    def __init__(self, moto_app: WSGIApplication) -> None:
        self._moto_app = moto_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != DELIVER_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self._moto_app(environ, start_response)
        from aws_batch_emulator.eventbridge import deliver

        length = int(environ.get("CONTENT_LENGTH") or 0)
        events = json.loads(environ["wsgi.input"].read(length) or b"[]")
        failed = []
        for event in events:
            try:
                deliver(event)
            except Exception as err:  # one event's failure must not stop the others
                failed.append(f"{event.get('id')}: {err}")
        body = json.dumps({"delivered": len(events) - len(failed), "failed": failed}).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]


def serve(host: str, port: int, stop_with_stdin: bool = False) -> None:
    """Serve SQS and EventBridge (with the events queue and rule) until SIGINT/SIGTERM, or
    with ``stop_with_stdin`` until stdin closes."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from aws_batch_emulator.eventbridge import create_event_resources

    create_event_resources(resources.ACCOUNT_ID, resources.REGION)
    if logging.getLogger("werkzeug").level == logging.NOTSET:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    app = _Deliveries(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, so it cannot run in this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)

    def stop_with_parent() -> None:
        sys.stdin.read()  # EOF: the Batch server that started this process is gone
        stop(signal.SIGTERM, None)

    if stop_with_stdin:
        threading.Thread(target=stop_with_parent, daemon=True).start()
    print(READY_LINE.format(url=f"http://{host}:{server.port}"), flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


class EventsEndpoint:
    """The events endpoint as a child process of the Batch server, and delivery to it."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.host = host
        self.port = port
        self.url = ""
        """``http://<host>:<port>``, once started."""
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> EventsEndpoint:
        """Start the process and wait until it listens; RuntimeError if it does not."""
        command = [sys.executable, "-m", "aws_batch_emulator.events_main"]
        command += ["--host", self.host, "--port", str(self.port), "--stop-with-stdin"]
        # stdout carries the ready line only; its logs go to this server's stderr. It stops
        # when its stdin closes: with this process, however this one ends. A session of its
        # own: a Ctrl-C meant for this server must not stop it before the last events went.
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.url = _await_ready(self._proc, time.monotonic() + START_TIMEOUT)
        logger.info("events endpoint (SQS, EventBridge) on %s", self.url)
        return self

    def deliver(self, events: list[Event]) -> list[str]:
        """Deliver ``events`` through the rules of their account's default bus; returns the
        events that failed, each as "<event id>: <why>"."""
        address = urlsplit(self.url)
        connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
        try:
            body = json.dumps(events)
            connection.request(
                "POST", DELIVER_PATH, body=body, headers={"Content-Type": "application/json"}
            )
            failed: list[str] = json.loads(connection.getresponse().read())["failed"]
        finally:
            connection.close()
        return failed

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def _await_ready(proc: subprocess.Popen[str], deadline: float) -> str:
    stdout: IO[str] | None = proc.stdout
    assert stdout is not None
    found: list[str] = []

    def read() -> None:
        for line in stdout:
            match = READY_PATTERN.search(line)
            if match:
                found.append(match.group(1))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    if found:
        return found[0]
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
    raise RuntimeError(f"the events endpoint did not start (exit code {proc.poll()})")


def main(argv: list[str] | None = None) -> None:
    """``python -m aws_batch_emulator.events_main --host H --port P``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stop-with-stdin", action="store_true", help="stop when stdin closes")
    args: Any = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(args.host, args.port, args.stop_with_stdin)
