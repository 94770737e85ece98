"""A Redis replication group watched by Sentinels, on 127.0.0.1: a primary, its replicas and three
Sentinels, each a child process of the test (the same server binary as :mod:`redis_server`).

Example::

    with SentinelGroup() as group:
        settings = {"POLLER_REDIS_URL": group.url, "POLLER_SENTINEL_MASTER": group.master_name}
        group.kill_primary()  # SIGKILL, as a crash
        group.wait_for_failover()  # a replica is the primary now

A failover takes Sentinel's ``down_after`` to notice, then its election: about two seconds here.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import redis

from poller.testing.processes import (
    EmbeddedServer,
    LocalStackError,
    free_port,
    stop_process,
)
from poller.testing.redis_server import EmbeddedRedis, find_server_binary

logger = logging.getLogger(__name__)

MASTER_NAME = "poller"


class EmbeddedSentinel(EmbeddedServer):
    """One Sentinel watching the primary on ``primary_port`` under ``master_name``."""

    def __init__(
        self,
        primary_port: int,
        *,
        master_name: str = MASTER_NAME,
        quorum: int = 2,
        down_after: float = 1.0,
        failover_timeout: float = 5.0,
        startup_timeout: float = 15.0,
    ) -> None:
        self.port = free_port()
        self.primary_port = primary_port
        self.master_name = master_name
        self.quorum = quorum
        self.down_after = down_after
        self.failover_timeout = failover_timeout
        self.startup_timeout = startup_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="poller-sentinel-")
        self.data_dir = Path(self._tmp.name)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The Sentinel's process id while it runs."""
        return self._process.pid if self._process else None

    def _config(self) -> Path:
        # Sentinel rewrites its configuration file as it learns the group: it must be its own
        config = self.data_dir / "sentinel.conf"
        name = self.master_name
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {self.data_dir}",
                    "logfile sentinel.log",
                    f"sentinel monitor {name} 127.0.0.1 {self.primary_port} {self.quorum}",
                    f"sentinel down-after-milliseconds {name} {int(self.down_after * 1000)}",
                    f"sentinel failover-timeout {name} {int(self.failover_timeout * 1000)}",
                    f"sentinel parallel-syncs {name} 1",
                    "",
                ]
            )
        )
        return config

    def start(self) -> Self:
        """Start the Sentinel and wait until it names the primary."""
        if self._process is not None:
            return self
        command = [str(find_server_binary()), str(self._config()), "--sentinel"]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise LocalStackError(f"Sentinel exited: {self._log_tail()}")
                try:
                    if client.sentinel_get_master_addr_by_name(self.master_name):
                        return self
                except redis.RedisError:
                    pass  # not up yet
                time.sleep(0.02)
        finally:
            client.close()
        raise LocalStackError(f"Sentinel on port {self.port} did not start: {self._log_tail()}")

    def _log_tail(self) -> str:
        log = self.data_dir / "sentinel.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return " | ".join(text.strip().splitlines()[-5:]) or "(no log output)"

    def close(self) -> None:
        """Stop the Sentinel by its pid and remove its directory."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, 10.0)
        self._tmp.cleanup()


class SentinelGroup(EmbeddedServer):
    """A primary, ``replicas`` replicas of it and ``sentinels`` Sentinels watching it."""

    def __init__(
        self,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        master_name: str = MASTER_NAME,
        appendonly: bool = True,
        down_after: float = 1.0,
    ) -> None:
        self.master_name = master_name
        self.servers = [EmbeddedRedis(appendonly=appendonly)]
        primary = self.servers[0].port
        self.servers += [
            EmbeddedRedis(appendonly=appendonly, replica_of=primary) for _ in range(replicas)
        ]
        quorum = sentinels // 2 + 1
        self.sentinels = [
            EmbeddedSentinel(primary, master_name=master_name, quorum=quorum, down_after=down_after)
            for _ in range(sentinels)
        ]

    @property
    def url(self) -> str:
        """Celery's Sentinel URL of the group, database 0 (pair it with ``master_name``)."""
        hosts = ";".join(f"sentinel://127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"{hosts}/0"

    def start(self) -> Self:
        """Start the servers, wait until every replica is in sync, then start the Sentinels."""
        for server in self.servers:
            server.start()
        self._wait_in_sync(timeout=15)
        for sentinel in self.sentinels:
            sentinel.start()
        return self

    def _wait_in_sync(self, timeout: float) -> None:
        primary = redis.Redis(port=self.servers[0].port, decode_responses=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                info = primary.info("replication")
                online = [
                    value
                    for key, value in info.items()
                    if key.startswith("slave") and value.get("state") == "online"
                ]
                if len(online) == len(self.servers) - 1:
                    return
                time.sleep(0.05)
        finally:
            primary.close()
        raise LocalStackError("the replicas did not reach the primary in time")

    def primary_port(self) -> int:
        """The port of the server the Sentinels name as the primary now."""
        for sentinel in self.sentinels:
            if sentinel.pid is None:
                continue
            client = redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True)
            try:
                address = client.sentinel_get_master_addr_by_name(self.master_name)
                if isinstance(address, tuple):
                    return int(address[1])
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise LocalStackError("no Sentinel names a primary")

    def server_on(self, port: int) -> EmbeddedRedis:
        """The group's server on ``port``."""
        return next(server for server in self.servers if server.port == port)

    def kill_primary(self) -> int:
        """SIGKILL the primary, as a crash would; return its port."""
        port = self.primary_port()
        self.server_on(port).kill()
        logger.info("killed the primary on port %s", port)
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until the Sentinels name another primary than ``old_port``, and it accepts
        writes; return its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                port = self.primary_port()
            except LocalStackError:
                port = old_port
            if port != old_port:
                client = redis.Redis(port=port, socket_timeout=1)
                try:
                    if client.info("replication").get("role") == "master":
                        return port
                except redis.RedisError:
                    pass
                finally:
                    client.close()
            time.sleep(0.05)
        raise LocalStackError(f"no failover away from port {old_port} within {timeout:.0f}s")

    def close(self) -> None:
        """Stop every Sentinel and server by its pid, and remove their directories."""
        for sentinel in self.sentinels:
            sentinel.close()
        for server in self.servers:
            server.close()
