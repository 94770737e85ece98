"""A Batch request's JSON body, checked against botocore's model of its operation.

Malformed input (bad JSON, a missing ``jobName``, wrong types) is refused with a
`ClientException` (HTTP 400) before any code acts on it: moto's handlers would crash on it
(HTTP 500) or store it as given. Members the model does not know are ignored, as AWS does.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator

from aws_batch_emulator.errors import ClientException


def request_params(operation: OperationModel, body: bytes) -> dict[str, Any]:
    """The JSON object of `body`, validated against `operation`'s input shape when all of
    its input is in the body (none in the path or query)."""
    try:
        text = body.decode()
    except UnicodeDecodeError as err:
        raise ClientException(f"The request could not be read: {err}") from None
    try:
        params = json.loads(text) if text.strip() else {}
    except ValueError:
        raise ClientException("The request body is not valid JSON") from None
    if not isinstance(params, dict):
        raise ClientException("The request body must be a JSON object")
    shape = operation.input_shape
    if shape is not None and _reads_json_body(operation):
        report = ParamValidator().validate(_known_only(params, shape), shape)
        if report.has_errors():
            raise ClientException(report.generate_report())
    return params


@cache
def _reads_json_body(operation: OperationModel) -> bool:
    shape = operation.input_shape
    members = shape.members.values() if shape is not None else []
    return all(member.serialization.get("location") is None for member in members)


def _known_only(value: Any, shape: Shape) -> Any:
    """`value` without the members the model does not know, before type validation."""
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
