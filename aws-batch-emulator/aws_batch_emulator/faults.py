"""Fault injection and call accounting for the local AWS Batch endpoint.

`FaultMiddleware` is a WSGI middleware placed in front of moto's application. For every
Batch API call (a request under ``/v1/``) it counts the call under its AWS operation name
and may reject it the way AWS does when throttling (HTTP 429), failing (HTTP 500) or
unreachable (HTTP 503). Rejected calls never reach moto, so they change no state.

A call is counted once its whole body has arrived, as AWS would count it: a client killed in the
middle of sending a request (a worker crash test does that) is counted under ``incomplete``
instead, and the request never reaches moto.

It also serves the admin routes under ``/_poller/``:

- ``GET /_poller/health`` -> ``{"ok": true}``
- ``GET /_poller/stats`` -> ``{"calls": {...}, "throttled": {...}, "errors": {...},
  "incomplete": {...}}``, plus the counters of each `StatsSection` under its key (``"events"``
  when the server publishes job state change events)
- ``POST /_poller/stats/reset``
- ``GET /_poller/faults`` / ``POST /_poller/faults`` (a JSON object of the fields to change)
"""

from __future__ import annotations

import io
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

from aws_batch_emulator.answers import error_answer, json_answer, respond
from aws_batch_emulator.service_model import BATCH_PREFIX, operations_by_route, route_segment

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/_poller/"
"""Path prefix of the admin routes served by `FaultMiddleware` itself."""

_THROTTLED = (429, "TooManyRequestsException", "Too Many Requests.")
_SERVER_ERROR = (500, "ServerException", "Injected server error.")
_UNAVAILABLE = (503, "ServiceUnavailable", "Service Unavailable.")
_DENIED_MESSAGE = "User is not authorized to perform: batch:{operation} (injected)"


_EVENT_SHARES = ("event_duplicate", "event_drop", "event_delay")


def _number(name: str, value: Any) -> float:
    # bool is an int in Python; a JSON `true` is never a meaningful rate or delay.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


@dataclass
class FaultConfig:
    """Faults applied to Batch API calls; every field can be changed while the server runs."""

    throttle: dict[str, float] = field(default_factory=dict)
    """Operation name (e.g. ``SubmitJob``, or ``*`` for every other one) -> allowed calls per
    second; each operation has its own token bucket whose burst is ``max(1, rate)``."""
    error_rate: float = 0.0
    """Share (0..1) of Batch calls answered HTTP 500 ``ServerException``."""
    latency: float = 0.0
    """Seconds added to every Batch call before it is answered."""
    outage: bool = False
    """When true every Batch call is answered HTTP 503 ``ServiceUnavailable``."""
    response_delay: dict[str, float] = field(default_factory=dict)
    """Operation name -> seconds to hold the answer *after* the call took effect: the window in
    which a client can die having acted on AWS without learning the result (crash tests)."""
    deny: list[str] = field(default_factory=list)
    """Operations answered HTTP 403 ``AccessDeniedException``, as for a role lacking them."""
    seed: int | None = None
    """Seed of the random generators that pick the calls failed by ``error_rate`` and the events
    hit by the ``event_*`` faults (each has its own generator, seeded alike)."""
    event_duplicate: float = 0.0
    """Share (0..1) of job state change events published twice (same ``id``, as EventBridge's
    at-least-once delivery does). Events apply only to a server started with ``--events``."""
    event_drop: float = 0.0
    """Share (0..1) of job state change events never published."""
    event_delay: float = 0.0
    """Share (0..1) of job state change events published late, so they arrive out of order."""
    event_delay_seconds: float = 5.0
    """A delayed event goes out after a random 0..this many seconds."""

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.throttle, dict):
            raise ValueError(
                f"throttle must be an object of operation -> rate, got {self.throttle!r}"
            )
        for operation, rate in self.throttle.items():
            if not isinstance(operation, str) or not operation:
                raise ValueError(f"throttle keys must be operation names, got {operation!r}")
            if _number(f"throttle.{operation}", rate) <= 0:
                raise ValueError(f"throttle.{operation} must be > 0, got {rate!r}")
        if not isinstance(self.response_delay, dict):
            raise ValueError(f"response_delay must be an object, got {self.response_delay!r}")
        for operation, delay in self.response_delay.items():
            if _number(f"response_delay.{operation}", delay) < 0:
                raise ValueError(f"response_delay.{operation} must be >= 0, got {delay!r}")
        if not 0.0 <= _number("error_rate", self.error_rate) <= 1.0:
            raise ValueError(f"error_rate must be within 0..1, got {self.error_rate!r}")
        if _number("latency", self.latency) < 0:
            raise ValueError(f"latency must be >= 0, got {self.latency!r}")
        for name in _EVENT_SHARES:
            value = getattr(self, name)
            if not 0.0 <= _number(name, value) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value!r}")
        if _number("event_delay_seconds", self.event_delay_seconds) < 0:
            raise ValueError(f"event_delay_seconds must be >= 0, got {self.event_delay_seconds!r}")
        if not isinstance(self.deny, list) or not all(
            isinstance(op, str) and op for op in self.deny
        ):
            raise ValueError(f"deny must be a list of operation names, got {self.deny!r}")
        if not isinstance(self.outage, bool):
            raise ValueError(f"outage must be a boolean, got {self.outage!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"seed must be an integer or null, got {self.seed!r}")

    def to_json(self) -> dict[str, Any]:
        """Return the configuration as a JSON-compatible dict (the shape `from_json` reads)."""
        return {
            "throttle": dict(self.throttle),
            "error_rate": self.error_rate,
            "latency": self.latency,
            "outage": self.outage,
            "response_delay": dict(self.response_delay),
            "deny": list(self.deny),
            "seed": self.seed,
            "event_duplicate": self.event_duplicate,
            "event_drop": self.event_drop,
            "event_delay": self.event_delay,
            "event_delay_seconds": self.event_delay_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Build a configuration from a JSON object; raise ValueError naming a bad field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"fault configuration must be a JSON object, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        values = dict(data)
        for name in ("throttle", "response_delay"):
            if isinstance(values.get(name), Mapping):
                values[name] = dict(values[name])
        for name in ("error_rate", "latency", *_EVENT_SHARES, "event_delay_seconds"):
            if name in values:
                values[name] = _number(name, values[name])
        return cls(**values)

    def changed(self, changes: Mapping[str, Any]) -> FaultConfig:
        """Return a copy with `changes` applied (validated like `from_json`)."""
        return FaultConfig.from_json({**self.to_json(), **changes})


class StatsSection(Protocol):
    """A part of the server with counters of its own, shown under a key of ``/_poller/stats``;
    it follows the fault configuration (the event publisher is one)."""

    def configure(self, config: FaultConfig) -> None:
        """Take a new fault configuration into account."""

    def stats(self) -> dict[str, int]:
        """The section's counters."""

    def reset_stats(self) -> None:
        """Zero the section's counters."""


class TokenBucket:
    """Classic token bucket: `rate` tokens per second, holding at most `burst` tokens."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()

    def take(self) -> bool:
        """Take one token if available; False means the call must be throttled."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class FaultMiddleware:
    """WSGI middleware: counts Batch calls, injects faults and serves ``/_poller/*``."""

    def __init__(
        self,
        app: WSGIApplication,
        config: FaultConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        sections: Mapping[str, StatsSection] | None = None,
    ) -> None:
        self._app = app
        self._sections = dict(sections or {})
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._operations = {route: op.name for route, op in operations_by_route().items()}
        self._calls: Counter[str] = Counter()
        self._throttled: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._incomplete: Counter[str] = Counter()
        self._config = FaultConfig()
        self._buckets: dict[str, TokenBucket] = {}
        self._random = random.Random()
        self.configure(config or FaultConfig())

    @property
    def config(self) -> FaultConfig:
        """The fault configuration in force."""
        with self._lock:
            return self._config

    def configure(self, config: FaultConfig) -> None:
        """Replace the fault configuration; buckets restart full, the RNG is reseeded if asked."""
        with self._lock:
            if config.throttle != self._config.throttle or not self._buckets:
                self._buckets = {
                    op: TokenBucket(rate, clock=self._clock) for op, rate in config.throttle.items()
                }
            if config.seed is not None and config.seed != self._config.seed:
                self._random.seed(config.seed)
            self._config = config
            for section in self._sections.values():  # under the lock: in the same order
                section.configure(config)
        logger.info("fault configuration: %s", config.to_json())

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per operation (calls received, throttled, failed by a fault, cut short), and
        each section's counters under its key."""
        with self._lock:
            counters = {
                "calls": dict(self._calls),
                "throttled": dict(self._throttled),
                "errors": dict(self._errors),
                "incomplete": dict(self._incomplete),
            }
        for key, section in self._sections.items():
            counters[key] = section.stats()
        return counters

    def reset_stats(self) -> None:
        """Zero every counter, the sections' too."""
        with self._lock:
            self._calls.clear()
            self._throttled.clear()
            self._errors.clear()
            self._incomplete.clear()
        for section in self._sections.values():
            section.reset_stats()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve admin routes, account and maybe reject Batch calls, pass the rest to moto."""
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(ADMIN_PREFIX):
            return self._admin(environ, start_response, path[len(ADMIN_PREFIX) :].rstrip("/"))
        if not path.startswith(BATCH_PREFIX):
            return self._app(environ, start_response)
        operation = self._operation(str(environ.get("REQUEST_METHOD", "GET")), path)
        body = _drain(environ)
        if body is None:  # the client went away mid-request: nothing to answer, nothing happened
            with self._lock:
                self._incomplete[operation] += 1
            return respond(start_response, json_answer(400, {"message": "incomplete request body"}))
        environ["wsgi.input"] = io.BytesIO(body)
        fault = self._decide(operation)
        if fault is None:
            answer = self._app(environ, start_response)
            delay = self._config.response_delay.get(operation, 0.0)
            if delay > 0:
                self._sleep(delay)
            return answer
        status, code, message = fault
        return respond(start_response, error_answer(status, code, message))

    def _operation(self, method: str, path: str) -> str:
        segment = route_segment(path)
        return self._operations.get((method.upper(), segment), segment)

    def _decide(self, operation: str) -> tuple[int, str, str] | None:
        """Count the call and return the fault to answer with, or None to pass it on."""
        with self._lock:
            self._calls[operation] += 1
            config = self._config
        if config.latency > 0:
            self._sleep(config.latency)
        with self._lock:
            fault = self._pick_fault(operation)
            if fault is _THROTTLED:
                self._throttled[operation] += 1
            elif fault is not None:
                self._errors[operation] += 1
        return fault

    def _pick_fault(self, operation: str) -> tuple[int, str, str] | None:
        if self._config.outage:
            return _UNAVAILABLE
        if operation in self._config.deny:
            return (403, "AccessDeniedException", _DENIED_MESSAGE.format(operation=operation))
        bucket = self._buckets.get(operation) or self._buckets.get("*")
        if bucket is not None and not bucket.take():
            return _THROTTLED
        if self._config.error_rate > 0 and self._random.random() < self._config.error_rate:
            return _SERVER_ERROR
        return None

    def _admin(
        self, environ: WSGIEnvironment, start_response: StartResponse, route: str
    ) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        handlers: dict[tuple[str, str], Callable[[WSGIEnvironment], tuple[int, Any]]] = {
            ("GET", "health"): lambda _: (200, {"ok": True}),
            ("GET", "stats"): lambda _: (200, self.stats()),
            ("POST", "stats/reset"): self._reset_route,
            ("GET", "faults"): lambda _: (200, self.config.to_json()),
            ("POST", "faults"): self._faults_route,
        }
        handler = handlers.get((method, route))
        if handler is None:
            known = any(known_route == route for _, known_route in handlers)
            _drain(environ)
            status = 405 if known else 404
            return respond(
                start_response, json_answer(status, {"message": f"{method} /_poller/{route}"})
            )
        status, body = handler(environ)
        return respond(start_response, json_answer(status, body))

    def _reset_route(self, environ: WSGIEnvironment) -> tuple[int, Any]:
        _drain(environ)
        self.reset_stats()
        return 200, self.stats()

    def _faults_route(self, environ: WSGIEnvironment) -> tuple[int, Any]:
        try:
            changes = json.loads(_drain(environ) or b"{}")
            self.configure(self.config.changed(changes))
        except ValueError as err:  # json.JSONDecodeError is a ValueError too
            return 400, {"message": str(err)}
        return 200, self.config.to_json()


def _drain(environ: WSGIEnvironment) -> bytes | None:
    """Read the request body (so a kept-alive connection is left at the next request); None
    when the client closed the connection before sending all of it."""
    stream = environ["wsgi.input"]
    try:
        if environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream
            whole: bytes = stream.read()
            return whole
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data: bytes = stream.read(length) if length > 0 else b""
    except ValueError:
        return b""
    except OSError:  # werkzeug raises it for a chunked body cut short
        return None
    return data if len(data) == length else None
