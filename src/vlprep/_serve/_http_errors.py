"""Exceptions -> HTTP status and the OpenAI error body ``{"error": {message, type, param, code}}``.

Bad input is always a 4xx: every :class:`vlprep.VlprepError` has a status here. vlprep's
messages never hold payload bytes, base64 or credentials (``describe_source``); the
messages written here name only fields and limits. Anything else is a 500 whose message
says nothing about the request (the exception is logged, not sent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from vlprep._errors import (
    BackendUnavailableError,
    BudgetError,
    DecodeError,
    FetchError,
    FetchTimeoutError,
    FetchTooLargeError,
    GenerationError,
    InvalidInputError,
    QueueFullError,
    ResourceLimitError,
    SourceNotAllowedError,
    SourceNotFoundError,
    UnsupportedFormatError,
    VlprepError,
)

__all__ = ["ApiError", "error_body", "from_exception"]

logger = logging.getLogger("vlprep.serve")

_MAX_MESSAGE = 600


@dataclass(frozen=True)
class ApiError(Exception):
    """An error answered as ``status`` with the OpenAI error body.

    Attributes:
        status: HTTP status (4xx for anything the client can fix).
        message: what was wrong, the limit, the fix; never payload bytes.
        type: the OpenAI ``type`` (``invalid_request_error``, ``authentication_error``, ...).
        code: a short machine-readable code (``too_many_images``, ...).
        param: the request field at fault (``messages[0].content[1]``), if one is.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    """``{"error": {...}}`` with the message cut to 600 characters."""
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# Most specific first: the first class the exception is an instance of decides.
_TABLE: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (QueueFullError, 429, "rate_limit_error", "queue_full"),
    # the model failed on this request (logged with its cause), or the engine is closed
    (GenerationError, 500, "server_error", "generation_failed"),
    (SourceNotAllowedError, 400, "invalid_request_error", "source_not_allowed"),
    (SourceNotFoundError, 400, "invalid_request_error", "source_not_found"),
    (FetchTimeoutError, 400, "invalid_request_error", "fetch_timeout"),
    (FetchTooLargeError, 400, "invalid_request_error", "media_too_large"),
    (FetchError, 400, "invalid_request_error", "fetch_failed"),
    (UnsupportedFormatError, 400, "invalid_request_error", "unsupported_media"),
    (DecodeError, 400, "invalid_request_error", "undecodable_media"),
    (BudgetError, 400, "invalid_request_error", "context_length_exceeded"),
    (ResourceLimitError, 400, "invalid_request_error", "resource_limit"),
    (BackendUnavailableError, 400, "invalid_request_error", "unsupported_media"),
    (InvalidInputError, 400, "invalid_request_error", "invalid_input"),
    (VlprepError, 400, "invalid_request_error", "invalid_input"),
)


def from_exception(exc: BaseException, param: str | None = None) -> ApiError:
    """The :class:`ApiError` answering ``exc``.

    vlprep errors keep their (payload-free) message; ``BackendUnavailableError`` (an
    optional decoder this server lacks) is told as the media kind being unsupported here,
    without naming the server's packages. Other exceptions become a 500 with a fixed
    message, logged with their traceback.
    """
    if isinstance(exc, ApiError):
        return exc
    for kind, status, type_, code in _TABLE:
        if isinstance(exc, kind):
            message = str(exc)
            headers: dict[str, str] = {}
            if isinstance(exc, QueueFullError):
                headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            if isinstance(exc, BackendUnavailableError):
                message = "this server cannot read this kind of media (a decoder is not installed)"
            return ApiError(status, message, type_, code, param, headers)
    logger.error("internal error", exc_info=exc)
    return ApiError(
        500, "internal server error (logged on the server)", "server_error", "internal_error"
    )
