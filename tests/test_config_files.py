"""config/ mirrors the settings object field for field, so the two cannot drift."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from poller.settings import Settings

EXAMPLE = Path(__file__).parent.parent / "config" / "poller.env.example"


@pytest.fixture(autouse=True)
def _no_poller_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read POLLER_* from the environment, which other tests' fixtures export."""
    for name in [n for n in os.environ if n.startswith("POLLER_")]:
        monkeypatch.delenv(name)


def example_values() -> dict[str, str]:
    # Settings without a default are shown commented out: "#POLLER_REDIS_URL="
    lines = [line.removeprefix("#") for line in EXAMPLE.read_text().splitlines()]
    pairs = (line.split("=", 1) for line in lines if line.startswith("POLLER_"))
    return dict(pairs)


def test_every_setting_is_documented_with_its_default() -> None:
    values = example_values()
    expected = {f"POLLER_{name.upper()}" for name in Settings.model_fields}
    assert set(values) == expected
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        if default is None:
            shown = ""
        elif isinstance(default, bool):
            shown = str(default).lower()
        elif isinstance(default, list):
            shown = ",".join(default)
        elif isinstance(default, dict):
            shown = ",".join(f"{key}={value:g}" for key, value in default.items())
        else:
            shown = str(default)
        assert values[f"POLLER_{name.upper()}"] == shown, name


def test_the_example_file_loads_as_settings() -> None:
    settings = Settings(_env_file=EXAMPLE)  # type: ignore[call-arg]
    assert settings == Settings()
