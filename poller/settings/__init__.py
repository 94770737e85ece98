"""poller's settings: one typed object, read from ``POLLER_*`` environment variables, and in a
Django project (``DJANGO_SETTINGS_MODULE`` set) from the same names in its settings.py.

This is the only module that reads the environment for poller. AWS settings (region, credentials,
endpoint) are deliberately not here: boto3 reads them through its own chain (``AWS_DEFAULT_REGION``,
``AWS_PROFILE``, instance roles, ``AWS_ENDPOINT_URL_BATCH``, ...), as operators expect.
``config/poller.env.example`` documents every field below, with its default. It may import
``poller.models`` and ``poller.errors`` only (import-linter's contracts in pyproject.toml).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from poller.errors import ConfigurationError
from poller.models import Limits, PollPolicy, ResubmitPolicy
from poller.settings.django_source import (
    DjangoSettingsSource,
    django_settings_module,
    put_project_on_path,
)
from poller.settings.values import DEFAULT_CALL_RATES, call_rates, checked_url, mask_url

__all__ = [
    "DEFAULT_CALL_RATES",
    "DjangoSettingsSource",
    "Settings",
    "call_rates",
    "django_settings_module",
    "get_settings",
    "mask_url",
    "put_project_on_path",
]

# What each client accepts: Celery's Redis result backend, its brokers (Redis or RabbitMQ), and
# redis-py (records).
CELERY_REDIS_SCHEMES = frozenset({"redis", "rediss", "sentinel", "redis+socket"})
RABBITMQ_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
BROKER_SCHEMES = CELERY_REDIS_SCHEMES | RABBITMQ_SCHEMES
REDIS_PY_SCHEMES = frozenset({"redis", "rediss", "unix", "sentinel"})
# What a check may take between its countdown's end and its ack (DescribeJobs, retried), kept
# inside RabbitMQ's consumer_timeout along with the countdown.
CHECK_RUN_MARGIN = 60


class Settings(BaseSettings):
    """Every poller setting, with its default. Environment variable: ``POLLER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="POLLER_", frozen=True, extra="ignore")

    broker_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description=(
            "Celery broker URL: Redis (redis://, rediss://, sentinel://) or RabbitMQ (amqp://, "
            "amqps://; the records then need POLLER_REDIS_URL)."
        ),
    )
    redis_url: SecretStr | None = Field(
        None, description="Redis URL for job records and events; defaults to broker_url."
    )
    sentinel_master: str | None = Field(
        None,
        description=(
            "The master's name the Sentinels know, for every sentinel:// URL (broker, result "
            "backend, records): sentinel://h1:26379;sentinel://h2:26379;sentinel://h3:26379/0."
        ),
    )
    sentinel_password: SecretStr | None = Field(
        None,
        description=(
            "The Sentinels' own password, when they need one (the master's is the URL's)."
        ),
    )
    result_backend: SecretStr | None = Field(
        None, description="Celery result backend URL; defaults to redis_url."
    )
    queue: str = Field(
        "poller",
        min_length=1,
        description=(
            "The broker queue of poller's tasks, whichever process sends them; checks sent to "
            "run now (a job's end) go to `<queue>.checks`. `celery -A poller worker` consumes "
            "both (and only them) unless given -Q."
        ),
    )
    app_queue: str = Field(
        "celery",
        min_length=1,
        description=(
            "Where poller's worker sends the app's own tasks that follow a poller step "
            "(chain and chord steps, links) when they name no queue: the app's default queue."
        ),
    )
    imports: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated modules poller's worker imports at start (the app's signal "
            "receivers, say); one that fails to import stops the worker."
        ),
    )
    key_prefix: str = Field(
        "poller", min_length=1, description="Prefix of every Redis key and channel poller uses."
    )
    record_ttl: int = Field(
        7 * 24 * 3600,
        gt=0,
        description="Seconds a finished job's record (and Celery result) is kept in Redis.",
    )
    visibility_timeout: int = Field(
        3600,
        gt=0,
        description=(
            "Seconds the Redis broker waits for an ack before redelivering a message; must be "
            "above poll_max_delay, since a check's countdown message stays unacked until due."
        ),
    )
    broker_consumer_timeout: int = Field(
        1800,
        gt=CHECK_RUN_MARGIN,
        description=(
            "RabbitMQ only: the server's consumer_timeout in seconds (30 min unless changed in "
            "rabbitmq.conf). RabbitMQ closes the channel of a consumer holding a delivery unacked "
            "for longer, and a check's countdown message stays unacked until due: the longest "
            "countdown plus 60 s for the check to run must fit in it."
        ),
    )
    poll_initial_delay: float = Field(5.0, gt=0, description="Seconds before the first check.")
    poll_max_delay: float = Field(25.0, gt=0, description="Cap on the seconds between checks.")
    poll_factor: float = Field(2.0, ge=1, description="Growth of the delay from check to check.")
    poll_jitter: float = Field(
        0.2, ge=0, le=1, description="Share of each delay taken off at random (0 = none)."
    )
    poll_align: bool = Field(
        True,
        description=(
            "Move each check to the fleet's tick grid of its base delay (never later): checks "
            "due together share one DescribeJobs call of up to 100 jobs across workers."
        ),
    )
    poll_max_checks: int = Field(
        10_000, ge=1, description="Status checks before poller gives up (TIMED_OUT)."
    )
    poll_max_wait: float = Field(
        7 * 24 * 3600.0, gt=0, description="Seconds after submission before poller gives up."
    )
    poll_terminate_on_give_up: bool = Field(
        False, description="Terminate the Batch job when poller gives up on it."
    )
    not_found_grace: float = Field(
        120.0,
        gt=0,
        description=(
            "Seconds a submitted job may be missing from DescribeJobs (not visible yet) before "
            "poller ends it as FAILED (AWS keeps finished jobs for about 24 hours)."
        ),
    )
    stuck_after: float = Field(
        3600.0,
        gt=0,
        description="Seconds in RUNNABLE after which job_stuck is sent (once per job).",
    )
    give_up_when_stuck: bool = Field(
        False, description="End a stuck job as TIMED_OUT (and terminate it) instead of waiting."
    )
    resubmit: ResubmitPolicy | None = Field(
        None,
        description=(
            'Default resubmit policy of jobs, as JSON: {"on": ["host_terminated"], "max": 1, '
            '"queue": "fallback-queue", "memory_factor": 2}. None: a failed job is not resubmitted.'
        ),
    )
    reconcile_interval: float = Field(
        30.0,
        gt=0,
        description=(
            "Seconds between reconcile passes (run by one worker at a time, on a Redis lock): "
            "active jobs whose check is overdue are given a new one."
        ),
    )
    reconcile_grace: float = Field(
        60.0,
        gt=0,
        description=(
            "Seconds a job's check may be late before the reconciler assumes its message was "
            "lost (worker killed, broker flushed) and schedules another."
        ),
    )
    coalesce: bool = Field(
        True,
        description=(
            "Share DescribeJobs calls: a check also describes up to 99 other jobs due soon, "
            "whose own checks then use that observation. Off: one call per check."
        ),
    )
    coalesce_window: float = Field(
        3.0,
        gt=0,
        description=(
            "Seconds ahead a check looks for due jobs to describe with its own, and the oldest "
            "stored observation a check may use (it adds at most this much detection lag)."
        ),
    )
    submit_lease: float = Field(
        60.0,
        gt=5,
        description=(
            "Seconds one SubmitJob call may take (its read timeout is shorter); no other "
            "attempt submits the same job meanwhile, and one that finds the lease expired "
            "looks for the job the earlier attempt may have created."
        ),
    )
    lease_replication_timeout: float = Field(
        1.0,
        ge=0,
        description=(
            "Seconds to wait, before SubmitJob, for a replica of poller's Redis to confirm the "
            "submission's lease (Redis WAIT); past it, the submission goes on and a warning is "
            "logged. 0: do not wait. Without replicas, nothing is waited for."
        ),
    )
    aws_max_attempts: int = Field(
        3, ge=1, description="botocore 'standard' retry mode attempts per AWS call."
    )
    aws_call_rates: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_CALL_RATES),
        description=(
            "The fleet's AWS call budget, calls a second per account and region for each call "
            "family (SubmitJob, DescribeJobs with ListJobs, TerminateJob with CancelJob, "
            "GetLogEvents), as SubmitJob=50,DescribeJobs=20; a family not named keeps its "
            "default, 0 means no budget. Shared by every worker through Redis."
        ),
    )
    aws_profiles: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated profiles of the AWS config that jobs may name (aws_profile). "
            "Empty: none, every job uses the worker's default session. Whoever can send "
            "poller a task (the broker, Redis, Flower) can run Batch jobs under each of them."
        ),
    )
    aws_config_grace: float = Field(
        300.0,
        gt=0,
        description=(
            "Seconds a job may wait on an AWS error about poller's configuration (no or "
            "expired credentials, access denied) before it ends: REJECTED before submission, "
            "TIMED_OUT after. Meanwhile its record says why it waits."
        ),
    )
    aws_retry_delay: float = Field(
        5.0,
        gt=0,
        description=(
            "Seconds before a check or submit that AWS throttled (or answered 5xx) runs again; "
            "grows like the poll delay and does not use up the job's checks."
        ),
    )

    metrics: bool = Field(
        True,
        description=(
            "Count job metrics (statuses, transitions, lags, AWS calls) in Redis for `poller "
            "metrics`, in the same transaction as each record change."
        ),
    )
    events_queue_url: str | None = Field(
        None,
        description=(
            "URL of the SQS queue receiving AWS Batch's job state-change events (EventBridge; "
            "`poller events setup` creates it), or several, comma-separated (one per region or "
            "account). Set: each worker consumes them, and job ends are noticed in about a "
            "second; polling goes on as the safety net."
        ),
    )
    events_receivers: int = Field(
        4,
        ge=1,
        le=64,
        description=(
            "Threads per worker receiving and applying Batch events; each waits on SQS most "
            "of the time, so several keep up with a burst of job transitions."
        ),
    )
    events_confirm: Literal["none", "terminal"] = Field(
        "none",
        description=(
            "terminal: a job's end (SUCCEEDED, FAILED) from an event is applied only once "
            "DescribeJobs confirms it (the job's check runs at once; the checks of ends that "
            "arrive together share their calls), so a forged event cannot end a running job. "
            "none: events are applied as they come, with no AWS call."
        ),
    )
    events_poll_max_delay: float = Field(
        600.0,
        gt=0,
        description=(
            "Seconds between a job's checks while events flow (the safety net's cap); must be "
            "below the visibility timeout."
        ),
    )
    events_silence: float = Field(
        180.0,
        gt=0,
        description=(
            "Seconds without any event (or with the queue unreachable) after which checks go "
            "back to the poll policy's own delays."
        ),
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then a Django project's settings.py, then defaults."""
        return (init_settings, env_settings, DjangoSettingsSource(settings_cls))

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_url(value, BROKER_SCHEMES)

    @field_validator("result_backend")
    @classmethod
    def _backend_url(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_url(value, CELERY_REDIS_SCHEMES)

    @field_validator("redis_url")
    @classmethod
    def _records_url(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_url(value, REDIS_PY_SCHEMES)

    @field_validator("aws_call_rates", mode="before")
    @classmethod
    def _call_rates(cls, value: Any) -> Any:
        return call_rates(value)

    @field_validator("imports", "aws_profiles", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _check_together(self) -> Settings:
        if self.poll_max_delay < self.poll_initial_delay:
            raise ValueError(
                f"POLLER_POLL_MAX_DELAY ({self.poll_max_delay}) must be >= "
                f"POLLER_POLL_INITIAL_DELAY ({self.poll_initial_delay})"
            )
        sentinel_urls = [
            name
            for name, url in (
                ("POLLER_BROKER_URL", self.broker_url),
                ("POLLER_RESULT_BACKEND", self.result_backend),
                ("POLLER_REDIS_URL", self.redis_url),
            )
            if url is not None and url.get_secret_value().startswith("sentinel://")
        ]
        if sentinel_urls and not self.sentinel_master:
            raise ValueError(
                f"POLLER_SENTINEL_MASTER is required: {', '.join(sentinel_urls)} "
                "name Sentinels, which need the master's name"
            )
        broker_scheme = urlsplit(self.broker_url.get_secret_value()).scheme
        if self.redis_url is None and broker_scheme not in REDIS_PY_SCHEMES:
            raise ValueError(
                f"POLLER_REDIS_URL is required when POLLER_BROKER_URL is {broker_scheme}:// "
                "(the job records need a redis://, rediss://, unix:// or sentinel:// URL)"
            )
        limit, limit_rule = self.countdown_limit
        countdowns = {"POLLER_POLL_MAX_DELAY": self.poll_max_delay}
        if self.events_queue_url is not None:
            countdowns["POLLER_EVENTS_POLL_MAX_DELAY"] = self.events_poll_max_delay
        for name, countdown in countdowns.items():
            if countdown >= limit:
                raise ValueError(f"{name} ({countdown}s) must be below {limit_rule}")
        return self

    def masked(self) -> dict[str, Any]:
        """Every setting for display, with passwords in URLs replaced by ``***``."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = mask_url(value.get_secret_value())
            shown[name] = value
        return shown

    @property
    def events_queue_urls(self) -> list[str]:
        """Every events queue (``events_queue_url`` may name several, comma-separated)."""
        urls = (self.events_queue_url or "").split(",")
        return [url.strip() for url in urls if url.strip()]

    @property
    def broker_is_rabbitmq(self) -> bool:
        """Whether the broker is RabbitMQ (amqp:// or amqps://) rather than Redis."""
        return urlsplit(self.broker_url.get_secret_value()).scheme in RABBITMQ_SCHEMES

    @property
    def poll_policy(self) -> PollPolicy:
        """The poll policy of a job that overrides none of it: the one source of its defaults
        (a job's ``poll`` overrides are merged into this)."""
        return PollPolicy(
            initial_delay=self.poll_initial_delay,
            max_delay=self.poll_max_delay,
            factor=self.poll_factor,
            jitter=self.poll_jitter,
            max_checks=self.poll_max_checks,
            max_wait=self.poll_max_wait,
            terminate_on_give_up=self.poll_terminate_on_give_up,
            # The fleet's stuck_after with give_up_when_stuck is the per-job max_runnable's default
            max_runnable=self.stuck_after if self.give_up_when_stuck else None,
            align=self.poll_align,
        )

    @property
    def limits(self) -> Limits:
        """The time limits every check applies (the fleet's, not a job's)."""
        return Limits(
            not_found_grace=self.not_found_grace,
            stuck_after=self.stuck_after,
            give_up_when_stuck=self.give_up_when_stuck,
        )

    @property
    def countdown_limit(self) -> tuple[float, str]:
        """The longest countdown a check may wait with its message unacked, and the rule that
        sets it: Redis redelivers a message unacked for the visibility timeout (it would be
        checked twice); RabbitMQ closes the channel of a consumer holding one for longer than
        its consumer_timeout."""
        if self.broker_is_rabbitmq:
            limit = self.broker_consumer_timeout - CHECK_RUN_MARGIN
            return limit, (
                f"POLLER_BROKER_CONSUMER_TIMEOUT ({self.broker_consumer_timeout}s, RabbitMQ's "
                f"consumer_timeout) less {CHECK_RUN_MARGIN}s for the check to run: RabbitMQ "
                "would close the channel of the worker holding the countdown message"
            )
        return self.visibility_timeout, (
            f"POLLER_VISIBILITY_TIMEOUT ({self.visibility_timeout}s): a check's countdown "
            "message would be redelivered by the Redis broker before it is due, and checked twice"
        )

    @property
    def effective_redis_url(self) -> str:
        """The Redis URL for job records: ``redis_url``, else ``broker_url``."""
        return (self.redis_url or self.broker_url).get_secret_value()

    @property
    def check_queue(self) -> str:
        """The broker queue of checks sent to run now: a job's end is never queued behind a
        burst of submissions (a worker takes from both queues in turn)."""
        return f"{self.queue}.checks"

    @property
    def effective_result_backend(self) -> str:
        """The Celery result backend URL: ``result_backend``, else the records' Redis URL."""
        if self.result_backend is not None:
            return self.result_backend.get_secret_value()
        return self.effective_redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process's settings, read once; ConfigurationError names what is wrong."""
    try:
        return Settings()
    except ValidationError as err:
        problems = "; ".join(_describe(error) for error in err.errors())
        raise ConfigurationError(f"invalid poller settings: {problems}") from err


def _describe(error: Any) -> str:
    """One pydantic error as ``POLLER_<FIELD>: message`` (the variable the operator sets)."""
    names = [f"POLLER_{str(part).upper()}" for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{', '.join(names)}: {message}" if names else message
