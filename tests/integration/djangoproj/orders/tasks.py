"""The project's own task, autodiscovered, run by the project's worker after a Batch job."""

from typing import Any

from celery import shared_task

from orders.models import Order


@shared_task
def record_result(result: dict[str, Any]) -> str:
    """A chain step after a poller step: store the job's result through the ORM."""
    Order.objects.create(
        name=result["job_name"], status=result["status"], tracking_id=result["tracking_id"],
        written_by="chain-step",
    )  # fmt: skip
    return str(result["tracking_id"])
