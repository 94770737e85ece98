"""moto's Batch HTTP responses, hardened and wired to the local runtime.

`install` points moto's Batch URL routes at `LocalBatchResponse`, a subclass of moto's
`BatchResponse`:

- every request body is checked against the botocore model of its operation first, so
  malformed input (bad JSON, a missing ``jobName``, wrong types) gets a 400 ClientException
  instead of a moto crash (HTTP 500);
- SubmitJob passes ``retryStrategy``, ``propagateTags``, ``schedulingPriorityOverride`` and
  ``shareIdentifier`` on (moto drops them); DescribeJobs looks ids up directly; ListJobs
  paginates with ``nextToken``;
- every answer is put in AWS's wire format (`aws_batch_emulator.wire`);
- every call runs under the backend's lock, so the lifecycle threads see consistent state.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from functools import cache
from typing import Any, ClassVar

from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator
from moto.batch.exceptions import ClientException, InternalFailure
from moto.batch.responses import BatchResponse
from moto.core.common_types import TYPE_RESPONSE
from moto.core.exceptions import JsonRESTError
from moto.core.request import Request

from aws_batch_emulator.changes import ChangeListener
from aws_batch_emulator.runtime import BatchRuntime, LocalBatchBackend
from aws_batch_emulator.service_model import operation_for
from aws_batch_emulator.settings import RuntimeSettings
from aws_batch_emulator.wire import conform

logger = logging.getLogger(__name__)

LIST_JOBS_MAX_RESULTS = 1000
"""Largest (and default) page of ListJobs, as AWS."""
# Moto crashes with these on input that got past validation; they mean "bad request".
_INPUT_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


@cache
def _reads_json_body(operation: OperationModel) -> bool:
    """True when all of the operation's input is in the JSON body (none in the path or query)."""
    shape = operation.input_shape
    members = shape.members.values() if shape is not None else []
    return all(member.serialization.get("location") is None for member in members)


def _known_only(value: Any, shape: Shape) -> Any:
    """Drop members the model does not know (AWS ignores them) before type validation."""
    members = getattr(shape, "members", None)
    if shape.type_name == "structure" and isinstance(value, dict) and members is not None:
        return {
            key: _known_only(item, members[key]) for key, item in value.items() if key in members
        }
    if shape.type_name == "list" and isinstance(value, list):
        return [_known_only(item, shape.member) for item in value]  # type: ignore[attr-defined]
    if shape.type_name == "map" and isinstance(value, dict):
        return {key: _known_only(item, shape.value) for key, item in value.items()}  # type: ignore[attr-defined]
    return value


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        prefix, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if prefix == "offset" and int(offset) >= 0:
            return int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ClientException("The nextToken is invalid")


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


class LocalBatchResponse(BatchResponse):
    """moto's BatchResponse with validated input and the local runtime as backend."""

    runtime: ClassVar[BatchRuntime | None] = None
    """Set by `install`."""

    def __init__(self) -> None:
        super().__init__()
        self.request_params: dict[str, Any] = {}

    @property
    def batch_backend(self) -> LocalBatchBackend:
        """The local backend of the caller's account and region."""
        runtime = type(self).runtime
        if runtime is None:
            raise RuntimeError("aws_batch_emulator.api.install() was not called")
        return runtime.backend(self.current_account, self.region)

    def _dispatch(
        self, request: Request, full_url: str | None = None, headers: Any = None
    ) -> TYPE_RESPONSE:
        try:
            self.setup_class(request, full_url, headers)
        except ValueError as err:  # e.g. a body that is not UTF-8
            return self._error(ClientException(f"The request could not be read: {err}"))
        try:
            return self.call_action()
        except Exception:
            # A bug of ours or moto's: answer in Batch's JSON error shape, not Flask's HTML.
            logger.exception("local Batch endpoint failed on %s", self.path)
            return self._error(InternalFailure("Internal failure of the local Batch endpoint"))

    def call_action(self) -> TYPE_RESPONSE:
        """Validate the body, then run moto's action under the backend lock."""
        try:
            self.request_params = self._validated_params()
            with self.batch_backend.lock:
                status, headers, body = super().call_action()
            return status, headers, self._on_the_wire(status, body)
        except JsonRESTError as err:
            return self._error(err)
        except _INPUT_ERRORS as err:
            logger.info("rejected a malformed %s request: %r", self._get_action(), err)
            return self._error(ClientException(f"Invalid request: {err!r}"))

    def _error(self, err: JsonRESTError) -> TYPE_RESPONSE:
        # response_headers only exists once setup_class() got far enough.
        headers: dict[str, Any] = dict(getattr(self, "response_headers", {}))
        headers.update(err.get_headers())
        return err.code, headers, err.get_body()

    def _operation(self) -> OperationModel | None:
        return operation_for(self.method, self.path)

    def _on_the_wire(self, status: int, body: Any) -> Any:
        """A successful JSON answer conformed to the operation's output shape."""
        operation = self._operation()
        if status != 200 or operation is None or operation.output_shape is None:
            return body
        if not isinstance(body, str | bytes) or not body.strip():
            return body
        return json.dumps(conform(json.loads(body), operation.output_shape))

    def _validated_params(self) -> dict[str, Any]:
        body = self.body.decode() if isinstance(self.body, bytes) else (self.body or "")
        try:
            params = json.loads(body) if body.strip() else {}
        except ValueError:
            raise ClientException("The request body is not valid JSON") from None
        if not isinstance(params, dict):
            raise ClientException("The request body must be a JSON object")
        operation = self._operation()
        if (
            operation is not None
            and operation.input_shape is not None
            and _reads_json_body(operation)
        ):
            shape = operation.input_shape
            report = ParamValidator().validate(_known_only(params, shape), shape)
            if report.has_errors():
                raise ClientException(report.generate_report())
        return params

    def submitjob(self) -> str:
        """SubmitJob, with the members moto drops passed on."""
        params = self.request_params
        name, job_id, job_arn = self.batch_backend.submit_job(
            params["jobName"],
            params["jobDefinition"],
            params["jobQueue"],
            array_properties=params.get("arrayProperties") or {},
            depends_on=params.get("dependsOn"),
            container_overrides=params.get("containerOverrides"),
            eks_properties_override=params.get("eksPropertiesOverride"),
            timeout=params.get("timeout"),
            parameters=params.get("parameters"),
            tags=params.get("tags"),
            retry_strategy=params.get("retryStrategy"),
            propagate_tags=params.get("propagateTags"),
            scheduling_priority=params.get("schedulingPriorityOverride"),
            share_identifier=params.get("shareIdentifier"),
        )
        return json.dumps({"jobId": job_id, "jobName": name, "jobArn": job_arn})

    def describejobs(self) -> str:
        """DescribeJobs by id, at most 100 ids."""
        return json.dumps({"jobs": self.batch_backend.describe_jobs(self.request_params["jobs"])})

    def listjobs(self) -> str:
        """ListJobs with AWS's default status and nextToken pagination."""
        params = self.request_params
        jobs = self.batch_backend.list_jobs(
            job_queue_name=params.get("jobQueue"),
            array_job_id=params.get("arrayJobId"),
            job_status=params.get("jobStatus"),
            filters=params.get("filters") or None,
        )
        start = _decode_token(params.get("nextToken"))
        size = min(
            max(int(params.get("maxResults") or LIST_JOBS_MAX_RESULTS), 1), LIST_JOBS_MAX_RESULTS
        )
        result: dict[str, Any] = {
            "jobSummaryList": [job.describe_short() for job in jobs[start : start + size]]
        }
        if start + size < len(jobs):
            result["nextToken"] = _encode_token(start + size)
        return json.dumps(result)


def install(settings: RuntimeSettings, listener: ChangeListener | None = None) -> BatchRuntime:
    """Route moto's Batch API to a new local runtime. Call once, in the server process only.

    `listener` is told of every job status change after SUBMITTED (see `BatchRuntime`).
    """
    import moto.batch.urls as batch_urls

    runtime = BatchRuntime(settings, listener)
    LocalBatchResponse.runtime = runtime
    for path in list(batch_urls.url_paths):
        batch_urls.url_paths[path] = LocalBatchResponse.dispatch
    logger.info("local Batch runtime installed: %s", settings)
    return runtime
