"""The Batch API of the local endpoint: a WSGI app in front of moto's Batch app.

Every Batch call (a request under ``/v1/``) comes to `BatchApi`, which

- finds its operation in botocore's model from method and path (none: HTTP 404);
- checks the body against the operation's input shape (`aws_batch_emulator.validation`), so
  malformed input gets a 400 ClientException instead of a crash;
- runs it under the lock of the caller's backend (`aws_batch_emulator.caller`), so the lifecycle
  threads see consistent state;
- answers the job operations itself (`aws_batch_emulator.operations`), and hands the others
  (compute environments, queues, definitions, scheduling policies, tags) to moto's Batch app,
  which finds the same local backend in its registry (`BatchRuntime.backend` puts it there);
- puts every successful JSON answer in AWS's wire format (`aws_batch_emulator.wire`), and answers
  every error in Batch's JSON shape (`aws_batch_emulator.answers`): the caller's fault as HTTP 400
  (ours or moto's, `aws_batch_emulator.errors`), a failure of the emulator or of moto as HTTP 500
  ``InternalFailure``, never an HTML page.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from botocore.model import OperationModel

from aws_batch_emulator.answers import Answer, error_answer, json_answer, respond
from aws_batch_emulator.caller import caller
from aws_batch_emulator.errors import client_error
from aws_batch_emulator.operations import OPERATIONS
from aws_batch_emulator.runtime import BatchRuntime
from aws_batch_emulator.service_model import operation_for
from aws_batch_emulator.validation import request_params
from aws_batch_emulator.wire import conform

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

# Raised by code handed input that got past validation (moto's mostly): the input's fault.
_INPUT_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


class BatchApi:
    """WSGI app serving the Batch API: the job operations itself, the others through moto's
    Batch app (`moto_batch`, which must raise its errors rather than render them)."""

    def __init__(self, runtime: BatchRuntime, moto_batch: WSGIApplication) -> None:
        self._runtime = runtime
        self._moto_batch = moto_batch

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method, path = str(environ.get("REQUEST_METHOD", "GET")), str(environ.get("PATH_INFO"))
        try:
            answer = self._answer(environ, method, path)
        except Exception:  # a bug of ours or moto's: Batch's JSON error shape, not Flask's HTML
            logger.exception("local Batch endpoint failed on %s %s", method, path)
            answer = error_answer(500, "InternalFailure", "Internal failure of the local endpoint")
        return respond(start_response, answer)

    def _answer(self, environ: WSGIEnvironment, method: str, path: str) -> Answer:
        operation = operation_for(method, path)
        if operation is None:
            return error_answer(404, "UnknownOperationException", f"{method} {path}")
        handler = OPERATIONS.get(operation.name)
        try:
            body = _read_body(environ)
            params = request_params(operation, body)
            backend = self._runtime.backend(*caller(environ))
            with backend.lock:
                outcome = self._moto(environ, body) if handler is None else handler(backend, params)
        except Exception as err:
            refusal = _refusal(operation, err)
            if refusal is None:
                raise
            return refusal
        if isinstance(outcome, Answer):
            return _conformed(operation, outcome)
        shape = operation.output_shape
        return json_answer(200, outcome if shape is None else conform(outcome, shape))

    def _moto(self, environ: WSGIEnvironment, body: bytes) -> Answer:
        """moto's answer to the request."""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        # The body is JSON (validated), whatever the client called it: moto would take a form
        # (curl's default type) for another protocol and find no operation.
        environ["CONTENT_TYPE"] = "application/json"
        started: list[tuple[str, list[tuple[str, str]]]] = []
        written: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], object]:
            started.append((status, headers))
            return written.append

        chunks = self._moto_batch(environ, start_response)
        try:
            written.extend(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        status, headers = started[-1]
        kept = [(name, value) for name, value in headers if name.lower() != "content-length"]
        return Answer(int(status.split(" ", 1)[0]), kept, b"".join(written))


def _read_body(environ: WSGIEnvironment) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream
        whole: bytes = stream.read()
        return whole
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data: bytes = stream.read(length) if length > 0 else b""
    return data


def _refusal(operation: OperationModel, err: Exception) -> Answer | None:
    """The answer to a request that failed by the caller's fault; None for any other failure."""
    found = client_error(err)
    if found is not None:
        return error_answer(400, *found)
    if isinstance(err, _INPUT_ERRORS):
        logger.info("rejected a malformed %s request: %r", operation.name, err)
        return error_answer(400, "ClientException", f"Invalid request: {err!r}")
    return None


def _conformed(operation: OperationModel, answer: Answer) -> Answer:
    """moto's successful JSON answer conformed to the operation's output shape."""
    shape = operation.output_shape
    if answer.status != 200 or shape is None or not answer.body.strip():
        return answer
    body = json.dumps(conform(json.loads(answer.body), shape)).encode()
    headers = [(name, value) for name, value in answer.headers if name.lower() != "content-type"]
    return Answer(200, [*headers, ("Content-Type", "application/json")], body)
