"""AWS API calls counted by outcome, per worker, and added to the fleet's counters in Redis.

botocore tells every call's end (``after-call`` / ``after-call-error`` events, once per call
after its own retries). Counts gather in memory and reach Redis in one pipelined round trip at
most ``FLUSH_SECONDS`` after the first unflushed call, never one round trip per call; a worker
killed with -9 loses at most that last second of call counts (job counts are never lost: they
are written with the record change they count).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any, Protocol

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
# Error codes AWS uses for "slow down" (botocore's standard mode retries these too): the one
# list the budget (poller.aws.batch) and the call counts here classify throttles by
THROTTLING_CODES = frozenset(
    {"TooManyRequestsException", "ThrottlingException", "Throttling", "RequestLimitExceeded"}
)
# What poller asks of AWS Batch, and how a call can end: each pair's series exists from the start
OPERATIONS = ("SubmitJob", "DescribeJobs", "ListJobs", "TerminateJob")
OUTCOMES = ("ok", "throttled", "server_error", "client_error")


class CallSink(Protocol):
    """Where counts go (the job store's counters)."""

    def count_aws_calls(self, calls: dict[tuple[str, str, str], int]) -> None:
        """Add calls by (operation, outcome, region)."""


def outcome(status: int | None, code: str | None) -> str:
    """``ok``, ``throttled``, ``server_error`` (5xx or no answer) or ``client_error``."""
    if status is not None and 200 <= status < 300:
        return "ok"
    if status == 429 or code in THROTTLING_CODES:
        return "throttled"
    if status is None or status >= 500:
        return "server_error"
    return "client_error"


class CallCounter:
    """Counts one process's AWS calls; flushes them to ``sink`` within a second."""

    def __init__(self, sink: CallSink) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, str, str]] = Counter()
        self._timer: threading.Timer | None = None

    def attach(self, client: Any) -> None:
        """Count every call ``client`` (a boto3 client) makes, under its region."""
        region = str(client.meta.region_name or "")

        def after_call(http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
            code = (parsed or {}).get("Error", {}).get("Code")
            status = getattr(http_response, "status_code", None)
            self.record(model.name, outcome(status, code), region)

        def after_call_error(event_name: str, **_: Any) -> None:
            # No answer (a timeout, a reset connection); the event is after-call-error.<svc>.<op>
            self.record(event_name.rsplit(".", 1)[-1], "server_error", region)

        client.meta.events.register("after-call", after_call)
        client.meta.events.register("after-call-error", after_call_error)

    def record(self, operation: str, result: str, region: str = "") -> None:
        """Count one call; schedule a flush if none is pending."""
        with self._lock:
            self._pending[(operation, result, region)] += 1
            if self._timer is None:
                self._timer = threading.Timer(FLUSH_SECONDS, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Add the pending counts to the sink now (kept for the next flush if that fails)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._timer = None
        if not pending:
            return
        try:
            self._sink.count_aws_calls(dict(pending))
        except Exception:  # Redis away for a moment: keep them for the next flush
            logger.debug("could not flush AWS call counts", exc_info=True)
            with self._lock:
                self._pending.update(pending)
