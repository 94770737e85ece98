"""Cheaper traceback snapshots for the tasks poller retries and ignores all day long.

Every rescheduled check ends its task with Celery's ``Retry`` (and every submission with the
``Ignore`` of ``Task.replace``), and Celery snapshots the traceback of each with billiard's
``ExceptionInfo``. On Python 3.11+ billiard copies, for every frame, the whole position table of
its code object; Celery's ``trace_task`` alone has over 2,000 entries. Profiling a worker under
10,000 tracked jobs (py-spy) put a third of its CPU time there.

A code object never changes, so its snapshot can be shared: :func:`install` makes billiard build
one per code object (through ``_Frame.Code``, the class attribute billiard uses to build it) and
reuse it. Tracebacks render and pickle exactly as before.
"""

from __future__ import annotations

from types import CodeType

from billiard import einfo

MAX_SNAPSHOTS = 512  # the frames of Retry and Ignore tracebacks come from a few dozen functions
# id(code) -> (code, snapshot). Holding the code object keeps its id from being reused; keying
# by identity, not by ``==`` (which ignores the file name), keeps each frame's own file.
_snapshots: dict[int, tuple[CodeType, einfo._Code]] = {}


def _code_snapshot(code: CodeType) -> einfo._Code:
    entry = _snapshots.get(id(code))
    if entry is None:
        if len(_snapshots) >= MAX_SNAPSHOTS:
            _snapshots.clear()
        entry = _snapshots[id(code)] = (code, einfo._Code(code))
    return entry[1]


def install() -> None:
    """Share billiard's code snapshots between tracebacks (idempotent)."""
    einfo._Frame.Code = staticmethod(_code_snapshot)  # type: ignore[assignment]  # a factory
