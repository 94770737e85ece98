"""The job operations, answered by the emulator itself from the local backend.

moto's Batch handlers drop SubmitJob's ``retryStrategy``, ``propagateTags``,
``schedulingPriorityOverride`` and ``shareIdentifier``, and ListJobs has no pagination there.
Every operation on jobs is answered here, so jobs are the emulator's alone; moto answers for the
resources they run on (`aws_batch_emulator.api`).

Each function takes the caller's backend, with its lock held, and the validated request
(`aws_batch_emulator.validation`), and returns the answer before `aws_batch_emulator.wire.conform`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from aws_batch_emulator.errors import ClientException
from aws_batch_emulator.runtime import LocalBatchBackend

LIST_JOBS_MAX_RESULTS = 1000
"""Largest (and default) page of ListJobs, as AWS."""

Operation = Callable[[LocalBatchBackend, dict[str, Any]], dict[str, Any]]


def submit_job(backend: LocalBatchBackend, params: dict[str, Any]) -> dict[str, Any]:
    """SubmitJob, every member passed on."""
    name, job_id, job_arn = backend.submit_job(
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
    return {"jobId": job_id, "jobName": name, "jobArn": job_arn}


def describe_jobs(backend: LocalBatchBackend, params: dict[str, Any]) -> dict[str, Any]:
    """DescribeJobs by id, at most 100 ids."""
    return {"jobs": backend.describe_jobs(params["jobs"])}


def list_jobs(backend: LocalBatchBackend, params: dict[str, Any]) -> dict[str, Any]:
    """ListJobs with AWS's default status and nextToken pagination."""
    jobs = backend.list_jobs(
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
    return result


def cancel_job(backend: LocalBatchBackend, params: dict[str, Any]) -> dict[str, Any]:
    """CancelJob."""
    backend.cancel_job(params["jobId"], params["reason"])
    return {}


def terminate_job(backend: LocalBatchBackend, params: dict[str, Any]) -> dict[str, Any]:
    """TerminateJob."""
    backend.terminate_job(params["jobId"], params["reason"])
    return {}


OPERATIONS: dict[str, Operation] = {
    "SubmitJob": submit_job,
    "DescribeJobs": describe_jobs,
    "ListJobs": list_jobs,
    "CancelJob": cancel_job,
    "TerminateJob": terminate_job,
}
"""The operations answered here, by botocore operation name."""


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
