"""A job's ``container`` as DescribeJobs shows it: the definition's, with the job's overrides.

AWS builds a job's container detail from its job definition's ``containerProperties`` (image,
volumes, secrets, ...) and replaces what SubmitJob's ``containerOverrides`` give: command,
environment, instance type and resource requirements (a VCPU or MEMORY override replaces the
definition's requirement of that type).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from aws_batch_emulator.wire import whole_number

LEGACY_MEMBERS = {"VCPU": "vcpus", "MEMORY": "memory"}
"""Resource types and the deprecated integer members (``vcpus``, ``memory``) that mirror them."""


def _requirements_of(properties: Mapping[str, Any]) -> dict[str, str]:
    """Resource type -> value, the deprecated members counting below resourceRequirements."""
    found = {
        kind: str(properties[member])
        for kind, member in LEGACY_MEMBERS.items()
        if properties.get(member) is not None
    }
    for item in properties.get("resourceRequirements") or []:
        if isinstance(item, Mapping) and "type" in item and "value" in item:
            found[str(item["type"])] = str(item["value"])
    return found


def resource_requirements(
    definition: Mapping[str, Any], overrides: Mapping[str, Any]
) -> list[dict[str, str]]:
    """The job's resourceRequirements: the definition's, with each overridden type replaced."""
    merged = {**_requirements_of(definition), **_requirements_of(overrides)}
    return [{"type": kind, "value": value} for kind, value in merged.items()]


def container_detail(
    base: Mapping[str, Any], definition: Mapping[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Complete `base` (command, environment, log stream: already the job's own) as AWS does.

    Members of the definition `base` lacks are copied (``image`` among them); resource
    requirements are merged with the overrides, and ``vcpus``/``memory`` are given as the
    integers the API model declares, from the merged requirements.
    """
    detail = dict(base)
    for key, value in definition.items():
        detail.setdefault(key, copy.deepcopy(value))
    if overrides.get("instanceType"):
        detail["instanceType"] = overrides["instanceType"]
    requirements = resource_requirements(definition, overrides)
    if requirements:
        detail["resourceRequirements"] = requirements
    for kind, member in LEGACY_MEMBERS.items():
        detail.pop(member, None)
        amount = whole_number(next((r["value"] for r in requirements if r["type"] == kind), None))
        if amount is not None:
            detail[member] = amount
    return detail
