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
# The loop must never run one long iteration, whatever arrives at once (a thousand waiters
# starting together, a thousand jobs ending together): the reader hands out this many messages,
# and the records' reader this many records, then lets the loop run the waiters they woke
# (and anything else that is due) before it goes on
BATCH = 64
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

    What it costs a waiter is a few callbacks, never a round trip of its own: one task sends the
    (un)subscriptions of every waiter that came or went meanwhile in one command each, one task
    reads the records asked for meanwhile in one MGET (while one is on its way, the next ones
    gather), and neither makes a waiter wait for another.
    """

    def __init__(self, store: StoreBase) -> None:
        self.store = store
        self._client = async_client(store.redis)
        self._pubsub = self._client.pubsub()
        self._queues: dict[str, set[asyncio.Queue[str]]] = {}  # channel -> its waiters' queues
        # Channels Redis confirmed (and not unsubscribed since): a new waiter of one listens at once
        self._confirmed: set[str] = set()
        # Channels whose SUBSCRIBE went out after their last UNSUBSCRIBE, unconfirmed yet, and
        # how many SUBSCRIBEs of each are unconfirmed (a confirmation of an older one, sent
        # before an UNSUBSCRIBE, confirms nothing)
        self._subscribing: set[str] = set()
        self._unconfirmed: dict[str, int] = {}
        self._confirming: dict[str, list[asyncio.Future[None]]] = {}  # channel -> its listeners
        self._joining: set[str] = set()  # channels to subscribe with the next command
        self._leaving: set[str] = set()  # channels to unsubscribe with the next command
        self._sender: asyncio.Task[None] | None = None  # sends them while there are some
        self._subscribed = asyncio.Event()  # set once the pub/sub connection exists
        # Records asked for since the last MGET went out: tracking id -> the askers' futures
        self._wanted: dict[str, list[asyncio.Future[str | None]]] = {}
        self._records: asyncio.Task[None] | None = None  # reads them while there are some
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
        """The job's stored record as its JSON text, read now (by an MGET sent after this
        call); JobNotFound when there is none.

        The records asked for while an MGET is on its way go together in the next one: a
        thousand waiters reading at once make a few round trips, not a thousand."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._wanted.setdefault(tracking_id, []).append(future)
        if self._records is None:
            self._records = asyncio.get_running_loop().create_task(self._read_records())
        raw = await future
        if raw is None:
            raise JobNotFound(f"no job is tracked under id {tracking_id!r}")
        return raw

    async def _read_records(self) -> None:
        """MGET the records asked for, a page at a time, until none is asked for; hand each
        page out BATCH askers at a time."""
        wanted: dict[str, list[asyncio.Future[str | None]]] = {}
        try:
            while self._wanted:
                wanted, self._wanted = self._wanted, {}
                ids = list(wanted)
                for start in range(0, len(ids), MGET_PAGE):
                    page = ids[start : start + MGET_PAGE]
                    try:
                        raws = await self._client.mget([self.store.key("job", t) for t in page])
                    except Exception as err:  # every asker gets it (a Redis error: retry later)
                        for tracking_id in page:
                            _settle(wanted.pop(tracking_id), error=err)
                        continue
                    woken = 0
                    for tracking_id, raw in zip(page, raws, strict=True):
                        woken += _settle(wanted.pop(tracking_id), None if raw is None else str(raw))
                        if woken >= BATCH:
                            woken = 0
                            await asyncio.sleep(0)
        finally:  # cancelled (the loop is closing): no asker waits for ever
            for futures in (*wanted.values(), *self._wanted.values()):
                for future in futures:
                    future.cancel()
            self._records = None

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
        confirmed: asyncio.Future[None] | None = None
        try:
            self._leaving.discard(channel)  # not sent yet: it stays subscribed
            if channel not in self._confirmed:
                confirmed = asyncio.get_running_loop().create_future()
                self._confirming.setdefault(channel, []).append(confirmed)
                if channel not in self._subscribing:
                    self._joining.add(channel)
                    self._send_soon()
                async with asyncio.timeout(timeout):
                    await confirmed
            yield queue
        finally:
            self._forget(channel, queue, confirmed)

    def _forget(
        self, channel: str, queue: asyncio.Queue[str], confirmed: asyncio.Future[None] | None
    ) -> None:
        listeners = self._confirming.get(channel)
        if confirmed is not None and listeners is not None and confirmed in listeners:
            listeners.remove(confirmed)
        queues = self._queues.get(channel, set())
        queues.discard(queue)
        if queues:
            return
        self._queues.pop(channel, None)
        self._confirming.pop(channel, None)
        if channel in self._joining:  # never sent: nothing to undo
            self._joining.discard(channel)
        else:
            self._leaving.add(channel)
            self._send_soon()

    def _send_soon(self) -> None:
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        """(Un)subscribe every channel waiting for it, in one command each, until none waits:
        the waiters that came or went while a command was on its way go in the next one. One
        sender: redis-py's PubSub connects on its first command, and two first commands at
        once would each open a connection, one of them never read."""
        try:
            while self._leaving or self._joining:
                leaving, self._leaving = self._leaving, set()
                joining, self._joining = self._joining, set()
                if leaving:
                    self._confirmed.difference_update(leaving)
                    self._subscribing.difference_update(leaving)
                    # A lost connection forgets them too (and resubscribes only those awaited)
                    with contextlib.suppress(redis.RedisError, OSError):
                        await self._pubsub.unsubscribe(*leaving)
                if joining:
                    self._subscribing.update(joining)
                    for channel in joining:
                        self._unconfirmed[channel] = self._unconfirmed.get(channel, 0) + 1
                    try:
                        await self._pubsub.subscribe(*joining)
                    except Exception as err:  # its listeners get it (a Redis error)
                        self._subscribing.difference_update(joining)
                        for channel in joining:  # a later listener sends its own
                            self._unconfirmed.pop(channel, None)
                            _settle(self._confirming.pop(channel, []), error=err)
                        continue
                    self._subscribed.set()
        finally:
            self._sender = None

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
        kind = message["type"]
        if kind == "message":
            for queue in self._queues.get(channel, ()):
                queue.put_nowait(str(message["data"]))
        elif kind == "subscribe":
            unconfirmed = self._unconfirmed.pop(channel, 0)
            if unconfirmed > 1:  # an older SUBSCRIBE's: the last one's confirmation is to come
                self._unconfirmed[channel] = unconfirmed - 1
            elif channel in self._subscribing:  # the SUBSCRIBE sent after its last UNSUBSCRIBE
                self._subscribing.discard(channel)
                self._confirmed.add(channel)
                _settle(self._confirming.pop(channel, []))
            # else one sent before an UNSUBSCRIBE, or redis-py resubscribing after a reconnect

    async def aclose(self) -> None:
        """Stop the reader and close the connections."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _settle(
    futures: list[asyncio.Future[Any]], result: Any = None, error: BaseException | None = None
) -> int:
    """Give each future not done yet ``result`` (or ``error``); how many it woke."""
    woken = 0
    for future in futures:
        if not future.done():
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
            woken += 1
    return woken


def parse_record(tracking_id: str, raw: str) -> JobRecord:
    """A record's JSON text as a JobRecord; RecordUnreadable when it cannot be read back."""
    try:
        return JobRecord.model_validate_json(raw)
    except ValidationError as err:
        raise RecordUnreadable(f"job {tracking_id}: its record could not be read") from err
