"""The errors the local Batch endpoint answers as the caller's fault (HTTP 400).

The emulator raises its own `ClientException`, not moto's, so it does not depend on where moto
keeps its exception classes. `client_error` also recognises moto's service errors (raised by
moto's model code under an operation the emulator answers) by what they carry, a string
``code`` and ``message``, not by their class.
"""

from __future__ import annotations


class ClientException(Exception):
    """A request AWS Batch refuses as the caller's fault: HTTP 400 ``ClientException``."""

    code = "ClientException"
    """The error code, Batch's ``__type``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def client_error(err: BaseException) -> tuple[str, str] | None:
    """(code, message) of an error that is the caller's fault, ours or moto's; None otherwise."""
    code, message = getattr(err, "code", None), getattr(err, "message", None)
    if isinstance(code, str) and isinstance(message, str):
        return code, message
    return None
