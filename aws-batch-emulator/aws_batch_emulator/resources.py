"""Names and shapes of the resources the local Batch endpoint creates when it starts.

This module is plain data (no moto import) so clients can use the names cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REGION = "us-east-1"
"""Region the ready-made resources live in (and the region clients should use)."""

ACCOUNT_ID = "123456789012"
"""Account moto assigns to requests signed with the dummy credentials below."""

ACCESS_KEY_ID = "testing"
"""Dummy access key id for clients of the local endpoint (moto accepts any)."""

SECRET_ACCESS_KEY = "testing"  # noqa: S105 - a well-known dummy value, not a secret
"""Dummy secret access key for clients of the local endpoint."""

SERVICE_ROLE_NAME = "poller-local-batch-service-role"
"""IAM role (in moto's IAM backend) that the compute environment names as its service role."""

COMPUTE_ENVIRONMENT = "poller-local-ce"
"""UNMANAGED compute environment backing the job queue; needs no EC2 setup in moto."""

JOB_QUEUE = "poller-local"
"""Job queue to submit to; its jobs run on the local runtime (process or simulated)."""

SPOT_COMPUTE_ENVIRONMENT = "poller-local-spot-ce"
"""MANAGED compute environment of type SPOT (0 vCPUs minimum, so moto launches no instance)."""

SPOT_JOB_QUEUE = "poller-local-spot"
"""Job queue on `SPOT_COMPUTE_ENVIRONMENT`: its jobs run on the local runtime like `JOB_QUEUE`'s,
and only they can lose their host (job parameter ``sim_failure=host_terminated``)."""

INSTANCE_ROLE_NAME = "poller-local-ecs-instance-role"
"""IAM role, and instance profile holding it, that `SPOT_COMPUTE_ENVIRONMENT` names as its
``instanceRole`` (moto checks that the instance profile exists)."""

IMAGE = "local/sh"
"""Container image recorded in the job definitions; the local runtime never pulls it."""

LOG_GROUP = "/aws/batch/job"
"""CloudWatch Logs group receiving job output, as on AWS Batch."""

SLEEP_JOB_DEFINITION = "poller-sleep"
"""Job definition that prints, sleeps ``Ref::seconds`` and exits with ``Ref::exit_code``."""

ECHO_JOB_DEFINITION = "poller-echo"
"""Job definition that echoes ``Ref::message``."""


@dataclass(frozen=True)
class JobDefinitionSpec:
    """A container job definition registered at start."""

    name: str
    """Job definition name."""
    command: tuple[str, ...]
    """Container command; ``Ref::<name>`` placeholders are filled from parameters."""
    parameters: dict[str, str] = field(default_factory=dict)
    """Default parameter values (submit parameters override them)."""
    image: str = IMAGE
    """Image recorded in the definition."""
    vcpus: str = "1"
    """vCPU resource requirement (recorded only)."""
    memory: str = "512"
    """Memory resource requirement in MiB (recorded only)."""


SLEEP = JobDefinitionSpec(
    name=SLEEP_JOB_DEFINITION,
    command=(
        "sh",
        "-c",
        "echo starting Ref::seconds; sleep Ref::seconds; echo finished; exit Ref::exit_code",
    ),
    parameters={"seconds": "1", "exit_code": "0"},
)
"""The ``poller-sleep`` job definition."""

ECHO = JobDefinitionSpec(
    name=ECHO_JOB_DEFINITION,
    command=("echo", "Ref::message"),
    parameters={"message": "hello"},
)
"""The ``poller-echo`` job definition."""

JOB_DEFINITIONS = (SLEEP, ECHO)
"""Every job definition registered at start."""

RUNTIMES = ("process", "simulated")
"""Job runtimes: run each job's command as a subprocess, or simulate it from parameters."""

EVENTS_QUEUE = "poller-local-events"
"""SQS queue receiving the Batch job state change events (servers started with ``--events``)."""

EVENTS_RULE = "poller-local-batch-events"
"""EventBridge rule, on the default bus, sending Batch job state changes to `EVENTS_QUEUE`."""

EVENTS_TARGET_ID = "poller-local-events-queue"
"""Id of `EVENTS_QUEUE` among the targets of `EVENTS_RULE`."""

EVENT_BUS = "default"
"""The event bus AWS Batch publishes to, and the one `EVENTS_RULE` is on."""

EVENT_SOURCE = "aws.batch"
"""``source`` of every event AWS Batch publishes."""

EVENT_DETAIL_TYPE = "Batch Job State Change"
"""``detail-type`` of a job state change event."""

EVENTS_PATTERN = {"source": [EVENT_SOURCE], "detail-type": [EVENT_DETAIL_TYPE]}
"""Event pattern of `EVENTS_RULE`: every job state change."""
