"""The account and region a Batch request is served in, worked out as moto works them out.

The front (`aws_batch_emulator.api`) answers some operations from the caller's backend and
holds that backend's lock around the others, which moto answers from the backend it looks up for
the same request. Both must be the same backend, so this follows moto's rules (its
``BaseResponse``): the region from an ``<service>.<region>.amazonaws.com`` host, else from a
``region/<region>`` user agent, else from the SigV4 credential scope, else ``us-east-1``; the
account from ``MOTO_ACCOUNT_ID``, else the ``x-moto-account-id`` header, else the account whose
access key signed the request (the default account for unknown keys, as the dummy ones).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from moto.iam.models import get_account_id_from

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

DEFAULT_REGION = "us-east-1"
"""moto's region for a request that names none."""
_HOST_REGION = re.compile(r"\.(?P<region>[^.]+)\.amazonaws\.com")
_USER_AGENT_REGION = re.compile(r"region/(?P<region>[a-z]{2}-[a-z]+-\d{1})")
_ACCESS_KEY = re.compile(r"AWS.*(?P<access_key>(?<![A-Z0-9])[A-Z0-9]{20}(?![A-Z0-9]))[:/]")
_UNKNOWN_ACCESS_KEY = "AKIAEXAMPLE"
"""The access key moto assumes when it finds none (no account has it)."""


def caller(environ: WSGIEnvironment) -> tuple[str, str]:
    """(account id, region) of a request."""
    return _account(environ), _region(environ)


def _region(environ: WSGIEnvironment) -> str:
    url = f"{environ.get('HTTP_HOST', '')}{environ.get('PATH_INFO', '')}"
    match = _HOST_REGION.search(f"{url}?{environ.get('QUERY_STRING', '')}")
    match = match or _USER_AGENT_REGION.search(str(environ.get("HTTP_USER_AGENT", "")))
    if match:
        return match.group("region")
    auth = str(environ.get("HTTP_AUTHORIZATION") or "")
    scope = auth.split(",")[0].split("/")
    if "AWS4" in auth and len(scope) > 2:
        return scope[2]
    return DEFAULT_REGION


def _account(environ: WSGIEnvironment) -> str:
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    header = environ.get("HTTP_X_MOTO_ACCOUNT_ID")
    if header is not None:
        return str(header)
    match = _ACCESS_KEY.search(str(environ.get("HTTP_AUTHORIZATION") or ""))
    return get_account_id_from(match.group("access_key") if match else _UNKNOWN_ACCESS_KEY)
