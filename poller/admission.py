"""Admission: submit_job's arguments validated into a JobSpec and a PollPolicy, in the caller
before the message is sent and again in the worker (a message sent by name is checked there).

A bad value raises InvalidJobSpec naming the field: poller's rules and AWS's limits
(:mod:`poller.models`), nested AWS values against botocore's model of SubmitJob, and the
profile against ``POLLER_AWS_PROFILES``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from poller.aws.batch import check_request
from poller.aws.targets import check_profile
from poller.errors import InvalidJobSpec
from poller.models import (
    POSITIONAL,
    JobSpec,
    PollPolicy,
    ResubmitPolicy,
    validate_poll,
    validate_resubmit,
    validate_spec,
)
from poller.settings import Settings


def resubmit_policy(settings: Settings, kwargs: dict[str, Any]) -> ResubmitPolicy | None:
    """The job's ``resubmit`` (or POLLER_RESUBMIT's); InvalidJobSpec names a bad field."""
    return validate_resubmit(kwargs.get("resubmit"), settings.resubmit)


class Admission(NamedTuple):
    """A submission's arguments, validated: what its record is made of."""

    spec: JobSpec
    poll: PollPolicy
    idempotency_key: str | None
    resubmit: ResubmitPolicy | None


def validate(settings: Settings, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Admission:
    """Validate submit_job's arguments, once per submission; InvalidJobSpec names the first
    bad field."""
    fields = dict(kwargs)
    poll = fields.pop("poll", None)
    resubmit = resubmit_policy(settings, {"resubmit": fields.pop("resubmit", None)})
    idempotency_key = fields.pop("idempotency_key", None)
    if len(args) > len(POSITIONAL):
        raise InvalidJobSpec(
            f"invalid job spec: takes {len(POSITIONAL)} positional arguments "
            f"({', '.join(POSITIONAL)}), got {len(args)}; pass the others by keyword"
        )
    positional = dict(zip(POSITIONAL, args, strict=False))
    spec = validate_spec(**{**positional, **fields})
    check_request(spec)  # nested AWS values against botocore's model of SubmitJob
    if spec.aws_profile is not None:
        check_profile(spec.aws_profile, settings.aws_profiles)
    policy = validate_poll(poll, settings.poll_policy, settings.countdown_limit)
    if idempotency_key is not None and not isinstance(idempotency_key, str):
        raise InvalidJobSpec(
            "invalid job spec: idempotency_key: must be a string", "idempotency_key"
        )
    return Admission(spec, policy, idempotency_key, resubmit)
