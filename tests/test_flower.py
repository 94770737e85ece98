"""Flower's guard rails and config file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tornado.options import OptionParser

from poller.monitoring.flower import exposure_error, install, is_loopback


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_addresses_need_no_auth(address: str) -> None:
    assert is_loopback(address)
    assert exposure_error(address, None, None) is None


@pytest.mark.parametrize("address", ["0.0.0.0", "", "10.0.0.5", "flower.internal"])
def test_an_exposed_flower_without_auth_is_refused(address: str) -> None:
    error = exposure_error(address, None, None)
    assert error is not None
    assert "FLOWER_BASIC_AUTH" in error
    assert exposure_error(address, "admin:secret", None) is None
    assert exposure_error(address, None, ".*@example.com") is None


def flower_options() -> OptionParser:
    """A parser with the Flower options poller's install() touches, as Flower defines them."""
    parser = OptionParser()
    parser.define("address", default="", type=str)
    parser.define("basic_auth", type=str, default=None, multiple=True)
    parser.define("auth", default="", type=str)
    parser.define("max_tasks", type=int, default=100000)
    parser.define("purge_offline_workers", default=None, type=int)
    parser.define("conf", default="flowerconfig.py", type=str)
    return parser


def test_poller_defaults_bind_flower_to_localhost() -> None:
    options = flower_options()
    install(options)
    options.parse_command_line(["flower"])
    assert (options.address, options.max_tasks, options.purge_offline_workers) == (
        "127.0.0.1", 10_000, 600,
    )  # fmt: skip


@pytest.mark.parametrize("argv", [["--address=0.0.0.0"], ["--address=10.1.2.3", "--auth="]])
def test_an_address_given_on_the_command_line_is_guarded_too(argv: list[str]) -> None:
    options = flower_options()
    install(options)
    with pytest.raises(SystemExit, match="without authentication"):
        options.parse_command_line(["flower", *argv])


def test_an_exposed_flower_with_basic_auth_starts() -> None:
    options = flower_options()
    install(options)
    options.parse_command_line(["flower", "--address=0.0.0.0", "--basic_auth=admin:secret"])
    assert options.address == "0.0.0.0"


def test_auth_from_a_config_file_counts(tmp_path: Path) -> None:
    # Flower parses the command line, then its config file, then the command line again
    conf = tmp_path / "flowerconfig.py"
    conf.write_text("basic_auth = ['admin:secret']\n")
    options = flower_options()
    install(options)
    argv = ["flower", "--address=0.0.0.0", f"--conf={conf}"]
    options.parse_command_line(argv)
    options.parse_config_file(str(conf), final=False)
    options.parse_command_line(argv)
    assert options.basic_auth == ["admin:secret"]


def test_celery_flower_from_any_directory_refuses_an_unguarded_address(tmp_path: Path) -> None:
    # Given no config file at all: the settings come with the installed package
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    # When Flower is asked to bind every interface without auth
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "poller", "flower", "--address=0.0.0.0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Then it refuses, in one line naming the fix
    assert result.returncode != 0
    assert "error: refusing to start Flower on 0.0.0.0 without authentication" in result.stderr
