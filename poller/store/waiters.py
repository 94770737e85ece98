"""Part of the store: waiting for jobs from asyncio, on redis-py's asyncio client.

An :class:`AsyncWaiters` serves every coroutine of one event loop that waits for jobs of one
store: one connection reads records (those asked for together in one MGET), one pub/sub
connection carries the channel of each job
someone awaits (``<p>:events:job:<tracking id>``, subscribed while it is awaited), and one reader
task hands each message to the waiters of its own job only. A thousand awaited jobs cost one
connection pair and their own events, never the fleet's.

Pub/sub delivers at most once (a reconnect loses what was published meanwhile): waiters re-read
the record now and then as well as on each event (:mod:`poller.client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from poller.errors import JobNotFound, RecordUnreadable
from poller.models import JobRecord
from poller.store.base import StoreBase

logger = logging.getLogger(__name__)

RECONNECT_PAUSE = 0.5  # seconds between the reader's attempts while Redis is unreachable
MGET_PAGE = 500  # records read in one MGET at most
READ_TIMEOUT = 1.0  # the reader's longest wait for a message before it looks again
# Messages the reader hands out before it lets the loop run the waiters they woke: a burst of
# a thousand (every job ending at once) must not hold the loop for one long iteration
BATCH = 16
# The sync client's connection settings that the asyncio client takes as they are
_SHARED_SETTINGS = (
    "host", "port", "db", "username", "password", "path", "client_name", "socket_timeout",
    "socket_connect_timeout", "health_check_interval", "ssl_keyfile", "ssl_certfile",
    "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data", "ssl_check_hostname",
)  # fmt: skip
_CONNECTION_CLASSES: dict[type[Any], type[aioredis.connection.AbstractConnection]] = {
    redis.Connection: aioredis.Connection,
    redis.SSLConnection: aioredis.SSLConnection,
    redis.UnixDomainSocketConnection: aioredis.UnixDomainSocketConnection,
}


def async_client(client: redis.Redis) -> aioredis.Redis:
    """An asyncio client to the server ``client`` talks to, with its settings (replies
    decoded)."""
    pool = client.connection_pool
    settings = {
        name: value for name, value in pool.connection_kwargs.items() if name in _SHARED_SETTINGS
    }
    connection_class = _CONNECTION_CLASSES.get(pool.connection_class, aioredis.Connection)
    connections = aioredis.ConnectionPool(
        connection_class=connection_class, decode_responses=True, **settings
    )
    return aioredis.Redis(connection_pool=connections)


class AsyncWaiters:
    """Records and per-job events of one store, for the coroutines of the running event loop.

    Create it inside the loop it serves; its reader task closes both connections when the loop
    cancels it (``asyncio.run`` does on its way out) or on :meth:`aclose`.
    """

    def __init__(self, store: StoreBase) -> None:
        self.store = store
        self._client = async_client(store.redis)
        self._pubsub = self._client.pubsub()
        self._queues: dict[str, set[asyncio.Queue[str]]] = {}  # channel -> its waiters' queues
        self._confirmed: dict[str, asyncio.Future[None]] = {}  # channel -> subscribed
        self._subscribed = asyncio.Event()  # set once the pub/sub connection exists
        # One (un)subscribe at a time: redis-py's PubSub connects on its first command, and two
        # first commands at once would each open a connection, one of them never read
        self._commands = asyncio.Lock()
        self._joining: set[str] = set()  # channels to subscribe with the next command
        self._leaving: set[str] = set()  # channels to unsubscribe with the next command
        # Records asked for since the last MGET went out: tracking id -> the askers' futures
        self._wanted: dict[str, list[asyncio.Future[str | None]]] = {}
        self._reads: set[asyncio.Task[None]] = set()  # the MGETs on their way
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name="poller job waiters"
        )

    @property
    def closed(self) -> bool:
        """True once its reader stopped: it serves no one any more."""
        return self._reader.done()

    async def record(self, tracking_id: str) -> JobRecord:
        """The job's stored record, read now; JobNotFound, or RecordUnreadable when it cannot
        be read back (the sync store sets such a record aside when it meets it)."""
        return parse_record(tracking_id, await self.raw_record(tracking_id))

    async def raw_record(self, tracking_id: str) -> str:
        """The job's stored record as its JSON text, read now; JobNotFound when there is none.

        The records asked for while a read is on its way go together in one MGET: a thousand
        waiters reading at once make a few round trips, not a thousand."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        if not self._wanted:
            asyncio.get_running_loop().call_soon(self._read_wanted)
        self._wanted.setdefault(tracking_id, []).append(future)
        raw = await future
        if raw is None:
            raise JobNotFound(f"no job is tracked under id {tracking_id!r}")
        return raw

    def _read_wanted(self) -> None:
        wanted, self._wanted = self._wanted, {}
        ids = list(wanted)
        for start in range(0, len(ids), MGET_PAGE):
            page = {
                tracking_id: wanted[tracking_id] for tracking_id in ids[start : start + MGET_PAGE]
            }
            task = asyncio.get_running_loop().create_task(self._mget(page))
            self._reads.add(task)  # the loop holds tasks weakly: keep each until it is done
            task.add_done_callback(self._reads.discard)

    async def _mget(self, page: dict[str, list[asyncio.Future[str | None]]]) -> None:
        try:
            raws = await self._client.mget([self.store.key("job", t) for t in page])
        except Exception as err:  # every asker gets the error (a Redis error: retry later)
            for futures in page.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(err)
            return
        for futures, raw in zip(page.values(), raws, strict=True):
            for future in futures:
                if not future.done():
                    future.set_result(None if raw is None else str(raw))

    @contextlib.asynccontextmanager
    async def listen(
        self, tracking_id: str, timeout: float = 5.0
    ) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of the job's events (their JSON, as published), from a moment Redis
        confirmed on: whatever is published after this yields reaches the queue (so a waiter
        may listen, then read the record, without a gap). TimeoutError if Redis does not
        confirm within ``timeout`` seconds."""
        channel = self.store.job_channel(tracking_id)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._queues.setdefault(channel, set()).add(queue)
        try:
            confirmed = self._confirmed.get(channel)
            if confirmed is None:
                confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
                self._leaving.discard(channel)
                self._joining.add(channel)
                await self._send()
            await asyncio.wait_for(asyncio.shield(confirmed), timeout)
            yield queue
        finally:
            await self._forget(channel, queue)

    async def _forget(self, channel: str, queue: asyncio.Queue[str]) -> None:
        queues = self._queues.get(channel, set())
        queues.discard(queue)
        if queues:
            return
        self._queues.pop(channel, None)
        self._confirmed.pop(channel, None)
        self._joining.discard(channel)
        self._leaving.add(channel)
        with contextlib.suppress(redis.RedisError, OSError):  # a lost connection forgets it too
            await self._send()

    async def _send(self) -> None:
        """(Un)subscribe every channel waiting for it, in one command each: the waiters that
        came while the previous command was sent go together."""
        async with self._commands:
            leaving, self._leaving = self._leaving, set()
            joining, self._joining = self._joining, set()
            if leaving:
                await self._pubsub.unsubscribe(*leaving)
            if joining:
                await self._pubsub.subscribe(*joining)
                self._subscribed.set()

    async def _read(self) -> None:
        """Hand each message to its channel's queues, until cancelled; then close."""
        try:
            await self._subscribed.wait()
            handed = 0
            while True:
                handed += 1
                if handed % BATCH == 0:
                    await asyncio.sleep(0)  # buffered messages never suspend get_message
                try:
                    message = await self._pubsub.get_message(timeout=READ_TIMEOUT)
                except (redis.ConnectionError, redis.TimeoutError, OSError) as err:
                    # Waiters keep waiting: they re-read their records on their own schedule
                    logger.warning("job waiters: Redis unreachable (%s); retrying", err)
                    await asyncio.sleep(RECONNECT_PAUSE)
                    continue
                if message is not None:
                    self._deliver(message)
        finally:
            with contextlib.suppress(Exception):  # closing on the way out: nothing to tell
                await self._pubsub.aclose()
            with contextlib.suppress(Exception):
                await self._client.aclose()

    def _deliver(self, message: dict[str, Any]) -> None:
        channel = str(message["channel"])
        if message["type"] == "subscribe":
            confirmed = self._confirmed.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif message["type"] == "message":
            for queue in self._queues.get(channel, ()):
                queue.put_nowait(str(message["data"]))

    async def aclose(self) -> None:
        """Stop the reader and close the connections."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def parse_record(tracking_id: str, raw: str) -> JobRecord:
    """A record's JSON text as a JobRecord; RecordUnreadable when it cannot be read back."""
    try:
        return JobRecord.model_validate_json(raw)
    except ValidationError as err:
        raise RecordUnreadable(f"job {tracking_id}: its record could not be read") from err
