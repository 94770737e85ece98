"""Serve the local AWS Batch endpoint, in the foreground or as a child process.

``serve()`` runs the endpoint (`aws_batch_emulator.routing`: the Batch API and moto's other
services, with `aws_batch_emulator.faults.FaultMiddleware` in front) until SIGINT/SIGTERM. With ``events=True``
it also publishes job state change events to EventBridge, which a ready-made rule sends to an SQS
queue (`aws_batch_emulator.events`). `LocalBatch` starts the same thing as a child process
(``python -m aws_batch_emulator``) and gives tests and tools a handle on it: URL, boto3 clients,
call counters and fault switches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from aws_batch_emulator import resources
from aws_batch_emulator.children import EmulatorError, stop_process
from aws_batch_emulator.events_server import READY_PATTERN as EVENTS_READY_PATTERN
from aws_batch_emulator.faults import FaultConfig, FaultMiddleware
from aws_batch_emulator.resources import RUNTIMES

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


READY_LINE = "AWS Batch emulator listening on {url} (runtime={runtime})"
"""Printed (and flushed) on stdout once the server accepts connections."""
_READY_PATTERN = re.compile(r"AWS Batch emulator listening on (http://\S+)")


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    runtime: str = "process",
    concurrency: int = 4,
    stage_seconds: float = 0.2,
    sim_seconds: float = 1.0,
    faults: FaultConfig | None = None,
    events: bool = False,
    on_ready: Callable[[str, str | None], None] | None = None,
    events_port: int = 0,
) -> None:
    """Serve the local Batch endpoint in the foreground until SIGINT/SIGTERM; on_ready(endpoint_url, events_url) once listening (port 0 = a free port).

    `events`: publish job state change events to the events endpoint, SQS and EventBridge in a
    process of their own on `events_port` (`aws_batch_emulator.events_server`); the SQS queue
    and EventBridge rule that receive them exist before on_ready is called.
    """
    from werkzeug.serving import make_server

    from aws_batch_emulator.events import EventPublisher
    from aws_batch_emulator.events_server import EventsEndpoint
    from aws_batch_emulator.routing import endpoint_app
    from aws_batch_emulator.runtime import BatchRuntime
    from aws_batch_emulator.settings import RuntimeSettings

    settings = RuntimeSettings(runtime, concurrency, stage_seconds, sim_seconds)
    events_endpoint = EventsEndpoint(host, events_port).start() if events else None
    publisher = None if events_endpoint is None else EventPublisher(events_endpoint.deliver).start()
    engine = None
    try:
        engine = BatchRuntime(settings, publisher)
        routing = endpoint_app(engine)  # before the first backend (see endpoint_app)
        engine.backend(resources.ACCOUNT_ID, resources.REGION)  # ready-made resources first
        if logging.getLogger("werkzeug").level == logging.NOTSET:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        sections = {} if publisher is None else {"events": publisher}
        app = FaultMiddleware(routing, faults, sections=sections)
        server = make_server(host, port, app, threaded=True)
        restore = _stop_on_signals(server.shutdown)
        try:
            url = f"http://{host}:{server.port}"
            logger.info("local Batch endpoint on %s (%s)", url, settings)
            if on_ready is not None:
                on_ready(url, None if events_endpoint is None else events_endpoint.url)
            server.serve_forever(poll_interval=0.1)  # how fast a stop signal is noticed
        finally:
            restore()
            server.server_close()
    finally:
        if engine is not None:
            engine.shutdown()
        if publisher is not None:
            publisher.close()
        if events_endpoint is not None:
            events_endpoint.stop()


def _stop_on_signals(shutdown: Callable[[], None]) -> Callable[[], None]:
    """Make SIGINT/SIGTERM stop the server; return a function restoring the old handlers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, so it cannot run in this thread.
        threading.Thread(target=shutdown, name="batch-server-shutdown", daemon=True).start()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Outside the main thread signal() raises ValueError: the caller handles signals then.
        with contextlib.suppress(ValueError):
            previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore


class LocalBatch:
    """Handle on a local Batch endpoint running as a child process (`python -m aws_batch_emulator ...`)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        runtime: str = "process",
        concurrency: int = 4,
        stage_seconds: float = 0.2,
        sim_seconds: float = 1.0,
        faults: FaultConfig | None = None,
        region: str = "us-east-1",
        startup_timeout: float = 30.0,
        events: bool = False,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.port = port or 0
        """Port the endpoint listens on (the one the child picked, after start() with port 0)."""
        self.endpoint_url = ""
        """``http://127.0.0.1:<port>``, set by start()."""
        self.pid: int | None = None
        """Process id of the server child while it runs."""
        self.runtime = runtime
        self.concurrency = concurrency
        self.stage_seconds = stage_seconds
        self.sim_seconds = sim_seconds
        self.initial_faults = faults or FaultConfig()
        self.region = region
        self.startup_timeout = startup_timeout
        self.events = events
        """Whether the server publishes job state change events (``--events``)."""
        self.events_queue_url = ""
        """URL of the SQS queue receiving the events, as GetQueueUrl gives it; set by start()
        when `events` is on."""
        self.events_url = ""
        """``http://127.0.0.1:<port>`` of SQS and EventBridge (a process of their own), set by
        start() when `events` is on."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    def __enter__(self) -> LocalBatch:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def command(self) -> list[str]:
        """Command line of the server child."""
        faults = self.initial_faults
        command = [sys.executable, "-m", "aws_batch_emulator", "--host", "127.0.0.1"]
        command += [
            "--port",
            str(self.port),
            "--runtime",
            self.runtime,
            "--concurrency",
            str(self.concurrency),
        ]
        command += [
            "--stage-seconds",
            str(self.stage_seconds),
            "--sim-seconds",
            str(self.sim_seconds),
        ]
        for operation, rate in faults.throttle.items():
            command += ["--throttle", f"{operation}={rate}"]
        command += ["--error-rate", str(faults.error_rate), "--latency", str(faults.latency)]
        if faults.seed is not None:
            command += ["--seed", str(faults.seed)]
        if faults.outage:
            command.append("--outage")
        if self.events:
            command.append("--events")
        for name in ("event_duplicate", "event_drop", "event_delay", "event_delay_seconds"):
            command += [f"--{name.replace('_', '-')}", str(getattr(faults, name))]
        return command

    def start(self) -> LocalBatch:
        """Spawn the server and wait until /_poller/health answers; EmulatorError on failure."""
        if self._proc is not None:
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="poller-local-batch-"))
        # Files, not pipes: nobody reads the child's output after start, and a full pipe would block it.
        with (
            open(self._workdir / "stdout.log", "wb") as out,
            open(self._workdir / "stderr.log", "wb") as err,
        ):
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self._child_env(),
            )
        self.pid = self._proc.pid
        try:
            self.endpoint_url = self._await_ready_line(time.monotonic() + self.startup_timeout)
            self.port = int(self.endpoint_url.rsplit(":", 1)[1])
            self._await_health(time.monotonic() + self.startup_timeout)
            if self.events:
                self.events_url = self._await_ready_line(
                    time.monotonic() + self.startup_timeout, EVENTS_READY_PATTERN
                )
                self.events_queue_url = self._queue_url(resources.EVENTS_QUEUE)
        except EmulatorError:
            self.stop()
            raise
        logger.info("local Batch endpoint %s started (pid %s)", self.endpoint_url, self.pid)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server (it kills its jobs), SIGKILL after `timeout`; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout)
            self.pid = None
        self.events_queue_url = self.events_url = ""
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per Batch operation (``calls``, ``throttled``, ``errors``, ``incomplete``);
        with `events`, also ``events``: ``published``, ``duplicated``, ``dropped``, ``delayed``,
        ``failed``."""
        stats: dict[str, dict[str, int]] = self._admin("GET", "stats")
        return stats

    def calls(self, operation: str) -> int:
        """How many calls of `operation` (e.g. ``SubmitJob``) the endpoint received."""
        return int(self.stats()["calls"].get(operation, 0))

    def reset_stats(self) -> None:
        """Zero every counter."""
        self._admin("POST", "stats/reset")

    def set_faults(self, **changes: Any) -> None:
        """Change fault fields (see `FaultConfig`); ValueError naming a bad field."""
        self._admin("POST", "faults", changes)

    def faults(self) -> FaultConfig:
        """The fault configuration in force."""
        return FaultConfig.from_json(self._admin("GET", "faults"))

    def client(self, service: str = "batch", region: str | None = None, **config: Any) -> Any:
        """A boto3 client for this endpoint (dummy credentials), in `region` (default: the
        endpoint's; every region is served); `config` goes to botocore's Config.

        Any service moto serves works (``"logs"``, ``"sts"``, and ``"sqs"`` and ``"events"`` for
        the events).
        """
        return self._client(service, region or self.region, **config)

    def _client(self, service: str, region: str, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session()  # a session per client: sessions are not thread-safe
        served_apart = service in ("sqs", "events") and self.events_url
        return session.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.events_url if served_apart else self._require_url(),
            region_name=region,
            aws_access_key_id=resources.ACCESS_KEY_ID,
            aws_secret_access_key=resources.SECRET_ACCESS_KEY,
            config=Config(**config) if config else None,
        )

    def environ(self) -> dict[str, str]:
        """Environment variables pointing AWS SDKs in child processes at this endpoint (with
        `events`, its SQS and EventBridge too)."""
        url = self._require_url()
        env = {
            "AWS_ENDPOINT_URL_BATCH": url,
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": url,
            "AWS_ENDPOINT_URL_STS": url,  # AssumeRole: a profile's role_arn, another account
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": resources.ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": resources.SECRET_ACCESS_KEY,
        }
        if self.events:
            env["AWS_ENDPOINT_URL_SQS"] = self.events_url
            env["AWS_ENDPOINT_URL_EVENTBRIDGE"] = self.events_url
        return env

    def _queue_url(self, name: str) -> str:
        """A queue's URL, asked of the server's SQS (GetQueueUrl) in the ready-made region,
        where the server creates its queue whatever region this handle's clients use."""
        try:
            sqs = self._client("sqs", resources.REGION)
            url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except Exception as err:  # botocore's errors: the server is not what we expect
            raise EmulatorError(f"the events queue {name!r} is missing: {err}") from err
        return url

    def _require_url(self) -> str:
        if not self.endpoint_url:
            raise EmulatorError("the local Batch endpoint is not started")
        return self.endpoint_url

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The child imports the emulator from the same tree as this process, installed or not.
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        # A caller's test suite run under coverage with its subprocess patch would trace this
        # server too (measured: 20 % slower answers); the emulator is never the code measured.
        for name in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"):
            env.pop(name, None)
        return env

    def _await_ready_line(self, deadline: float, pattern: re.Pattern[str] = _READY_PATTERN) -> str:
        assert self._workdir is not None
        assert self._proc is not None
        stdout = self._workdir / "stdout.log"
        while time.monotonic() < deadline:
            match = pattern.search(stdout.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self._proc.poll() is not None:
                raise EmulatorError(
                    f"local Batch endpoint exited with code {self._proc.returncode}:\n{self._stderr_tail()}"
                )
            time.sleep(0.05)
        raise EmulatorError(
            f"local Batch endpoint not listening after {self.startup_timeout}s:\n{self._stderr_tail()}"
        )

    def _await_health(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                if self._admin("GET", "health").get("ok"):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise EmulatorError(
            f"local Batch endpoint not healthy after {self.startup_timeout}s:\n{self._stderr_tail()}"
        )

    def _stderr_tail(self, lines: int = 40) -> str:
        if self._workdir is None:
            return ""
        try:
            text = (self._workdir / "stderr.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _admin(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - our own http:// URL
            f"{self._require_url()}/_poller/{route}",
            data=data if data is not None else (b"" if method == "POST" else None),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            if err.code == 400:
                raise ValueError(json.loads(detail).get("message", detail)) from None
            raise
