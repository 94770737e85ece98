"""Flower's guard rails and config file."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from poller.flower import exposure_error, is_loopback

CONFIG = Path(__file__).parent.parent / "config" / "flowerconfig.py"


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


def test_the_config_file_refuses_to_expose_flower_without_auth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given Flower bound to every interface without auth
    monkeypatch.setenv("FLOWER_ADDRESS", "0.0.0.0")
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.delenv("FLOWER_AUTH", raising=False)
    # When Flower loads the config, Then it stops with the reason
    with pytest.raises(SystemExit, match="without authentication"):
        runpy.run_path(str(CONFIG))


def test_the_config_file_defaults_to_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOWER_ADDRESS", "FLOWER_PORT", "FLOWER_BASIC_AUTH"):
        monkeypatch.delenv(name, raising=False)
    config = runpy.run_path(str(CONFIG))
    assert (config["address"], config["port"], config["basic_auth"]) == ("127.0.0.1", 5555, [])
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:secret")
    monkeypatch.setenv("FLOWER_ADDRESS", "0.0.0.0")
    assert runpy.run_path(str(CONFIG))["basic_auth"] == ["admin:secret"]
