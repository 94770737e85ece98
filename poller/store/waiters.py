"""Part of the store: waiting for jobs from asyncio, on redis-py's asyncio client.

An :class:`AsyncWaiters` serves every coroutine of one event loop that waits for jobs of one
store: one connection reads records (those asked for together in one MGET), one pub/sub
connection carries the channel of each job someone awaits (``<p>:events:job:<tracking id>``,
subscribed while it is awaited), and one reader task hands each message to the waiters of its
own job only. A thousand awaited jobs cost one connection pair and their own events, never the
fleet's.

What a waiting process spends is mostly its wakes (on a VM, a wake costs more than the Python
it runs), and what lags its loop is a long iteration. So: no waiter has a round trip of its own
((un)subscriptions and reads go together, whoever asked meanwhile); while events come often,
the reader lets them gather for GATHER seconds before it reads them (a few dozen wakes a
second, however many jobs); and a burst (a thousand waiters starting, a thousand jobs ending)
is handled BATCH at a time, the loop running whatever is due in between.

Pub/sub delivers at most once (a reconnect loses what was published meanwhile): waiters re-read
the record now and then as well as on each event (:mod:`poller.client`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialBackoff
from redis.sentinel import SentinelConnectionPool

from poller.errors import JobNotFound, RecordUnreadable
from poller.models import JobRecord
from poller.store.base import FAILOVER_PAUSE_CAP, FAILOVER_RETRIES, StoreBase

logger = logging.getLogger(__name__)

RECONNECT_PAUSE = 0.5  # seconds between the reader's attempts while Redis is unreachable
MGET_PAGE = 100  # records read in one MGET at most (a longer reply is parsed in one step)
# Channels whose last waiter left are unsubscribed this long after (s), together: a waiter's
# own UNSUBSCRIBE would cost a round trip per job (their events meanwhile are dropped)
UNSUBSCRIBE_DELAY = 1.0
GATHER = 0.05  # s: the reader's pause while messages come often (see AsyncWaiters._gather)
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
    if isinstance(pool, SentinelConnectionPool):  # the Sentinels' current master, as ``client``
        manager = pool.sentinel_manager
        hosts = [
            (sentinel.connection_pool.connection_kwargs["host"],
             sentinel.connection_pool.connection_kwargs["port"])
            for sentinel in manager.sentinels
        ]  # fmt: skip
        # Its own settings only (the sync manager's carry a sync Retry, not an asyncio one)
        own = {k: v for k, v in manager.sentinel_kwargs.items() if k in _SHARED_SETTINGS}
        sentinels = AsyncSentinel(hosts, sentinel_kwargs=own)
        settings = {k: v for k, v in settings.items() if k not in ("host", "port")}
        # Through a failover: asked again, with pauses, while no Sentinel names a master yet
        retry = AsyncRetry(ExponentialBackoff(cap=FAILOVER_PAUSE_CAP, base=0.05), FAILOVER_RETRIES)
        master: aioredis.Redis = sentinels.master_for(
            pool.service_name, decode_responses=True, retry=retry, **settings
        )
        return master
    connection_class = _CONNECTION_CLASSES.get(pool.connection_class, aioredis.Connection)
    connections = aioredis.ConnectionPool(
        connection_class=connection_class, decode_responses=True, **settings
    )
    return aioredis.Redis(connection_pool=connections)


class AsyncWaiters:
    """Records and per-job events of one store, for the coroutines of the running event loop.

    Create it inside the loop it serves; its reader task closes both connections when the loop
    cancels it (``asyncio.run`` does on its way out) or on :meth:`aclose`.

    A waiter costs a few callbacks, never a round trip of its own: one task sends the
    (un)subscriptions of every waiter that came or went meanwhile in one command each, one task
    reads the records asked for meanwhile in one MGET, and the reader hands a waiter only the
    events it asked for. Nothing a waiter does makes another wait, and no burst (a thousand
    waiters starting, a thousand jobs ending) runs in one long iteration of the loop.
    """

    def __init__(self, store: StoreBase) -> None:
        loop = asyncio.get_running_loop()
        self.store = store
        self._client = async_client(store.redis)
        self._pubsub = self._client.pubsub()
        # channel -> its waiters' queues, each with the test of the events it takes (None: all)
        self._queues: dict[str, dict[asyncio.Queue[str], Callable[[str], bool] | None]] = {}
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
        self._send_later: asyncio.TimerHandle | None = None  # starts it for those leaving
        self._subscribed = asyncio.Event()  # set once the pub/sub connection exists
        self._admitted = 0  # listeners started in this iteration of the loop
        self._admitting = False  # the next iteration's admission is scheduled
        self._turns: collections.deque[asyncio.Future[None]] = collections.deque()  # waiting
        # Records asked for since the last MGET went out: tracking id -> the askers' futures
        self._wanted: dict[str, list[asyncio.Future[str | None]]] = {}
        self._records: asyncio.Task[None] | None = None  # reads them while there are some
        self._last_message = -GATHER  # when the reader last handed out a message
        self._resume: asyncio.TimerHandle | None = None  # when it reads the connection again
        self._reader = loop.create_task(self._read(), name="poller job waiters")

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

    def listen(
        self, tracking_id: str, timeout: float = 5.0, keep: Callable[[str], bool] | None = None
    ) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[str]]:
        """``async with waiters.listen(tracking_id) as events``: a queue of the job's events
        (their JSON, as published), from a moment Redis confirmed on: whatever is published
        after it is entered reaches the queue (so a waiter may listen, then read the record,
        without a gap). ``keep``: the events to queue (those it is true for, or that it cannot
        tell; the others never wake the waiter); every one unless given. TimeoutError if Redis
        does not confirm within ``timeout`` seconds."""
        return _Listening(self, tracking_id, timeout, keep)

    async def _join(
        self, tracking_id: str, timeout: float, keep: Callable[[str], bool] | None
    ) -> tuple[str, asyncio.Queue[str]]:
        """Listen to the job's channel (see :meth:`listen`): the channel and its new queue."""
        if not self._may_start():
            await self._turn()
        channel = self.store.job_channel(tracking_id)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._queues.setdefault(channel, {})[queue] = keep
        self._leaving.discard(channel)  # not sent yet: it stays subscribed
        if channel in self._confirmed:
            return channel, queue
        confirmed = asyncio.get_running_loop().create_future()
        self._confirming.setdefault(channel, []).append(confirmed)
        if channel not in self._subscribing:
            self._joining.add(channel)
            self._send_soon()
        late = asyncio.get_running_loop().call_later(timeout, _expire, confirmed, channel)
        try:
            await confirmed
        except BaseException:
            self._forget(channel, queue, confirmed)
            raise
        finally:
            late.cancel()
        return channel, queue

    def _may_start(self) -> bool:
        """True when a new listener may start now: BATCH start in one iteration of the loop
        at most (a thousand coroutines started together take a few iterations, not one long
        one); the others wait for their :meth:`_turn`."""
        if not self._admitting:
            self._admitting = True
            asyncio.get_running_loop().call_soon(self._admit)
        if self._admitted < BATCH and not self._turns:
            self._admitted += 1
            return True
        return False

    async def _turn(self) -> None:
        turn = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        await turn

    def _admit(self) -> None:
        """Another iteration: the next BATCH listeners start."""
        self._admitting = False
        self._admitted = 0
        while self._turns and self._admitted < BATCH:
            turn = self._turns.popleft()
            if not turn.done():  # else cancelled while it waited
                turn.set_result(None)
                self._admitted += 1
        if self._admitted:  # they start in the next iteration: count them in it
            self._admitting = True
            asyncio.get_running_loop().call_soon(self._admit)

    def _forget(
        self, channel: str, queue: asyncio.Queue[str], confirmed: asyncio.Future[None] | None
    ) -> None:
        listeners = self._confirming.get(channel)
        if confirmed is not None and listeners is not None and confirmed in listeners:
            listeners.remove(confirmed)
        queues = self._queues.get(channel, {})
        queues.pop(queue, None)
        if queues:
            return
        self._queues.pop(channel, None)
        self._confirming.pop(channel, None)
        if channel in self._joining:  # never sent: nothing to undo
            self._joining.discard(channel)
            return
        self._leaving.add(channel)
        if self._sender is None and self._send_later is None:
            loop = asyncio.get_running_loop()
            self._send_later = loop.call_later(UNSUBSCRIBE_DELAY, self._send_soon)

    def _send_soon(self) -> None:
        if self._send_later is not None:
            self._send_later.cancel()
            self._send_later = None
        if self._sender is None and not self.closed:
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
                    self._gather()
        finally:
            for timer in (self._send_later, self._resume):
                if timer is not None:
                    timer.cancel()
            with contextlib.suppress(Exception):  # closing on the way out: nothing to tell
                await self._pubsub.aclose()
            with contextlib.suppress(Exception):
                await self._client.aclose()

    def _gather(self) -> None:
        """While messages come often, let them gather: the connection is not read for GATHER
        seconds after a message (what came meanwhile is read at once after), so a thousand
        jobs' events wake the process a few dozen times a second, not once each. A message
        alone (none in the GATHER before) is read as it comes."""
        now = asyncio.get_running_loop().time()
        busy, self._last_message = now - self._last_message < GATHER, now
        if not busy or self._resume is not None:
            return
        transport = _transport(self._pubsub)
        if transport is None:
            return
        transport.pause_reading()
        self._resume = asyncio.get_running_loop().call_later(
            GATHER, self._resume_reading, transport
        )

    def _resume_reading(self, transport: asyncio.Transport) -> None:
        self._resume = None
        transport.resume_reading()  # nothing if it was closed meanwhile

    def _deliver(self, message: dict[str, Any]) -> None:
        channel = str(message["channel"])
        kind = message["type"]
        if kind == "message":
            data = str(message["data"])
            for queue, keep in self._queues.get(channel, {}).items():
                if keep is None or _kept(keep, data):
                    queue.put_nowait(data)
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


def _transport(pubsub: aioredis.client.PubSub) -> asyncio.Transport | None:
    """The pub/sub connection's transport, when redis-py shows it (its connections keep their
    stream writer as ``_writer``); None otherwise (the reader then never pauses)."""
    writer = getattr(pubsub.connection, "_writer", None)
    transport = getattr(writer, "transport", None)
    return transport if isinstance(transport, asyncio.Transport) else None


def _expire(confirmed: asyncio.Future[None], channel: str) -> None:
    if not confirmed.done():
        confirmed.set_exception(
            TimeoutError(f"Redis did not confirm the subscription to {channel}")
        )


def _kept(keep: Callable[[str], bool], event: str) -> bool:
    """``keep(event)``, or True when it cannot tell (the waiter reads the record)."""
    try:
        return keep(event)
    except Exception:
        return True


class _Listening:
    """:meth:`AsyncWaiters.listen`'s context (a class: an async generator's would cost every
    waiter a generator and the loop's bookkeeping of it)."""

    __slots__ = ("_keep", "_listened", "_timeout", "_tracking_id", "_waiters")

    def __init__(
        self,
        waiters: AsyncWaiters,
        tracking_id: str,
        timeout: float,
        keep: Callable[[str], bool] | None,
    ) -> None:
        self._waiters, self._tracking_id, self._timeout, self._keep = (
            waiters, tracking_id, timeout, keep,
        )  # fmt: skip
        self._listened: tuple[str, asyncio.Queue[str]] | None = None

    async def __aenter__(self) -> asyncio.Queue[str]:
        self._listened = await self._waiters._join(self._tracking_id, self._timeout, self._keep)
        return self._listened[1]

    async def __aexit__(self, *_: object) -> None:
        if self._listened is not None:
            self._waiters._forget(*self._listened, None)
            self._listened = None


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
