"""The project's own worker, as its team starts it."""

from __future__ import annotations

import os
import sys

from poller.testing.worker import ChildProcess
from tests.integration.shop.app import app as shop_app


def point_shop_app_at(broker_url: str, result_backend: str) -> None:
    """Point this process's copy of the project's app at a test's servers, as
    ``poller.testing.stack.configure_process`` does for poller's: ``close()`` drops its
    connection pool, but Celery keeps the producer pool built on the old one (``app.amqp``,
    through which ``control.ping`` publishes) and its result backend: a later test on other
    servers would retry the stopped ones until it timed out."""
    shop_app.close()
    shop_app.amqp._producer_pool = None  # no public way to drop either
    shop_app._local.__dict__.pop("backend", None)
    shop_app.conf.update(broker_url=broker_url, result_backend=result_backend)


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
