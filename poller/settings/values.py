"""Settings' values that need more than a type: URLs with their schemes, AWS call rates."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

# AWS's quotas per account and region: SubmitJob's 50/s and GetLogEvents' 25/s are documented;
# Batch throttles its other calls at rates it does not publish, so those are conservative.
DEFAULT_CALL_RATES = {
    "SubmitJob": 50.0,
    "DescribeJobs": 20.0,
    "TerminateJob": 10.0,
    "GetLogEvents": 25.0,
}


def call_rates(value: Any) -> Any:
    """``SubmitJob=50,DescribeJobs=20`` (or a mapping) over the defaults; ValueError names an
    unknown family."""
    if isinstance(value, str):
        value = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
    if isinstance(value, dict):
        value = {str(key).strip(): rate for key, rate in value.items()}
        unknown = sorted(set(value) - set(DEFAULT_CALL_RATES))
        if unknown:
            raise ValueError(f"unknown call families {unknown}: {sorted(DEFAULT_CALL_RATES)}")
        return {**DEFAULT_CALL_RATES, **{key: float(rate) for key, rate in value.items()}}
    return value


def checked_url(value: SecretStr | None, schemes: frozenset[str]) -> SecretStr | None:
    if value is None:
        return None
    url = value.get_secret_value()
    if urlsplit(url).scheme not in schemes:
        accepted = ", ".join(f"{scheme}://" for scheme in sorted(schemes))
        raise ValueError(f"must be a {accepted} URL (got {mask_url(url)!r})")
    return value


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; each of a Sentinel URL's
    ``;``-separated parts alike."""
    if ";" in url:
        return ";".join(mask_url(part) for part in url.split(";"))
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
