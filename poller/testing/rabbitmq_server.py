"""Run a real RabbitMQ node on 127.0.0.1 for tests: Debian's ``rabbitmq-server`` package.

Debian's ``/usr/sbin/rabbitmq-server`` switches to the ``rabbitmq`` user; the script under
``/usr/lib/rabbitmq/bin`` runs the node as the calling user, so everything it writes goes to a
temporary directory of its own, and it listens on free ports. The node's Erlang port mapper
(``epmd``) is started here too, on a port of its own, so it is stopped by its pid with the node.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from poller.testing.processes import (
    EmbeddedServer,
    LocalStackError,
    free_port,
    stop_process,
)

logger = logging.getLogger(__name__)

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
INSTALL_HINT = "RabbitMQ is not installed: apt-get install rabbitmq-server"
STOP_TIMEOUT = 30.0  # a node flushes its queues to disk on the way down


class EmbeddedRabbitMQ(EmbeddedServer):
    """A RabbitMQ node child process bound to 127.0.0.1, with its data in a directory of its own.

    Example::

        with EmbeddedRabbitMQ() as node:
            kombu.Connection(node.url).ensure_connection()

    ``stop()`` then ``start()`` again keeps the ports and the data directory: durable queues
    and persistent messages survive, as across a real broker restart.
    """

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        if not SERVER.exists() or shutil.which("epmd") is None:
            raise LocalStackError(INSTALL_HINT)
        self.port = free_port()
        self._dist_port = free_port()
        self._epmd_port = free_port()
        self.startup_timeout = startup_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="poller-rabbitmq-")
        self.home = Path(self._tmp.name)
        (self.home / "enabled_plugins").write_text("[].\n")
        self._epmd: subprocess.Popen[bytes] | None = None
        self._node: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The AMQP URL of the node (the default ``guest`` user, allowed from 127.0.0.1)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def log(self) -> Path:
        """The node's output (its own log files are under ``home / "log"``)."""
        return self.home / "node.out"

    def start(self) -> Self:
        """Start the node (and its epmd, the first time) and wait until it accepts AMQP."""
        if self._epmd is None:
            self._epmd = subprocess.Popen(
                ["epmd", "-port", str(self._epmd_port), "-address", "127.0.0.1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        with self.log.open("ab") as out:
            # A session of its own: the script runs the Erlang VM as a child, which a SIGKILL
            # of the script alone would leave running
            self._node = subprocess.Popen(
                [str(SERVER)], env=self._environ(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._wait_ready()
        return self

    def _environ(self) -> dict[str, str]:
        home = self.home
        return {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(home / "feature_flags"),
            "RABBITMQ_NODENAME": f"poller{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "ERL_EPMD_PORT": str(self._epmd_port),
        }

    def _wait_ready(self) -> None:
        import amqp  # Celery's own AMQP client (kombu's dependency)

        assert self._node is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._node.poll() is not None:
                raise LocalStackError(f"RabbitMQ exited at start:\n{self.log.read_text()[-3000:]}")
            try:
                connection = amqp.Connection(
                    f"127.0.0.1:{self.port}", connect_timeout=1, read_timeout=2, write_timeout=2
                )
                connection.connect()
                connection.close()
                return
            except (OSError, amqp.exceptions.AMQPError):  # not listening, or still booting
                if time.monotonic() > deadline:
                    self.stop()
                    raise LocalStackError(
                        f"RabbitMQ did not accept connections within {self.startup_timeout}s:\n"
                        f"{self.log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.25)

    def stop(self) -> None:
        """Stop the node (SIGTERM: a clean shutdown, then SIGKILL to the node's whole process
        group); its epmd keeps running for a restart."""
        node, self._node = self._node, None
        if node is None:
            return
        node.terminate()  # the script stops the VM, waits for it, then exits
        try:
            node.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)  # its group: the script and the VM it started
            node.wait()

    def close(self) -> None:
        """Stop the node and its epmd, and remove the data directory."""
        self.stop()
        if self._epmd is not None:
            stop_process(self._epmd, 5)
            self._epmd = None
        self._tmp.cleanup()
