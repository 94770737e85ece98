"""The worker's consumer survives Celery 5.7.0's failing close of a lost broker connection."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from poller.consumer import Consumer


class LostConnection:
    """A broker connection whose transport ``collect()`` detached: closing it fails."""

    connection_errors = (ConnectionError,)
    channel_errors = ()

    def collect(self, socket_timeout: float | None = None) -> None:
        """Nothing to collect in this stand-in."""

    def close(self) -> None:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")


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
