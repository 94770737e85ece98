"""Create the ready-made resources of `aws_batch_emulator.resources` in a moto Batch backend."""

from __future__ import annotations

import json
import logging
from typing import Any

from moto.batch.models import BatchBackend
from moto.iam.exceptions import NotFoundException as IAMNotFoundException

from aws_batch_emulator import resources

logger = logging.getLogger(__name__)


def create_default_resources(backend: BatchBackend) -> None:
    """Create the compute environments, job queues and job definitions of `resources`: the
    UNMANAGED `resources.COMPUTE_ENVIRONMENT` and, for `resources.SPOT_JOB_QUEUE`, the MANAGED
    SPOT `resources.SPOT_COMPUTE_ENVIRONMENT` (moto checks its VPC resources and instance
    profile, taken from moto's EC2 and IAM of the same account and region)."""
    logger.debug("creating the ready-made Batch resources in %s", backend.region_name)
    role_arn = _ensure_service_role(backend)
    environment = backend.create_compute_environment(
        compute_environment_name=resources.COMPUTE_ENVIRONMENT,
        _type="UNMANAGED",
        state="ENABLED",
        compute_resources=None,  # type: ignore[arg-type]  # UNMANAGED environments have none
        service_role=role_arn,
    )
    _create_queue(backend, resources.JOB_QUEUE, environment.arn)
    spot = backend.create_compute_environment(
        compute_environment_name=resources.SPOT_COMPUTE_ENVIRONMENT,
        _type="MANAGED",
        state="ENABLED",
        compute_resources=_spot_compute_resources(backend),
        service_role=role_arn,
    )
    _create_queue(backend, resources.SPOT_JOB_QUEUE, spot.arn)
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


def _create_queue(backend: BatchBackend, name: str, environment_arn: str) -> None:
    # Integers, as CreateJobQueue's JSON carries them: moto annotates them as str, and describes
    # the queue with whatever it was given.
    backend.create_job_queue(
        queue_name=name,
        priority=1,  # type: ignore[arg-type]
        schedule_policy=None,
        state="ENABLED",
        compute_env_order=[{"order": 1, "computeEnvironment": environment_arn}],  # type: ignore[dict-item]
    )


def _spot_compute_resources(backend: BatchBackend) -> dict[str, Any]:
    """computeResources of a SPOT environment that moto accepts: the region's default VPC's
    first subnet and default security group, the ready-made instance profile, 0 vCPUs minimum
    (so moto launches no instance)."""
    ec2 = backend.ec2_backend
    vpc_id = ec2.default_vpc.id
    subnets = sorted(subnet.id for subnet in ec2.describe_subnets(filters={"vpc-id": [vpc_id]}))
    group = ec2.get_security_group_from_name("default", vpc_id=vpc_id)
    if not subnets or group is None:
        raise RuntimeError(f"moto's EC2 of {backend.region_name} has no default VPC to use")
    return {
        "type": "SPOT",
        "allocationStrategy": "SPOT_CAPACITY_OPTIMIZED",
        "bidPercentage": 100,
        "minvCpus": 0,
        "desiredvCpus": 0,
        "maxvCpus": 256,
        "instanceTypes": ["optimal"],
        "subnets": subnets[:1],
        "securityGroupIds": [group.id],
        "instanceRole": _ensure_instance_profile(backend),
    }


def _ensure_instance_profile(backend: BatchBackend) -> str:
    """The ready-made instance profile (with its role), created in IAM if missing."""
    iam = backend.iam_backend
    name = resources.INSTANCE_ROLE_NAME
    try:
        return str(iam.get_instance_profile(name).arn)
    except IAMNotFoundException:
        pass
    try:
        iam.get_role(name)
    except IAMNotFoundException:
        iam.create_role(
            role_name=name,
            assume_role_policy_document=json.dumps({"Version": "2012-10-17", "Statement": []}),
            path="/",
            permissions_boundary=None,
            description="Instance role of the poller local Spot compute environment",
            tags=[],
            max_session_duration=None,
        )
    return str(iam.create_instance_profile(name, "/", role_names=[name]).arn)


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
