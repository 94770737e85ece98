"""Where a job runs in AWS: the profile and region it names, and one boto3 session per profile.

A job may name a profile of the AWS config that ``POLLER_AWS_PROFILES`` allows (``aws_profile``:
its region, and a role to assume with ``role_arn`` and ``source_profile`` or
``credential_source``) and a region (``aws_region``, over the profile's region, or the default
session's). Jobs naming neither use the worker's default
session. A session is built once per profile and its clients once per region: boto3 assumes the
role and refreshes its credentials inside the session, so no call pays for it.

A profile's own ``region`` wins over ``AWS_DEFAULT_REGION`` (which boto3 would otherwise prefer):
naming a profile says where the job goes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any

import boto3
import botocore.session
from botocore.exceptions import BotoCoreError

from poller.errors import BatchMisconfigured, InvalidJobSpec, ProfileNotAllowed

# What makes a profile say who calls AWS; a profile with none of them only says where
CREDENTIAL_KEYS = frozenset(
    {"aws_access_key_id", "role_arn", "credential_process", "sso_session", "sso_start_url",
     "web_identity_token_file"}
)  # fmt: skip
# (a session, the region of its clients) -> a Batch client for them
BatchFactory = Callable[[boto3.session.Session, str | None], Any]


def known_profiles() -> list[str]:
    """The profiles the AWS config and credentials files define."""
    return list(botocore.session.Session().available_profiles)


def check_profile(name: str, allowed: Collection[str]) -> None:
    """InvalidJobSpec naming ``aws_profile`` unless ``name`` is allowed (else ProfileNotAllowed)
    and defined in the AWS config. Neither message lists the profiles there are."""
    if name not in allowed:
        raise ProfileNotAllowed(
            f"invalid job spec: aws_profile: profile {name!r} is not allowed "
            "(POLLER_AWS_PROFILES of the caller and the workers lists the profiles jobs may use)",
            field="aws_profile",
        )
    if name not in known_profiles():
        raise InvalidJobSpec(
            f"invalid job spec: aws_profile: no profile {name!r} in the AWS config "
            "(AWS_CONFIG_FILE, ~/.aws/config)",
            field="aws_profile",
        )


def session_for(profile: str | None) -> boto3.session.Session:
    """A new boto3 session for ``profile`` (None: the default), in the profile's own region.

    A profile without credentials of its own (only a region, say) gets the default credential
    chain: boto3 would drop the environment's credentials for a named profile and find none.
    """
    if profile is None:
        return boto3.session.Session()
    core = botocore.session.Session(profile=profile)
    scoped = core.get_scoped_config()
    region = scoped.get("region")
    if CREDENTIAL_KEYS.isdisjoint(scoped):
        return boto3.session.Session(region_name=region)
    return boto3.session.Session(botocore_session=core, region_name=region)


class Targets:
    """This process's AWS targets: a session per profile, a Batch client per (profile, region).

    The default target (no profile, the default session's region) is ``default``, the worker's
    own client. Thread-safe: sessions are not, so clients are made under a lock.
    """

    def __init__(
        self, default: Any, make_batch: BatchFactory, allowed: Collection[str] = ()
    ) -> None:
        self.default = default
        self._make_batch = make_batch
        self._allowed = frozenset(allowed)
        self._lock = threading.Lock()
        self._sessions: dict[str | None, boto3.session.Session] = {}
        self._clients: dict[tuple[str | None, str | None, str], Any] = {}

    @property
    def default_region(self) -> str | None:
        """The region of the default session (where jobs naming no target go)."""
        return getattr(self.default, "region", None)

    def region(self, profile: str | None, region: str | None) -> str | None:
        """The region jobs of this target go to."""
        with self._lock:
            return self._region(profile, region)

    def batch(self, profile: str | None, region: str | None) -> Any:
        """The Batch client of this target."""
        return self.client(profile, region, "batch")

    def client(self, profile: str | None, region: str | None, service: str) -> Any:
        """A client of ``service`` for this target: poller's Batch client for ``"batch"``
        (the worker's own for the default target), else boto3's (``"logs"``). One lock taken."""
        with self._lock:
            region = self._region(profile, region)
            if service == "batch" and profile is None and region == self.default_region:
                return self.default
            key = (profile, region, service)
            if key not in self._clients:
                session = self._session(profile)
                try:
                    if service == "batch":
                        client = self._make_batch(session, region)
                    else:
                        client = session.client(service, region_name=region)  # type: ignore[call-overload]
                except BotoCoreError as err:  # a profile that cannot make a client
                    target = f"profile {profile!r}" if profile else "the default session"
                    raise BatchMisconfigured(f"{target}, region {region}: {err}") from err
                except ValueError as err:  # botocore: a region name it cannot use
                    raise InvalidJobSpec(
                        f"invalid job spec: aws_region: {err}", field="aws_region"
                    ) from err
                self._clients[key] = client
            return self._clients[key]

    def _region(self, profile: str | None, region: str | None) -> str | None:
        if region is not None:
            return region
        if profile is None:
            return self.default_region
        return self._session(profile).region_name

    def _session(self, profile: str | None) -> boto3.session.Session:
        # The last guard, on every path to AWS (submit, check, cancel, logs): a record in Redis
        # naming a profile is as untrusted as a task message
        if profile is not None and profile not in self._allowed:
            check_profile(profile, self._allowed)
        if profile not in self._sessions:
            try:
                self._sessions[profile] = session_for(profile)
            except BotoCoreError as err:  # the profile left this process's AWS config
                raise BatchMisconfigured(f"profile {profile!r}: {err}") from err
        return self._sessions[profile]


def aws_configuration_problem(session: boto3.session.Session | None = None) -> str | None:
    """What boto3 lacks to call AWS Batch (region, credentials), or None when nothing."""
    session = session or boto3.session.Session()
    if not session.region_name:
        return (
            "no AWS region: set AWS_DEFAULT_REGION (boto3 does not read AWS_REGION), or a "
            "region in the profile named by AWS_PROFILE (~/.aws/config)"
        )
    if session.get_credentials() is None:
        return (
            "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run with an instance or task role"
        )
    return None


def default_region() -> str:
    """The region of boto3's default session ("" when it has none)."""
    return boto3.session.Session().region_name or ""
