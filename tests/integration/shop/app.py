"""The project's Celery app (``celery -A tests.integration.shop.app worker``)."""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "shop",
    broker=os.environ.get("SHOP_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("SHOP_RESULT_BACKEND", "redis://127.0.0.1:6379/1"),
    include=["tests.integration.shop.tasks"],
)
