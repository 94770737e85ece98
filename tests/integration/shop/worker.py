"""The project's own worker, as its team starts it."""

from __future__ import annotations

import os
import sys

from poller.testing.worker import ChildProcess
from tests.integration.shop.app import app as shop_app


class ShopWorker(ChildProcess):
    """``celery -A tests.integration.shop.app worker``: the project's own worker."""

    name = "shop-worker"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "tests.integration.shop.app", "worker",
            "-P", "threads", "-c", "4", "--loglevel", "INFO", "-n", f"shop-{os.getpid()}@%h",
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip

    def is_ready(self) -> bool:
        try:
            return bool(shop_app.control.ping(timeout=0.5))
        except Exception:
            return False
