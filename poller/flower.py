"""Guard rails for running Flower next to poller (used by config/flowerconfig.py)."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(address: str) -> bool:
    """True when ``address`` only accepts connections from this machine."""
    if address in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it is reachable


def exposure_error(address: str, basic_auth: str | None, oauth: str | None) -> str | None:
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
