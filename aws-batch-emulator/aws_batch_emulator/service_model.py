"""Lookups in botocore's model of the Batch API, loaded once, when first needed.

botocore is imported inside the functions, so importing the package stays cheap.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.model import OperationModel, ServiceModel

BATCH_PREFIX = "/v1/"
"""Path prefix of every AWS Batch API operation (restJson1 protocol)."""


@cache
def batch_model() -> ServiceModel:
    """botocore's service model of AWS Batch."""
    import botocore.session

    return botocore.session.get_session().get_service_model("batch")


def route_segment(path: str) -> str:
    """The operation's segment of a Batch path: ``/v1/tags/{arn}`` -> ``tags``."""
    return path.removeprefix(BATCH_PREFIX).split("/", 1)[0].lower()


@cache
def operations_by_route() -> dict[tuple[str, str], OperationModel]:
    """Every Batch operation by (HTTP method, `route_segment` of its path)."""
    model = batch_model()
    routes: dict[tuple[str, str], OperationModel] = {}
    for name in model.operation_names:
        operation = model.operation_model(name)
        routes[(operation.http["method"].upper(), route_segment(operation.http["requestUri"]))] = (
            operation
        )
    return routes


def operation_for(method: str, path: str) -> OperationModel | None:
    """The Batch operation a request (method and path) calls, if any."""
    return operations_by_route().get((method.upper(), route_segment(path)))
