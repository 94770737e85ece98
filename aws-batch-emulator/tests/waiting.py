"""Waiting for a condition with a deadline, for the emulator's tests (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.02) -> T:
    """Poll `probe` until it returns something other than None; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)
