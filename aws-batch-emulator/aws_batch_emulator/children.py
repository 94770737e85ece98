"""Child processes of the emulator's launcher: the error they raise and how they are stopped."""

from __future__ import annotations

import logging
import signal
import subprocess
from typing import Any

logger = logging.getLogger(__name__)


class EmulatorError(RuntimeError):
    """The emulator could not start, or was used before it started."""


def stop_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """Stop a child we started: SIGTERM by its pid, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("pid %s ignored SIGTERM for %.0fs; killing it", process.pid, timeout)
        process.kill()
        process.wait()
