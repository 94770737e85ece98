"""The ``poller`` command line: submit, inspect, await and cancel jobs; run the local stack.

Human output by default (rich), ``--json`` for scripts. Exit codes: 0 success; for ``submit
--wait`` and ``wait``, 1 when the job FAILED or was REJECTED and 2 when poller gave up
(TIMED_OUT); 3 for an unknown id, an unreachable server or bad settings (one line, no traceback).

The commands live by what they are about, as the manual's command line page (docs/operations/cli.md) reads:
:mod:`~poller.cli.jobs` (submit, status, wait, cancel, jobs, logs), :mod:`~poller.cli.events`
(events, events setup), :mod:`~poller.cli.configuration` (check, config) and
:mod:`~poller.cli.servers` (metrics, worker, redis, demo). Each attaches its commands to the group
:data:`main` of :mod:`~poller.cli.group`; importing this package imports them all, so
``poller.cli:main`` (the console script) has every command. :mod:`~poller.cli.common` holds what
they share.

The top layer: it may import every other part of poller (import-linter's contracts in
pyproject.toml).
"""

from __future__ import annotations

from poller.cli import configuration, events, jobs, servers
from poller.cli.group import PLUGIN_GROUP, PollerGroup, main, plugin_commands

__all__ = [
    "PLUGIN_GROUP",
    "PollerGroup",
    "configuration",
    "events",
    "jobs",
    "main",
    "plugin_commands",
    "servers",
]
