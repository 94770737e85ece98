"""The embedded development stack: a real Redis server and a local AWS Batch endpoint.

Nothing here is used in production: these helpers start real server processes on 127.0.0.1 for
the demo, the test suite and benchmarks, so poller can be exercised without AWS or Docker.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any, Self


class LocalStackError(RuntimeError):
    """A local dev-stack server could not start."""


class EmbeddedServer:
    """A server child process used as a context manager: started on entry (and closed again if
    it cannot start), closed on exit. Subclasses provide ``start`` and ``close``."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """Stop a child we started: SIGTERM by its pid, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise KeyboardInterrupt: stopped by a supervisor as
    by Ctrl-C, so everything started is stopped the same way.

    SIGINT is set too because a process can start with it ignored (a background job of a
    non-interactive shell does), and Python then installs no handler of its own: Ctrl-C, or
    ``kill -INT``, would do nothing.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous_term = signal.signal(signal.SIGTERM, interrupt)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
