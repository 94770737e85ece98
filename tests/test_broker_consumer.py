"""The worker's consumer survives Celery 5.7.0's failures on a connection a broker restart lost."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Message
from kombu.asynchronous import Hub

from poller.worker.broker_consumer import Consumer

DETACHED = "'NoneType' object has no attribute 'hostname'"  # kombu's _connparams, no transport


class LostConnection:
    """A broker connection whose transport ``collect()`` detached: closing it fails."""

    connection_errors = (ConnectionError,)
    channel_errors = ()

    def collect(self, socket_timeout: float | None = None) -> None:
        """Nothing to collect in this stand-in."""

    def close(self) -> None:
        raise AttributeError(DETACHED)


class DetachedChannel:
    """The channel of a lost connection: acks and rejects fail as kombu's redis channel does."""

    no_ack_consumers = None

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        raise AttributeError(DETACHED)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        raise AttributeError(DETACHED)


@pytest.fixture
def hub() -> Iterator[Hub]:
    loop = Hub()
    yield loop
    loop.close()


def consumer_on(hub: Hub, cls: type[CeleryConsumer]) -> Any:
    """A consumer of ``cls`` with only what ``call_soon_ack`` reads."""
    consumer = object.__new__(cls)
    consumer.hub = hub
    return consumer


def message_on_lost_channel() -> Message:
    return Message(body=b"{}", channel=DetachedChannel(), delivery_tag="tag-7")


def run_ready_callbacks(hub: Hub) -> None:
    """One turn of the worker's event loop: the queued callbacks run, as in asynloop."""
    next(hub.loop)


def test_a_failing_close_is_logged_and_the_rest_of_celerys_handling_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a consumer whose broker connection was lost (only what the handler reads is set)
    consumer = object.__new__(Consumer)
    consumer.connection = LostConnection()
    consumer.app = SimpleNamespace(
        conf=SimpleNamespace(
            worker_cancel_long_running_tasks_on_connection_loss=True,
            worker_enable_prefetch_count_reduction=True,
        )
    )
    consumer.qos_global = None
    consumer.prefetch_multiplier, consumer.pool = 4, SimpleNamespace(num_processes=16)
    # When Celery handles the connection error
    consumer.on_connection_error_after_connected(ConnectionError("Connection closed by server."))
    # Then the connection is dropped, the failed close is logged, and Celery went on to reset
    # the prefetch count for the next connection
    assert consumer.connection is None
    assert "closing the lost broker connection failed" in caplog.text
    assert consumer.initial_prefetch_count == 64


@pytest.mark.parametrize(
    ("operation", "args"),
    [("ack_log_error", ()), ("reject_log_error", (False,)), ("reject_log_error", (True,))],
    ids=["ack", "reject", "requeue"],
)
def test_an_ack_pending_on_a_lost_connection_is_logged_not_raised_into_the_loop(
    hub: Hub, caplog: pytest.LogCaptureFixture, operation: str, args: tuple[Any, ...]
) -> None:
    # Given a task finished while its connection was lost: its ack/reject is queued on the loop
    consumer = consumer_on(hub, Consumer)
    message = message_on_lost_channel()
    log = logging.getLogger("celery.worker")
    consumer.call_soon_ack(getattr(message, operation), log, (ConnectionError,), *args)
    # When the event loop runs it
    with caplog.at_level(logging.WARNING, logger="poller.worker.broker_consumer"):
        run_ready_callbacks(hub)
    # Then the loop carries on, and the log says what happened to the message
    assert "of message tag-7 failed (its broker connection was lost)" in caplog.text
    assert DETACHED in caplog.text


def test_celerys_own_consumer_lets_that_failure_end_the_loop(hub: Hub) -> None:
    # This pins the upstream bug poller's consumer works around: when a Celery release stops
    # raising here, this test fails, and poller.worker.broker_consumer's call_soon_ack can go.
    consumer = consumer_on(hub, CeleryConsumer)
    message = message_on_lost_channel()
    consumer.call_soon_ack(message.ack_log_error, logging.getLogger(), (ConnectionError,))
    with pytest.raises(AttributeError, match="hostname"):
        run_ready_callbacks(hub)
