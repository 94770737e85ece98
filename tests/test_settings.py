from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from poller.app import celery_config, restore_sweep_seconds
from poller.errors import ConfigurationError
from poller.settings import Settings, get_settings, mask_url
from poller.store.base import sentinel_hosts


@pytest.fixture(autouse=True)
def _no_poller_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings tests see defaults, not the variables other tests' fixtures exported."""
    for name in list(os.environ):
        if name.startswith("POLLER_"):
            monkeypatch.delenv(name)


def test_defaults_are_consistent() -> None:
    settings = Settings()
    assert settings.poll_max_delay < settings.visibility_timeout
    assert settings.effective_redis_url == settings.broker_url.get_secret_value()
    assert settings.effective_result_backend == settings.effective_redis_url


def test_a_backoff_cap_at_the_visibility_timeout_is_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a cap that would outlive the broker's visibility timeout
    monkeypatch.setenv("POLLER_POLL_MAX_DELAY", "3600")
    monkeypatch.setenv("POLLER_VISIBILITY_TIMEOUT", "3600")
    get_settings.cache_clear()
    try:
        # When the settings are read, Then start-up is refused naming both settings
        with pytest.raises(
            ConfigurationError, match="POLLER_POLL_MAX_DELAY.*POLLER_VISIBILITY_TIMEOUT"
        ):
            get_settings()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_secrets_are_masked_in_repr() -> None:
    settings = Settings(broker_url="redis://:hunter2@host:6379/0")  # type: ignore[arg-type]
    assert "hunter2" not in repr(settings)
    assert settings.effective_redis_url == "redis://:hunter2@host:6379/0"


def test_stranded_messages_are_swept_for_every_few_seconds() -> None:
    # kombu's default sweep (10 s x throttle 10) would bring a message back ~100 s late
    assert [restore_sweep_seconds(t) for t in (3600, 60, 8, 1)] == [5, 3, 1, 1]
    options = celery_config()["broker_transport_options"]
    assert options["unacked_restore_throttle"] == 1
    assert options["unacked_restore_interval"] == restore_sweep_seconds(
        options["visibility_timeout"]
    )


@pytest.mark.parametrize("url", ["htp://127.0.0.1:6379/0", "127.0.0.1:6379", "sqs://x"])
def test_a_bad_broker_url_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("POLLER_BROKER_URL", url)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="POLLER_BROKER_URL: must be a amqp://"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_a_sentinel_broker_may_keep_the_records_on_another_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The records follow the broker's Sentinels unless POLLER_REDIS_URL names another Redis
    monkeypatch.setenv("POLLER_BROKER_URL", "sentinel://127.0.0.1:26379/0")
    monkeypatch.setenv("POLLER_SENTINEL_MASTER", "poller")
    assert Settings().effective_redis_url == "sentinel://127.0.0.1:26379/0"
    monkeypatch.setenv("POLLER_REDIS_URL", "redis://127.0.0.1:6379/1")
    assert Settings().effective_redis_url == "redis://127.0.0.1:6379/1"
    # And Celery's Sentinel clients get the master's name
    monkeypatch.setenv("POLLER_SENTINEL_PASSWORD", "s")
    get_settings.cache_clear()
    try:
        config = celery_config()
    finally:
        get_settings.cache_clear()
    for options in ("broker_transport_options", "result_backend_transport_options"):
        assert config[options]["master_name"] == "poller"
        assert config[options]["sentinel_kwargs"] == {"password": "s"}


def test_a_rabbitmq_broker_needs_a_records_url_and_sends_no_redis_transport_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given RabbitMQ as the broker
    monkeypatch.setenv("POLLER_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    # Then the records' Redis must be named
    with pytest.raises(
        ValueError, match="POLLER_REDIS_URL is required when POLLER_BROKER_URL is amqp"
    ):
        Settings()
    monkeypatch.setenv("POLLER_REDIS_URL", "redis://127.0.0.1:6379/1")
    settings = Settings()
    assert settings.broker_is_rabbitmq
    assert settings.effective_result_backend == "redis://127.0.0.1:6379/1"
    # And the Redis broker's options (visibility timeout, unacked keys) are not sent to kombu
    get_settings.cache_clear()
    try:
        assert celery_config()["broker_transport_options"] == {}
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("POLLER_POLL_MAX_DELAY", "1750"), ("POLLER_EVENTS_POLL_MAX_DELAY", "1741")],
)
def test_on_rabbitmq_a_countdown_that_outlives_the_consumer_timeout_is_refused(
    monkeypatch: pytest.MonkeyPatch, setting: str, value: str
) -> None:
    # Given RabbitMQ with its default consumer_timeout (1800 s)
    monkeypatch.setenv("POLLER_BROKER_URL", "amqps://u:p@mq.example.com:5671//")
    monkeypatch.setenv("POLLER_REDIS_URL", "redis://127.0.0.1:6379/1")
    monkeypatch.setenv("POLLER_EVENTS_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q")
    # Then countdowns up to 1800 - 60 s are accepted, whatever the visibility timeout
    monkeypatch.setenv("POLLER_VISIBILITY_TIMEOUT", "10")
    monkeypatch.setenv(setting, "1739")
    assert Settings().countdown_limit[0] == 1740
    # And a longer one is refused, naming the setting and RabbitMQ's rule
    monkeypatch.setenv(setting, value)
    with pytest.raises(
        ValueError, match=f"{setting} .* must be below POLLER_BROKER_CONSUMER_TIMEOUT"
    ):
        Settings()
    # Unless the server's consumer_timeout was raised and said so
    monkeypatch.setenv("POLLER_BROKER_CONSUMER_TIMEOUT", "3600")
    assert Settings().countdown_limit[0] == 3540


def test_sentinel_urls_need_the_masters_name() -> None:
    url = "sentinel://:pw@h1:26379;sentinel://:pw@h2:26379;sentinel://:pw@h3:26379/0"
    with pytest.raises(
        ValidationError, match="POLLER_SENTINEL_MASTER is required: POLLER_BROKER_URL"
    ):
        Settings(broker_url=url)
    settings = Settings(broker_url=url, sentinel_master="poller")
    # The records may live there too, and a URL is shown without its passwords
    assert settings.effective_redis_url == url
    assert "pw" not in mask_url(url) and mask_url(url).count(":***@") == 3


def test_a_sentinel_url_names_its_sentinels_the_masters_password_and_database() -> None:
    hosts, password, db = sentinel_hosts("sentinel://:s%40cret@h1:26379;sentinel://h2:26380/2")
    assert (hosts, password, db) == ([("h1", 26379), ("h2", 26380)], "s@cret", 2)
    with pytest.raises(ValueError, match="not a sentinel://host:port URL"):
        sentinel_hosts("sentinel://h1:26379;redis://:pw@h2:6379/0")
