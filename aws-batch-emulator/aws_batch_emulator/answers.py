"""HTTP answers in AWS Batch's JSON shape, for WSGI.

An error is ``{"__type": <code>, "message": ...}`` with its code in the ``X-Amzn-ErrorType``
header, as botocore reads Batch's (restJson1) errors. Every answer carries a request id.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

_HTTP_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Answer(NamedTuple):
    """An HTTP answer; ``Content-Length`` is added by `respond`."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def json_answer(status: int, body: Any, error_type: str | None = None) -> Answer:
    """`body` as JSON, with a new request id (and `error_type` as ``X-Amzn-ErrorType``)."""
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    if error_type is not None:
        headers.append(("X-Amzn-ErrorType", error_type))
    return Answer(status, headers, json.dumps(body).encode())


def error_answer(status: int, code: str, message: str) -> Answer:
    """An AWS Batch error."""
    return json_answer(status, {"__type": code, "message": message}, code)


def respond(start_response: StartResponse, answer: Answer) -> list[bytes]:
    """Send `answer` through WSGI."""
    reason = _HTTP_REASONS.get(answer.status, "Error")
    length = ("Content-Length", str(len(answer.body)))
    start_response(f"{answer.status} {reason}", [*answer.headers, length])
    return [answer.body]
