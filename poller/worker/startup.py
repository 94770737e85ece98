"""What ``celery -A poller worker`` checks and sets up before it consumes anything.

- It is ``poller@<host>`` unless ``-n`` names it otherwise (the app's workers are
  ``celery@<host>``).
- It consumes its checks' queue and ``POLLER_QUEUE`` only (unless ``-Q`` names queues), the
  checks first: the app's own tasks, on its default queue, are left to the app's workers.
- It imports ``POLLER_IMPORTS``, so the app's signal receivers run where poller's signals fire.
- It refuses to start, with one line naming the fix and exit code 78 (EX_CONFIG, which
  ``poller worker`` does not restart), when a module cannot be imported or boto3 can resolve no
  AWS region or no credentials: such a worker would look ready and track nothing.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any, NoReturn

from celery.signals import worker_ready
from celery.utils.nodenames import default_nodename, host_format

from poller.aws.targets import aws_configuration_problem
from poller.errors import ConfigurationError
from poller.settings import Settings, django_settings_module, get_settings, put_project_on_path

logger = logging.getLogger(__name__)

EX_CONFIG = 78  # sysexits.h: configuration error
NODE_NAME = "poller@%h"
"""poller's worker's node name unless ``-n`` names another: beside the app's ``celery@%h`` on
one host, Flower and ``celery inspect`` see two workers, not one name twice."""


def prepare_worker(worker: Any, options: dict[str, Any]) -> None:
    """``celeryd_init`` receiver for poller's app: check the configuration, then set up."""
    settings = refuse_bad_settings()
    problem = aws_configuration_problem()
    if problem:
        refuse(problem)
    import_app_modules(settings)
    if worker.hostname == host_format(default_nodename(None)):  # type: ignore[arg-type]  # Celery's default: no -n
        worker.hostname = host_format(NODE_NAME)
    if not options.get("queues"):
        # checks first: taken first on Redis (queue_order_strategy, poller.app)
        worker.app.amqp.queues.select([settings.check_queue, settings.queue])

    def say_what_it_does(sender: Any, **_: Any) -> None:
        # Logging is set up later than celeryd_init, and -Q is applied after it.
        queues = ", ".join(sender.app.amqp.queues.consume_from)
        imported = ", ".join(settings.imports) or "no app modules"
        logger.info("poller worker consuming %s; imported %s (POLLER_IMPORTS)", queues, imported)

    worker_ready.connect(say_what_it_does, weak=False)


def refuse_bad_settings() -> Settings:
    """poller's settings, or a refusal to start naming the variable that is wrong."""
    try:
        return get_settings()
    except ConfigurationError as err:
        refuse(str(err))


def import_app_modules(settings: Settings) -> None:
    """Import every POLLER_IMPORTS module; refuse to start naming one that fails.

    The working directory comes first on ``sys.path``, as for Celery's own ``-A``: the README's
    ``POLLER_IMPORTS=shop.receivers celery -A poller worker``, run from the project's root, finds
    ``shop`` (the ``celery`` script's own directory is the venv's ``bin``). In a Django project
    (``DJANGO_SETTINGS_MODULE``), Django is set up first: receivers may import models at module
    level and use the ORM.
    """
    if settings.imports or django_settings_module() is not None:
        put_project_on_path()
    if django_settings_module() is not None:
        try:
            import django

            django.setup()
        except Exception as err:
            refuse(f"DJANGO_SETTINGS_MODULE: cannot set Django up: {type(err).__name__}: {err}")
    for name in settings.imports:
        try:
            importlib.import_module(name)
        except Exception as err:
            refuse(f"POLLER_IMPORTS: cannot import {name!r}: {type(err).__name__}: {err}")


def refuse(problem: str) -> NoReturn:
    """Stop the worker before it starts, with one line saying what to fix."""
    print(f"error: poller worker cannot start: {problem}", file=sys.stderr, flush=True)
    raise SystemExit(EX_CONFIG)
