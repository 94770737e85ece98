"""The only module that talks to AWS Batch. AWS's camelCase stays inside it.

boto3 finds the region, credentials and endpoint (``AWS_ENDPOINT_URL_BATCH``) through its own
chain. botocore's ``standard`` retry mode absorbs short bursts of throttling and 5xx; what is left
is raised as :class:`BatchUnavailable` (try again later), while a client error on submit is
:class:`SubmitRejected` (do not try again).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    TokenRetrievalError,
)
from botocore.validate import ParamValidator

from poller.aws.aws_calls import THROTTLING_CODES, CallCounter
from poller.aws.batch_wire import MalformedInput, job_view
from poller.errors import (
    BatchMisconfigured,
    BatchRequestError,
    BatchThrottled,
    BatchUnavailable,
    InvalidJobSpec,
    PollerError,
    SubmitRejected,
)
from poller.models import DESCRIBE_PAGE, TRACKING_TAG, BatchJobView, JobSpec

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient as Boto3BatchClient

logger = logging.getLogger(__name__)


# snake_case JobSpec field -> SubmitJob parameter
_SUBMIT_FIELDS = {
    "job_name": "jobName",
    "job_queue": "jobQueue",
    "job_definition": "jobDefinition",
    "parameters": "parameters",
    "container_overrides": "containerOverrides",
    "node_overrides": "nodeOverrides",
    "array_properties": "arrayProperties",
    "depends_on": "dependsOn",
    "retry_strategy": "retryStrategy",
    "timeout": "timeout",
    "tags": "tags",
    "propagate_tags": "propagateTags",
    "share_identifier": "shareIdentifier",
    "scheduling_priority_override": "schedulingPriorityOverride",
    "ecs_properties_override": "ecsPropertiesOverride",
    "eks_properties_override": "eksPropertiesOverride",
}


def submit_request(spec: JobSpec, extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Map a JobSpec to SubmitJob's keyword arguments, leaving out fields that are not set."""
    request = {
        aws_name: getattr(spec, field)
        for field, aws_name in _SUBMIT_FIELDS.items()
        if getattr(spec, field) is not None
    }
    if extra_tags:
        request["tags"] = {**request.get("tags", {}), **extra_tags}
    return request


@lru_cache(maxsize=1)
def _submit_job_shape() -> Any:
    """SubmitJob's input shape from botocore's model of the Batch API (no client, no region)."""
    model = botocore.session.get_session().get_service_model("batch")
    return model.operation_model("SubmitJob").input_shape


MAX_REQUEST_BYTES = 30 * 1024  # AWS Batch's limit on a SubmitJob request


def check_request(spec: JobSpec) -> None:
    """Check the SubmitJob request against AWS's own API model, nested values included.

    A key AWS does not know (``container_overrides={"memroy": 4}``) or a value of the wrong
    type raises InvalidJobSpec naming the field, before anything is sent.
    """
    request = submit_request(spec, {TRACKING_TAG: "0" * 36})  # poller's tag, as sent
    size = len(json.dumps(request).encode())
    if size > MAX_REQUEST_BYTES:
        largest = max(_SUBMIT_FIELDS, key=lambda f: len(json.dumps(getattr(spec, f), default=str)))
        raise InvalidJobSpec(
            f"invalid job spec: {largest}: the SubmitJob request would be {size} bytes; "
            f"AWS Batch accepts at most {MAX_REQUEST_BYTES}",
            field=largest,
        )
    report = ParamValidator().validate(request, _submit_job_shape())
    if not report.has_errors():
        return
    # botocore quotes a wrong-typed value: it may be an environment value, never shown
    first = re.sub(r", value: .*?, type:", ", type:", report.generate_report().splitlines()[0])
    # botocore names the parameter's path: "... parameter in containerOverrides: ..." or
    # "... for parameter containerOverrides.environment[0].value, ..."
    path = re.search(r"parameter (?:in )?([A-Za-z]+)", first)
    top = path.group(1) if path else ""
    field = next((name for name, aws in _SUBMIT_FIELDS.items() if aws == top), "spec")
    raise InvalidJobSpec(f"invalid job spec: {field}: {first}", field=field)


T = TypeVar("T")


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (DescribeJobs' pages of 100 ids)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# AWS's answers to a caller it does not accept: credentials, signature or permissions.
AUTH_ERROR_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
# botocore's errors for a configuration that cannot make a signed call at all.
CONFIGURATION_ERRORS = (
    NoRegionError,
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    TokenRetrievalError,
)


def _is_auth_error(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code", "") in AUTH_ERROR_CODES


def _is_throttling(err: ClientError) -> bool:
    code = err.response.get("Error", {}).get("Code", "")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in THROTTLING_CODES or status == 429


def _is_transient(err: ClientError) -> bool:
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return _is_throttling(err) or status >= 500


@contextmanager
def _translated_errors(
    operation: str, refused: tuple[type[PollerError], str] | None = None
) -> Iterator[None]:
    """Translate boto3 errors at the boundary: throttling -> BatchThrottled; credentials,
    region or permissions -> BatchMisconfigured; 5xx or no answer -> BatchUnavailable (try again
    later); any other client error -> ``refused`` (its class and message) when given, else
    BatchUnavailable (read-only calls are simply retried)."""
    try:
        yield
    except ClientError as err:
        if _is_throttling(err):
            raise BatchThrottled(f"{operation}: {_error_text(err)}") from err
        if _is_auth_error(err):
            raise BatchMisconfigured(f"{operation}: {_error_text(err)}") from err
        if refused is not None and not _is_transient(err):
            error_class, message = refused
            raise error_class(f"{message}: {_error_text(err)}") from err
        raise BatchUnavailable(f"{operation}: {_error_text(err)}") from err
    except CONFIGURATION_ERRORS as err:
        raise BatchMisconfigured(f"{operation}: {type(err).__name__}: {err}") from err
    except BotoCoreError as err:
        raise BatchUnavailable(f"{operation}: {err}") from err


def _error_text(err: ClientError) -> str:
    error = err.response.get("Error", {})
    return f"{error.get('Code', 'ClientError')}: {error.get('Message', str(err))}"


class BatchClient:
    """A small typed wrapper around boto3's Batch client, translating its errors (the core's
    :class:`poller.core.ports.Batch`)."""

    def __init__(self, client: Boto3BatchClient, submit_client: Boto3BatchClient | None = None):
        self._client = client
        self._submit_client = submit_client or client
        self.account: str | None = None  # the account jobs go to, once a job's ARN told it

    @classmethod
    def create(
        cls,
        max_attempts: int = 3,
        read_timeout: float = 30.0,
        counter: CallCounter | None = None,
        session: boto3.session.Session | None = None,
        **client_kwargs: Any,
    ) -> BatchClient:
        """Create clients from boto3's usual configuration chain (or ``session``'s).

        Reads and terminations use botocore's standard retries. SubmitJob gets a client that
        never retries by itself: SubmitJob has no idempotency token, so a retry after a lost
        answer could create a second job; poller retries it after looking for the first.
        """
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=5,
            read_timeout=read_timeout,
        )
        once = config.merge(Config(retries={"mode": "standard", "max_attempts": 1}))
        make = (session or boto3.session.Session()).client
        clients = (
            make("batch", config=config, **client_kwargs),
            make("batch", config=once, **client_kwargs),
        )
        if counter is not None:  # the fleet's poller_aws_calls_total
            for client in clients:
                counter.attach(client)
        return cls(*clients)

    @property
    def endpoint_url(self) -> str:
        """The endpoint boto3 resolved (AWS's, or AWS_ENDPOINT_URL_BATCH's)."""
        return str(self._client.meta.endpoint_url)

    @property
    def region(self) -> str:
        """The region boto3 resolved."""
        return str(self._client.meta.region_name)

    def ping(self) -> None:
        """Make one cheap call (DescribeJobQueues); BatchUnavailable when it fails."""
        with _translated_errors("DescribeJobQueues"):
            self._client.describe_job_queues(maxResults=1)

    def submit(self, spec: JobSpec, extra_tags: dict[str, str] | None = None) -> str:
        """Submit the job and return its Batch job id."""
        request = submit_request(spec, extra_tags)
        refused = f"AWS Batch refused job {spec.job_name!r}"
        with _translated_errors("SubmitJob", refused=(SubmitRejected, refused)):
            response = self._submit_client.submit_job(**request)
        arn = response.get("jobArn", "").split(":")  # arn:aws:batch:<region>:<account>:job/<id>
        self.account = arn[4] if len(arn) > 5 else self.account
        return response["jobId"]

    def describe(self, job_ids: Iterable[str]) -> dict[str, BatchJobView]:
        """Describe jobs, 100 ids per call; ids Batch does not know are absent from the result."""
        views: dict[str, BatchJobView] = {}
        for item in self._describe_raw(job_ids):
            try:
                view = job_view(item)
            except MalformedInput as err:  # set aside alone: its job waits, as if not found
                logger.warning("DescribeJobs item ignored, not a job detail: %.300s", err)
                continue
            views[view.job_id] = view
        return views

    def _describe_raw(self, job_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """DescribeJobs' items for these ids, one call per 100 distinct ids."""
        for page in chunks(list(dict.fromkeys(job_ids)), DESCRIBE_PAGE):
            with _translated_errors("DescribeJobs"):
                jobs = self._client.describe_jobs(jobs=page)["jobs"]
            yield from (dict(job) for job in jobs)

    def find_by_name(self, job_queue: str, job_name: str) -> list[str]:
        """Return the ids of the jobs in ``job_queue`` named ``job_name`` (any status)."""
        ids: list[str] = []
        with _translated_errors("ListJobs"):
            paginator = self._client.get_paginator("list_jobs")
            pages = paginator.paginate(
                jobQueue=job_queue, filters=[{"name": "JOB_NAME", "values": [job_name]}]
            )
            for page in pages:
                ids.extend(item["jobId"] for item in page["jobSummaryList"])
        return ids

    def find_tagged(
        self, job_queue: str, job_name: str, tag: str, value: str, exclude: Collection[str] = ()
    ) -> str | None:
        """The id of the job in ``job_queue`` named ``job_name`` whose tag ``tag`` is ``value``,
        other than those in ``exclude`` (a resubmitted job's earlier Batch jobs).

        How a retried submission finds the job an earlier attempt created before it died:
        names are not unique, poller's tracking-id tag is.
        """
        for job in self._describe_raw(self.find_by_name(job_queue, job_name)):
            if (job.get("tags") or {}).get(tag) == value and job["jobId"] not in exclude:
                return str(job["jobId"])
        return None

    def terminate(self, job_id: str, reason: str) -> None:
        """Stop a job with TerminateJob, which AWS also applies to jobs not yet STARTING (cancel).

        CancelJob is not used: it is a silent no-op once a job reached STARTING, a race that
        would leave a cancelled job running.
        """
        refused = f"AWS Batch refused to stop {job_id}"
        with _translated_errors(f"TerminateJob {job_id}", refused=(BatchRequestError, refused)):
            self._client.terminate_job(jobId=job_id, reason=reason)
