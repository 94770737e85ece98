"""The environment the tests run in is uv.lock's: `make install` installed its exact versions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).parent.parent


def lock_drift() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_drift", ROOT / ".ci" / "lock_drift.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_installed_package_is_at_its_locked_version() -> None:
    # Given uv.lock and the environment `make install` made
    drift = lock_drift()
    # When installed versions are compared with the locked ones
    differences = drift.drift(drift.locked_versions(), drift.installed_versions())
    # Then none differs (a package installed by hand, or a lock not synced, shows here by name)
    assert differences == []


def test_the_packages_the_quick_start_broke_on_are_locked() -> None:
    # Given the lock
    locked = lock_drift().locked_versions()
    # Then the releases that once broke a fresh clone are pinned, one version each
    for name in ("moto", "redis", "celery", "boto3"):
        assert len(locked[name]) == 1, (name, locked[name])


def test_drift_names_a_newer_release_and_an_unlocked_package() -> None:
    # Given a lock pinning moto 5.2.6
    drift = lock_drift()
    locked = {"moto": {"5.2.6"}, "redis": {"8.2.0"}}
    # When moto 5.2.7 and an unlocked package are installed
    lines = drift.drift(locked, {"moto": "5.2.7", "redis": "8.2.0", "extra": "1.0", "pip": "26"})
    # Then each is a line naming it; the matching package and the installer are not
    assert len(lines) == 2
    assert "moto" in lines[1]
    assert "5.2.7" in lines[1]
    assert "uv.lock: 5.2.6" in lines[1]
    assert "extra" in lines[0]
    assert "not in uv.lock" in lines[0]
