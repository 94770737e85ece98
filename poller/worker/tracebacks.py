"""Cheaper traceback snapshots for the tasks poller retries and ignores all day long.

Every rescheduled check ends its task with Celery's ``Retry`` (and every submission with the
``Ignore`` of ``Task.replace``), and Celery snapshots the traceback of each with billiard's
``ExceptionInfo``. On Python 3.11+ billiard copies, for every frame, the whole position table of
its code object (thousands of entries for Celery's ``trace_task``), a large share of a busy
worker's CPU (docs/performance.md).

A code object never changes, so its snapshot can be shared: :func:`install` makes billiard build
one per code object (through ``_Frame.Code``, the class attribute billiard uses to build it) and
reuse it. Tracebacks render and pickle exactly as before.

An ``Ignore``'s text is the exception's one line instead of its rendered traceback
(``traceback.format_exception``, twice per task), which nobody reads: Celery logs an ignored
task in one line and stores no result for it. Every other exception's text is billiard's full
traceback.
"""

from __future__ import annotations

import sys
import traceback
from types import CodeType
from typing import Any

from billiard import einfo
from celery.exceptions import Ignore

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


_billiard_init = einfo.ExceptionInfo.__init__


def _exception_info(self: Any, exc_info: Any = None, internal: bool = False) -> None:
    """billiard's ExceptionInfo.__init__, but an Ignore's text is its one line (billiard's stubs
    do not describe these attributes: ``self`` is Any)."""
    exc_info = exc_info or sys.exc_info()
    exc_type, exception, tb = exc_info
    if not isinstance(exception, Ignore):
        _billiard_init(self, exc_info, internal)
        return
    self.type, self.internal = exc_type, internal
    self.tb = einfo.Traceback(tb)
    self.traceback = "".join(traceback.format_exception_only(exc_type, exception))
    self.exception = einfo.ExceptionWithTraceback(exception, self.traceback)  # type: ignore[attr-defined]


def install() -> None:
    """Share billiard's code snapshots between tracebacks, and render an Ignore's in one line
    (idempotent)."""
    einfo._Frame.Code = staticmethod(_code_snapshot)  # type: ignore[assignment]  # a factory
    einfo.ExceptionInfo.__init__ = _exception_info  # type: ignore[method-assign]
