"""Answers in AWS's wire format, as botocore's output shape of each operation describes it.

moto builds some answers straight from the values it was given, so a member can come out as JSON
null where AWS omits a member it has no value for (a job queue's ``schedulingPolicyArn``, a job
definition's ``retryStrategy``), or as a numeric string where the model declares an integer. `conform`
fixes both kinds, walking an answer along its output shape; members the model does not know are
left as they are.
"""

from __future__ import annotations

import math
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

_INTEGER_TYPES = frozenset({"integer", "long"})


def conform(value: Any, shape: Shape) -> Any:
    """`value` without null members, integer members as JSON integers (see the module doc)."""
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        members = shape.members
        return {
            key: conform(item, members[key]) if key in members else item
            for key, item in value.items()
            if item is not None
        }
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [conform(item, shape.member) for item in value if item is not None]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {key: conform(item, shape.value) for key, item in value.items() if item is not None}
    if shape.type_name in _INTEGER_TYPES:
        return _integer(value)
    return value


def whole_number(value: Any) -> int | None:
    """An integral number given as int, float or numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _integer(value: Any) -> Any:
    """An integral float or numeric string as an int; anything else unchanged."""
    number = whole_number(value)
    return value if number is None else number
