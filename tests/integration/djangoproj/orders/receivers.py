"""poller's signal receivers, loaded by poller's worker (POLLER_IMPORTS): models imported at
module level, rows written through the ORM."""

from typing import Any

from orders.models import Order
from poller import JobRecord, job_succeeded


@job_succeeded.connect
def note_success(sender: Any, record: JobRecord, **kwargs: Any) -> None:
    """Write a row for each Batch job that succeeded."""
    Order.objects.create(
        name=record.job_name, status="SUCCEEDED", tracking_id=record.tracking_id,
        written_by="receiver",
    )  # fmt: skip
