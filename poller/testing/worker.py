"""Celery worker and Flower child processes for the local stack, started and stopped by pid."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from poller.testing.processes import LocalStackError, stop_process

START_TIMEOUT = 60.0


class ChildProcess:
    """A server child process whose output goes to a log file; stopped by its pid."""

    name = "child"

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.log = Path(tempfile.mkstemp(prefix=f"poller-{self.name}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The command line to run."""
        raise NotImplementedError

    def is_ready(self) -> bool:
        """True once the child serves."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self.process.pid if self.process else None

    @property
    def is_running(self) -> bool:
        """True while the child has been started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> ChildProcess:
        """Start the child and wait until it is ready; LocalStackError with its log if not."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command(), env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalStackError(f"{self.name} exited early:\n{self.log_tail()}")
            if self.is_ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise LocalStackError(
            f"{self.name} was not ready within {timeout:.0f}s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the child logged."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a warm shutdown for Celery), then SIGKILL after ``timeout``. Idempotent."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout)

    def kill(self) -> None:
        """Kill the child at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class Worker(ChildProcess):
    """A ``celery -A poller worker`` child process (thread pool unless ``pool`` says another),
    ready when it answers a ping."""

    name = "worker"

    def __init__(
        self,
        env: dict[str, str],
        includes: list[str] | None = None,
        concurrency: int = 8,
        pool: str = "threads",
    ) -> None:
        super().__init__(env)
        self.includes = includes or []
        self.concurrency = concurrency
        self.pool = pool
        self.node_name = f"poller-local-{os.getpid()}-{id(self)}@%h"

    def command(self) -> list[str]:
        """``celery -A poller worker`` with task events on (for Flower)."""
        command = [sys.executable, "-m", "celery", "-A", "poller", "worker", "-P", self.pool]
        command += ["-c", str(self.concurrency), "--loglevel", "INFO", "-E"]
        command += ["--without-mingle", "--without-gossip", "-n", self.node_name]
        if self.includes:
            command += ["--include", ",".join(self.includes)]
        return command

    def is_ready(self) -> bool:
        """The worker answers a broker ping (this process's app must use the same broker)."""
        from poller.app import app

        try:
            return bool(app.control.ping(timeout=0.5))
        except Exception:  # the broker connection is (re)starting: not ready yet
            return False


class Flower(ChildProcess):
    """Flower on 127.0.0.1, ready when its web page answers."""

    name = "flower"

    def __init__(self, env: dict[str, str], port: int) -> None:
        super().__init__(env)
        self.port = port

    @property
    def url(self) -> str:
        """Where Flower can be opened."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """``celery -A poller flower`` bound to 127.0.0.1."""
        return [
            sys.executable, "-m", "celery", "-A", "poller", "flower",
            "--address=127.0.0.1", f"--port={self.port}",
        ]  # fmt: skip

    def is_ready(self) -> bool:
        """Flower's dashboard answers (401 counts: it is up, behind basic auth)."""
        try:
            with urllib.request.urlopen(self.url + "/healthcheck", timeout=1):  # noqa: S310
                return True
        except urllib.error.HTTPError as err:
            return err.code == 401
        except OSError:
            return False
