"""Part of the store: a record change's writes queued as one script call, and the store's Lua
scripts (in ``scripts/`` beside this module)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script


def _script_source(name: str) -> str:
    """The text of the Lua script ``scripts/<name>.lua``."""
    return resources.files("poller.store").joinpath("scripts", f"{name}.lua").read_text()


_RUN_WRITES = _script_source("run_writes")


class Writes:
    """Writes queued with redis-py's names, run by Redis in one script call (run_writes.lua).

    A record change is a dozen writes (record, indexes, counts, events); sent as one command
    inside the change's MULTI, they cost redis-py one command to pack and one reply to parse
    instead of a dozen, the bulk of the client's CPU per change.
    """

    def __init__(self) -> None:
        self.words: list[str | int | float] = []

    def _add(self, *words: str | int | float) -> None:
        self.words += [len(words), *words]

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        self._add("SET", key, value, *(("EX", ex) if ex else ()))

    def sadd(self, key: str, *members: str) -> None:
        self._add("SADD", key, *members)

    def hincrby(self, key: str, field_name: str, amount: int) -> None:
        self._add("HINCRBY", key, field_name, amount)

    def hincrbyfloat(self, key: str, field_name: str, amount: float) -> None:
        self._add("HINCRBYFLOAT", key, field_name, repr(float(amount)))

    def zadd(self, key: str, mapping: dict[str, float], nx: bool = False) -> None:
        scored = [word for member, score in mapping.items() for word in (repr(score), member)]
        self._add("ZADD", key, *(("NX",) if nx else ()), *scored)

    def zrem(self, key: str, *members: str) -> None:
        self._add("ZREM", key, *members)

    def publish(self, channel: str, message: str) -> None:
        self._add("PUBLISH", channel, message)

    def rpush(self, key: str, *values: str) -> None:
        self._add("RPUSH", key, *values)

    def expire(self, key: str, seconds: int) -> None:
        self._add("EXPIRE", key, seconds)

    def run(self, target: Any) -> None:
        """Run the writes with ``target``: a client, or a pipeline that queues them in its MULTI.

        EVAL with the script's text rather than EVALSHA: Redis caches it by its hash all the
        same, and a script cache emptied meanwhile (a restart, a failover) cannot fail the
        command inside the MULTI, after the transaction's other commands ran.
        """
        if self.words:
            target.eval(_RUN_WRITES, 0, *self.words)


@functools.lru_cache(maxsize=16)
def script(client: redis.Redis, name: str) -> Script:
    """The Lua script ``scripts/<name>.lua`` for this client, run by its SHA."""
    return client.register_script(_script_source(name))
