"""Flower for poller: defaults that ship with the package, and a guard against exposing it.

``celery -A poller flower`` works from any project: when the Celery command line loads poller's
app to run Flower, :func:`install` (called by :mod:`poller.app`) sets poller's defaults on Flower's options (bind 127.0.0.1,
keep 10,000 tasks, forget workers offline for 10 minutes) before Flower reads its environment
(``FLOWER_*``), config file and command line, and checks the final options once they are all
read: Flower bound beyond localhost without authentication refuses to start, however the
address was given.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULTS: dict[str, Any] = {
    "address": "127.0.0.1",  # Flower's own default is every interface
    "max_tasks": 10_000,  # every check of every job is a task Flower remembers
    "purge_offline_workers": 600,
}


def is_loopback(address: str) -> bool:
    """True when ``address`` only accepts connections from this machine."""
    if address in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it is reachable


def exposure_error(address: str, basic_auth: Any, oauth: str | None) -> str | None:
    """Why Flower must not start with these options, or None when it may.

    Flower can revoke and terminate tasks and shows every task's arguments: bound beyond
    localhost it needs basic auth (FLOWER_BASIC_AUTH=user:password) or OAuth (FLOWER_AUTH).
    """
    if is_loopback(address) or basic_auth or oauth:
        return None
    return (
        f"refusing to start Flower on {address or 'all interfaces'} without authentication: "
        "set FLOWER_BASIC_AUTH=user:password (or FLOWER_AUTH for OAuth), or bind 127.0.0.1"
    )


def install(options: Any) -> None:
    """Set poller's defaults on Flower's (tornado) options and check them once parsed."""
    for name, value in DEFAULTS.items():
        setattr(options, name, value)
    parses: list[None] = []

    def check() -> None:
        # Flower parses its command line twice when a config file exists (before and after
        # reading it): only the last parse has every option.
        parses.append(None)
        if len(parses) == 1 and Path(options.conf).is_file():
            return
        error = exposure_error(options.address, options.basic_auth, options.auth)
        if error:
            raise SystemExit(f"error: {error}")

    options.add_parse_callback(check)
