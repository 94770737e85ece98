"""Print how the running environment's packages differ from uv.lock.

Run by `make test-latest` with the interpreter of the newest-versions venv: each line is a
package whose installed version is not the locked one, so a failure there can be traced to the
release that caused it. Exits 0: drift is information, the test steps decide pass or fail.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "uv.lock"
# The installers themselves, not part of what is tested.
IGNORED = {"pip", "setuptools", "wheel"}


def normalize(name: str) -> str:
    """PEP 503's normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path = LOCK) -> dict[str, set[str]]:
    """Package name -> versions pinned by uv.lock (the workspace's own packages included).

    The lock is universal: a package may have one version per Python (Django 6 needs 3.12).
    """
    versions: dict[str, set[str]] = {}
    for pkg in tomllib.loads(lock.read_text())["package"]:
        versions.setdefault(normalize(pkg["name"]), set()).add(str(pkg["version"]))
    return versions


def installed_versions() -> dict[str, str]:
    """Package name -> version installed in this interpreter's environment."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[normalize(name)] = dist.version
    return found


def drift(locked: dict[str, set[str]], installed: dict[str, str]) -> list[str]:
    """One line per package whose installed version differs from the lock, or is not locked."""
    lines = []
    for name in sorted(set(installed) - IGNORED):
        have, pinned = installed[name], locked.get(name)
        if pinned is None:
            lines.append(f"  {name:32} {have:>14}   (not in uv.lock)")
        elif have not in pinned:
            lines.append(f"  {name:32} {have:>14}   (uv.lock: {', '.join(sorted(pinned))})")
    return lines


def main() -> int:
    lines = drift(locked_versions(), installed_versions())
    if not lines:
        print("the newest allowed versions are exactly uv.lock's")
        return 0
    print(f"{len(lines)} packages differ from uv.lock (installed here, then locked):")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
