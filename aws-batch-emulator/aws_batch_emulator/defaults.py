"""Create the ready-made resources of `aws_batch_emulator.resources` in a moto Batch backend."""

from __future__ import annotations

import json
import logging

from moto.batch.models import BatchBackend
from moto.iam.exceptions import NotFoundException as IAMNotFoundException

from aws_batch_emulator import resources

logger = logging.getLogger(__name__)


def create_default_resources(backend: BatchBackend) -> None:
    """Create the compute environment, job queue and job definitions of `resources`."""
    logger.debug("creating the ready-made Batch resources in %s", backend.region_name)
    role_arn = _ensure_service_role(backend)
    environment = backend.create_compute_environment(
        compute_environment_name=resources.COMPUTE_ENVIRONMENT,
        _type="UNMANAGED",
        state="ENABLED",
        compute_resources=None,  # type: ignore[arg-type]  # UNMANAGED environments have none
        service_role=role_arn,
    )
    # Integers, as CreateJobQueue's JSON carries them: moto annotates them as str, and describes
    # the queue with whatever it was given.
    backend.create_job_queue(
        queue_name=resources.JOB_QUEUE,
        priority=1,  # type: ignore[arg-type]
        schedule_policy=None,
        state="ENABLED",
        compute_env_order=[{"order": 1, "computeEnvironment": environment.arn}],  # type: ignore[dict-item]
    )
    for spec in resources.JOB_DEFINITIONS:
        backend.register_job_definition(
            def_name=spec.name,
            parameters=dict(spec.parameters),
            _type="container",
            tags={},
            retry_strategy=None,  # type: ignore[arg-type]  # moto accepts None (no strategy)
            container_properties={
                "image": spec.image,
                "command": list(spec.command),
                "resourceRequirements": [
                    {"type": "VCPU", "value": spec.vcpus},
                    {"type": "MEMORY", "value": spec.memory},
                ],
            },
            node_properties=None,
            eks_properties=None,
            timeout=None,  # type: ignore[arg-type]  # moto accepts None (no timeout)
            platform_capabilities=["EC2"],
            propagate_tags=False,
        )


def _ensure_service_role(backend: BatchBackend) -> str:
    """The ready-made service role, created in the IAM where the backend looks it up."""
    iam = backend.iam_backend
    try:
        return str(iam.get_role(resources.SERVICE_ROLE_NAME).arn)
    except IAMNotFoundException:
        pass
    role = iam.create_role(
        role_name=resources.SERVICE_ROLE_NAME,
        assume_role_policy_document=json.dumps({"Version": "2012-10-17", "Statement": []}),
        path="/",
        permissions_boundary=None,
        description="Service role of the poller local Batch compute environment",
        tags=[],
        max_session_duration=None,
    )
    return str(role.arn)
