"""Shared code snapshots render and pickle tracebacks exactly as billiard's own."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest
from billiard import einfo
from celery.exceptions import Ignore

from poller.worker import tracebacks


def fail(depth: int) -> None:
    if depth == 0:
        raise ValueError("boom")
    fail(depth - 1)


def snapshot() -> einfo.ExceptionInfo:
    try:
        fail(3)
    except ValueError:
        return einfo.ExceptionInfo()
    raise AssertionError("fail() did not raise")


@pytest.fixture
def installed() -> Iterator[None]:
    original, init = einfo._Frame.Code, einfo.ExceptionInfo.__init__
    tracebacks.install()
    yield
    einfo._Frame.Code, einfo.ExceptionInfo.__init__ = original, init  # type: ignore[method-assign]


def test_shared_snapshots_render_and_pickle_like_billiards(installed: None) -> None:
    einfo._Frame.Code = einfo._Code  # billiard's own first
    expected = snapshot().traceback
    tracebacks.install()
    first, second = snapshot(), snapshot()
    assert first.traceback == second.traceback == expected
    # Frames of the same function share one snapshot of its code
    assert first.tb.tb_next.tb_frame.f_code is second.tb.tb_next.tb_frame.f_code
    restored = pickle.loads(pickle.dumps(first))
    assert restored.traceback == expected


def test_code_objects_equal_but_from_other_files_keep_their_own_file(installed: None) -> None:
    source = "def f():\n    return 1\n"
    one = compile(source, "one.py", "exec").co_consts[0]
    two = compile(source, "two.py", "exec").co_consts[0]
    assert one == two  # CPython compares code objects without their file name
    assert tracebacks._code_snapshot(one).co_filename == "one.py"
    assert tracebacks._code_snapshot(two).co_filename == "two.py"


def test_an_ignore_is_one_line_and_any_other_exception_keeps_its_traceback(installed: None) -> None:
    # Given a task ending with Ignore deep in its call stack (a submission waiting for events)
    def ignore(depth: int) -> None:
        if depth == 0:
            raise Ignore("waiting for Batch events")
        ignore(depth - 1)

    try:
        ignore(3)
    except Ignore:
        ignored = einfo.ExceptionInfo(internal=True)
    # Then its text is the exception's line, and the rest of the info is billiard's
    assert ignored.traceback == "celery.exceptions.Ignore: waiting for Batch events\n"
    assert isinstance(ignored.exception.exc, Ignore) and ignored.internal
    assert ignored.type is Ignore and ignored.tb.tb_next is not None
    assert pickle.loads(pickle.dumps(ignored)).traceback == ignored.traceback
    # And any other exception keeps its whole traceback
    failed = snapshot()
    assert failed.traceback.startswith("Traceback (most recent call last)")
    assert failed.traceback.count("in fail") == 4
