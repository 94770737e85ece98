"""The ``poller`` click group itself: ``--version``, the commands installed plugins add (the
emulator's ``local-batch``), and every error turned into one ``error:`` line and exit code 3.
The command modules attach their commands to :data:`main` from here."""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any

import click
import redis
from botocore.exceptions import BotoCoreError

from poller import __version__
from poller.cli.common import fail
from poller.errors import ConfigurationError, PollerError

PLUGIN_GROUP = "poller.commands"  # entry points adding commands (the emulator's `local-batch`)


@functools.cache
def plugin_commands() -> dict[str, importlib.metadata.EntryPoint]:
    """Commands other installed distributions add to ``poller``, by name."""
    return {e.name: e for e in importlib.metadata.entry_points(group=PLUGIN_GROUP)}


class PollerGroup(click.Group):
    """Turns every error (usage, poller, Redis, AWS, local stack) into one ``error:`` line and
    exit code 3, never a traceback; adds the commands of installed plugins."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """poller's own commands and the plugins', sorted."""
        return sorted({*super().list_commands(ctx), *plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A command by name; a plugin's is loaded only when asked for."""
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in plugin_commands():
            loaded: click.Command = plugin_commands()[cmd_name].load()
            return loaded
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from poller.testing.processes import LocalStackError  # no extra dependencies

        try:
            return super().invoke(ctx)
        except click.ClickException as err:
            fail(ctx, err.format_message())
        except (
            PollerError, ConfigurationError, redis.RedisError, BotoCoreError, LocalStackError
        ) as err:  # fmt: skip
            fail(ctx, str(err))


@click.group(cls=PollerGroup)
@click.version_option(__version__, prog_name="poller")
def main() -> None:
    """Run AWS Batch jobs from Celery and know when they are done."""
