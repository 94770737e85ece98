"""Values never shown: a job's environment variables and secrets, masked wherever poller shows a
spec (Flower's task arguments, the result backend, logs, ``poller status --json``, the public
record view).

A job's environment (``container_overrides.environment``, and the same lists in node, ECS and
EKS overrides: ``environment`` and ``env``) and its ``secrets`` (Secrets Manager or SSM
``valueFrom``) keep their names; their values become ``***``. The record in Redis keeps the real
values, which a re-sent submission needs; every view of it goes through :func:`redacted`.
"""

from __future__ import annotations

import reprlib
from typing import Any

from poller.models import JobRecord

MASK = "***"
REPR_MAX_LENGTH = 1024  # Celery's own cap on a task's argument repr (argsrepr_maxsize)
# Lists of {"name": ..., "value": ...} (ECS and Batch: environment; EKS: env)
_VALUE_LISTS = frozenset({"environment", "env"})
_SECRET_LISTS = frozenset({"secrets"})  # lists of {"name": ..., "valueFrom": ...}


def redacted(value: Any) -> Any:
    """A copy of ``value`` (a spec, submit_job's kwargs, any JSON) with every environment value
    and secret masked; anything else is kept as it is."""
    if isinstance(value, dict):
        return {key: _member(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    return value


def _member(key: Any, value: Any) -> Any:
    if key in _VALUE_LISTS and isinstance(value, list):
        return [_masked(item, "value") for item in value]
    if key in _SECRET_LISTS and isinstance(value, list):
        return [_masked(item, "valueFrom") for item in value]
    return redacted(value)


def _masked(item: Any, field: str) -> Any:
    if isinstance(item, dict) and field in item:
        return {**item, field: MASK}
    return redacted(item)


_REPR = reprlib.Repr()
_REPR.maxlevel = 8  # deep enough for an environment's names (Celery's saferepr stops at three)
_REPR.maxdict = _REPR.maxlist = 100
_REPR.maxstring = _REPR.maxother = 200


def kwargs_repr(kwargs: Any) -> str:
    """How Celery shows a submission's keyword arguments (task events, Flower): masked."""
    return _REPR.repr(redacted(kwargs or {}))[:REPR_MAX_LENGTH]


def public(record: JobRecord) -> JobRecord:
    """The record as poller shows it: its spec's environment values and secrets masked."""
    return record.model_copy(update={"spec": redacted(record.spec)})
