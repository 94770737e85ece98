"""The local endpoint's WSGI app: Batch calls to `aws_batch_emulator.api.BatchApi`, every other
call (CloudWatch Logs, STS, ...) to moto's dispatcher of services."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from aws_batch_emulator import resources
from aws_batch_emulator.api import BatchApi
from aws_batch_emulator.runtime import BatchRuntime

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# moto picks the service from the SigV4 credential scope: unsigned calls would go to S3.
_UNSIGNED_BATCH_AUTH = (
    f"AWS4-HMAC-SHA256 Credential={resources.ACCESS_KEY_ID}/20240101/{resources.REGION}/batch/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


def endpoint_app(runtime: BatchRuntime) -> WSGIApplication:
    """The app of an endpoint running `runtime`'s jobs. Call it before the runtime's first
    backend exists: moto builds its Batch app from the backend in its registry, which must
    still be moto's own then (`BatchRuntime.backend`)."""
    moto_batch = create_backend_app("batch")
    moto_batch.config["PROPAGATE_EXCEPTIONS"] = True  # to BatchApi, which answers them in JSON
    batch_api = BatchApi(runtime, moto_batch)

    def app_of(service: Any) -> Any:
        # A Batch call the dispatcher gets (one not under /v1/) goes to BatchApi too.
        return batch_api if service == "batch" else create_backend_app(service)

    return _BatchRouting(DomainDispatcherApplication(app_of), batch_api)


class _BatchRouting:
    """Send Batch calls straight to the Batch API, everything else to moto's dispatcher.

    moto's dispatcher works the service out on every request, listing its own package
    directory to do so (about 1 ms a call); Batch calls are most of our traffic. Unsigned
    calls under /v1/ (curl, urllib) are treated as Batch calls in the default region.
    """

    def __init__(self, dispatcher: WSGIApplication, batch_api: WSGIApplication) -> None:
        self._dispatcher = dispatcher
        self._batch_api = batch_api

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith("/v1/"):
            auth = str(environ.get("HTTP_AUTHORIZATION") or "")
            if not auth:
                environ["HTTP_AUTHORIZATION"] = _UNSIGNED_BATCH_AUTH
                return self._batch_api(environ, start_response)
            if "/batch/aws4_request" in auth:
                return self._batch_api(environ, start_response)
        return self._dispatcher(environ, start_response)
