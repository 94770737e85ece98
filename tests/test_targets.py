"""Per-job AWS targets: which profile and region a job goes to, without AWS (a config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from poller.aws.sqs import queue_region
from poller.aws.targets import Targets, check_profile
from poller.errors import InvalidJobSpec, ProfileNotAllowed
from poller.models import validate_spec

CONFIG = """\
[default]
region = us-east-1

[profile west]
region = us-west-2
aws_access_key_id = a
aws_secret_access_key = b

[profile no-region]
aws_access_key_id = a
aws_secret_access_key = b
"""


class FakeClient:
    def __init__(self, region: str | None, session: Any = None) -> None:
        self.region = region
        self.session = session


@pytest.fixture
def targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Targets:
    config = tmp_path / "config"
    config.write_text(CONFIG)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")  # the worker's default session
    return Targets(
        FakeClient("eu-central-1"),
        lambda session, region: FakeClient(region, session),
        allowed=ALLOWED,
    )


ALLOWED = ("west", "no-region", "gone", "nope")


def test_a_profile_goes_to_its_own_region_and_an_override_wins(targets: Targets) -> None:
    assert targets.region(None, None) == "eu-central-1"
    assert targets.region("west", None) == "us-west-2"  # over AWS_DEFAULT_REGION
    assert targets.region("west", "ap-south-1") == "ap-south-1"
    assert targets.region("no-region", None) == "eu-central-1"  # boto3's own chain
    assert targets.batch(None, None) is targets.default
    assert targets.batch(None, "eu-central-1") is targets.default


def test_one_client_per_target_however_many_jobs(targets: Targets) -> None:
    first = targets.batch("west", None)
    assert targets.batch("west", "us-west-2") is first
    assert first.region == "us-west-2"
    assert targets.batch("west", "ap-south-1") is not first
    assert targets.batch(None, "ap-south-1").region == "ap-south-1"


def test_an_unknown_profile_is_refused_naming_the_field(targets: Targets) -> None:
    check_profile("west", ALLOWED)
    with pytest.raises(InvalidJobSpec, match="no profile 'nope'") as refused:
        check_profile("nope", ALLOWED)
    assert refused.value.field == "aws_profile"
    assert "west" not in str(refused.value)  # the profiles there are stay unsaid


def test_a_profile_not_allowed_is_refused_naming_only_itself(targets: Targets) -> None:
    # Given "west" configured, and POLLER_AWS_PROFILES allowing only "no-region"
    # When a job names "west", Then it is refused, and the message names no allowed profile
    with pytest.raises(ProfileNotAllowed, match="profile 'west' is not allowed") as refused:
        check_profile("west", ("no-region",))
    assert refused.value.field == "aws_profile"
    assert "no-region" not in str(refused.value)
    # Nothing is allowed by default
    with pytest.raises(ProfileNotAllowed):
        check_profile("west", ())


def test_no_client_is_made_for_a_profile_not_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given targets allowing no profile, and a config that has one (as a stored record may name)
    config = tmp_path / "config"
    config.write_text(CONFIG)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    made: list[Any] = []
    targets = Targets(FakeClient("eu-central-1"), lambda s, r: made.append(r))
    # When any path asks for its clients (submit and check: Batch; logs), Then each is refused
    for service in ("batch", "logs"):
        with pytest.raises(ProfileNotAllowed):
            targets.client("west", None, service)
    with pytest.raises(ProfileNotAllowed):
        targets.region("west", None)
    assert made == []


@pytest.mark.parametrize("region", ["us-east-1", "us-gov-west-1", "eu-central-2"])
def test_region_names_are_accepted(region: str) -> None:
    assert validate_spec("j", "q", "d", aws_region=region).aws_region == region


@pytest.mark.parametrize("region", ["US-EAST-1", "mars", "", "us-east"])
def test_a_malformed_region_is_refused_naming_the_field(region: str) -> None:
    with pytest.raises(InvalidJobSpec) as refused:
        validate_spec("j", "q", "d", aws_region=region)
    assert refused.value.field == "aws_region"


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"),
        ("https://us-west-2.queue.amazonaws.com/123456789012/q", "us-west-2"),
        ("http://127.0.0.1:4566/123456789012/q", None),
    ],
)
def test_an_events_queue_is_read_in_the_region_its_url_names(url: str, region: str | None) -> None:
    assert queue_region(url) == region


def test_a_profile_this_process_does_not_know_is_a_configuration_error(targets: Targets) -> None:
    from poller.errors import BatchMisconfigured

    # (a caller knew it; the worker's AWS config does not)
    with pytest.raises(BatchMisconfigured, match="profile 'gone'"):
        targets.batch("gone", None)


def test_a_profile_naming_only_a_region_keeps_the_default_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from poller.aws.targets import session_for

    config = tmp_path / "config"
    config.write_text("[profile where-only]\nregion = ap-south-1\n" + CONFIG)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    where_only = session_for("where-only")
    assert where_only.region_name == "ap-south-1"
    credentials = where_only.get_credentials()
    assert credentials is not None and credentials.access_key == "from-the-environment"
    # A profile with keys of its own keeps them
    own = session_for("west").get_credentials()
    assert own is not None and own.access_key == "a"
