"""The composition root: the process's settings, job store, Batch clients and announcer.

Built here, at the top, and handed down: the core sees them only through its Protocols
(:class:`poller.core.ports.Runtime`, :class:`poller.core.ports.Batch`).

Built on first use, and again in a process forked from one that built them (a prefork pool's,
the worker's events process): the parent's Batch client and its call counter hold sockets, a timer
thread and locks that are the parent's. A test can point the process elsewhere by clearing the
caches (:func:`poller.testing.stack.configure_process`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial

from poller import signals
from poller.aws.aws_calls import CallCounter
from poller.aws.batch import BatchClient
from poller.aws.targets import Targets
from poller.core.ports import Batch
from poller.models import JobRecord, Limits
from poller.models.announcement import Announcement
from poller.settings import Settings, get_settings
from poller.store import JobStore


@dataclass
class ProcessRuntime:
    """The core's :class:`~poller.core.ports.Runtime` in a process: settings, the job store,
    Batch clients (the default session's, and ``targets`` for jobs naming a profile or
    region), and ``announcer``, which sends stored announcements as signals."""

    settings: Settings
    store: JobStore
    batch: Batch
    targets: Targets | None = None
    announcer: Callable[[Sequence[Announcement]], None] = signals.send

    def announce(self, announcements: Sequence[Announcement]) -> None:
        """Send the signals of announcements just stored."""
        self.announcer(announcements)

    def batch_for(self, record: JobRecord) -> Batch:
        """The Batch client of the job's AWS target."""
        if self.targets is None or (record.aws_profile is None and record.aws_region is None):
            return self.batch
        return self.targets.batch(record.aws_profile, record.aws_region)  # type: ignore[no-any-return]

    def region_for(self, record: JobRecord) -> str | None:
        """The region the job goes to (its own once submitted)."""
        if self.targets is None:
            return record.aws_region
        return self.targets.region(record.aws_profile, record.aws_region)

    @property
    def limits(self) -> Limits:
        """The check's time limits, from settings."""
        return self.settings.limits


def store_from_settings(settings: Settings) -> JobStore:
    """A JobStore on the configured Redis."""
    sentinel_password = settings.sentinel_password
    return JobStore.from_url(
        settings.effective_redis_url,
        sentinel_master=settings.sentinel_master,
        sentinel_password=sentinel_password.get_secret_value() if sentinel_password else None,
        prefix=settings.key_prefix,
        record_ttl=settings.record_ttl,
        count_metrics=settings.metrics,
    )


@lru_cache(maxsize=1)
def get_store() -> JobStore:
    """This process's job store, created on first use."""
    return store_from_settings(get_settings())


@lru_cache(maxsize=1)
def get_runtime() -> ProcessRuntime:
    """This process's runtime, created on first use."""
    settings = get_settings()
    store = get_store()
    counter = CallCounter(store.counters) if settings.metrics else None
    create = partial(
        BatchClient.create,
        max_attempts=settings.aws_max_attempts,
        read_timeout=settings.submit_lease - 5,
        counter=counter,
    )
    default = create()
    targets = Targets(
        default,
        lambda session, region: create(session=session, region_name=region),
        allowed=settings.aws_profiles,
    )
    return ProcessRuntime(settings=settings, store=store, batch=default, targets=targets)


def _forget_in_child() -> None:
    get_runtime.cache_clear()
    get_store.cache_clear()


os.register_at_fork(after_in_child=_forget_in_child)
