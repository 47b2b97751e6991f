"""The whole vlprep exception tree, in one place.

::

    VlprepError                                  base of everything vlprep raises on purpose
    ├── InvalidInputError       (ValueError)     a message element, argument or source is malformed
    │   ├── SourceNotAllowedError                the source is refused by the FetchPolicy
    │   └── GroundingParseError                  model text has a malformed box or point
    ├── FetchError              (OSError)        the bytes could not be obtained
    │   ├── SourceNotFoundError (FileNotFoundError) a local file does not exist
    │   ├── FetchTimeoutError   (TimeoutError)   a connect/read timeout or the deadline passed
    │   └── FetchTooLargeError                   the payload is larger than the policy's byte cap
    ├── DecodeError             (ValueError)     the bytes are not a decodable image/video
    │   └── UnsupportedFormatError               a format outside the allow-list, or no plugin
    ├── ResourceLimitError      (ValueError)     decoding would exceed a pixel/ratio/memory limit
    │   └── BudgetError                          no sizes fit a conversation into a token budget
    ├── QueueFullError          (RuntimeError)   a generation queue is full: retry later (HTTP 429)
    ├── GenerationError         (RuntimeError)   the model failed on a request, or the engine closed
    └── BackendUnavailableError (ImportError)    an optional dependency is not installed

Leaves also subclass the builtin a caller of qwen-vl-utils already catches, so
``except ValueError`` keeps working after migrating. Messages say what went wrong, the
limit, the observed value and the fix; they never contain payload bytes or base64.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BackendUnavailableError",
    "BudgetError",
    "DecodeError",
    "FetchError",
    "FetchTimeoutError",
    "FetchTooLargeError",
    "GenerationError",
    "GroundingParseError",
    "InvalidInputError",
    "QueueFullError",
    "ResourceLimitError",
    "SourceNotAllowedError",
    "SourceNotFoundError",
    "UnsupportedFormatError",
    "VlprepError",
    "describe_source",
    "looks_like_payload",
    "redact_url",
]


class VlprepError(Exception):
    """Base class of every error vlprep raises deliberately."""


class InvalidInputError(VlprepError, ValueError):
    """A message element, argument or source value is malformed or inconsistent."""


class SourceNotAllowedError(InvalidInputError):
    """The source (scheme, host, address or local path) is refused by the fetch policy."""


class GroundingParseError(InvalidInputError):
    """Model text holds a box or point that cannot be read (wrong arity, not a number).

    Raised by :mod:`vlprep.grounding`; text with no grounding at all is not an error.
    """


class FetchError(VlprepError, OSError):
    """The bytes of a source could not be obtained (HTTP status, connection, missing file)."""


class SourceNotFoundError(FetchError, FileNotFoundError):
    """A local file (path or ``file://`` URL) does not exist."""


class FetchTimeoutError(FetchError, TimeoutError):
    """A connect or read timeout, or the total deadline of a fetch, expired."""


class FetchTooLargeError(FetchError):
    """The payload exceeds the policy's byte cap for its modality."""


class DecodeError(VlprepError, ValueError):
    """The bytes are not a decodable image (truncated, corrupt, not an image)."""


class UnsupportedFormatError(DecodeError):
    """The format is outside the allow-list, or needs an optional plugin that is missing."""


class ResourceLimitError(VlprepError, ValueError):
    """Decoding would exceed a limit (source pixels, aspect ratio, memory)."""


class BudgetError(ResourceLimitError):
    """No sizes fit a conversation into a token budget (:func:`vlprep.fit`).

    Raised when the text alone, or the text with every image and video at its floor,
    needs more tokens than ``max_tokens - reserve``. Nothing is dropped to make it fit.

    Attributes:
        deficit: tokens over the budget at the floors (> 0).
        binding: which floor binds: ``"text"`` (the text alone is over the budget),
            ``"fixed"`` (the text and the items that cannot shrink, such as elements
            with ``resized_height``/``resized_width``), or ``"floors"`` (the items at
            their lowest sizes: ``min_pixels``, ``min_frames``, ``min_tokens``).
        needed: tokens the conversation needs at the floors.
        budget: ``max_tokens - reserve``.
        conversation: index of the conversation in the batch.
    """

    def __init__(
        self,
        message: str,
        *,
        deficit: int,
        binding: str,
        needed: int,
        budget: int,
        conversation: int = 0,
    ) -> None:
        super().__init__(message)
        self.deficit = deficit
        self.binding = binding
        self.needed = needed
        self.budget = budget
        self.conversation = conversation

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes (Ray)
        fields = {
            "deficit": self.deficit,
            "binding": self.binding,
            "needed": self.needed,
            "budget": self.budget,
            "conversation": self.conversation,
        }
        return (_budget_error, (str(self), fields))


def _budget_error(message: str, fields: dict[str, Any]) -> BudgetError:
    return BudgetError(message, **fields)


class QueueFullError(VlprepError, RuntimeError):
    """A generation queue already holds its maximum of waiting requests; retry later.

    Attributes:
        retry_after: suggested seconds before retrying (what a server sends as
            ``Retry-After``).
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GenerationError(VlprepError, RuntimeError):
    """Generation of one request failed: the model raised while it was in the batch (the
    original exception is chained as ``__cause__``), or the engine was closed.

    Raised to the consumer of that request's :class:`vlprep.runner.GenerationStream`; the
    engine keeps serving the other requests. Not the client's fault (a server answers 5xx).
    """


class BackendUnavailableError(VlprepError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


_MAX_SHOWN = 64
# Only base64 characters (a path has a '.', '-' or '_' somewhere, base64 never does).
_BASE64ISH = re.compile(r"[A-Za-z0-9+/=\s]+")


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://")
# A path-like string whose longest run between separators is this long is a payload
# (base64 with a file suffix, say), not a file name.
_PAYLOAD_RUN = 40


def redact_url(url: str) -> str:
    """``url`` with what may be a credential removed: userinfo dropped, every query value
    and the fragment elided (keys kept, so ``?X-Amz-Signature=...`` still says what it was).

    Unparseable input is summarised by its length.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"<URL of {len(url)} chars>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None or parts.password is not None:
        netloc = "<userinfo>@" + netloc
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query:
        keys = [pair.split("=", 1)[0][:24] for pair in parts.query.split("&") if pair]
        text += "?" + "&".join(f"{key}=..." for key in keys[:6])
        if len(keys) > 6:
            text += f"&<{len(keys) - 6} more>"
    if parts.fragment:
        text += "#..."
    return text


def _shorten(value: str) -> str:
    if len(value) <= _MAX_SHOWN:
        return repr(value)
    half = (_MAX_SHOWN - 3) // 2
    return repr(value[:half] + "..." + value[-half:])


def looks_like_payload(value: str) -> bool:
    """Raw base64 (possibly with a ``.png``-style suffix) rather than a path."""
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", value)
    if "/" not in stem and "\\" not in stem:
        return True
    if _BASE64ISH.fullmatch(stem):
        runs = re.split(r"[/\\]", stem)
        return max(len(run) for run in runs) >= _PAYLOAD_RUN
    return False


def describe_source(value: object) -> str:
    """A short, safe description of a source for error messages.

    Never returns payload bytes, base64 or credentials: ``data:`` URIs show only their
    media type, byte strings only their length, URLs lose their userinfo, query values and
    fragment (:func:`redact_url`), strings that look like base64 (with or without a file
    suffix) show only their length, and other long strings are cut to 64 characters.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        if value[:5].lower() == "data:":
            # Escaped: a header is attacker text and must not inject control characters.
            head = value[5:].split(",", 1)[0][:40].encode("unicode_escape").decode("ascii")
            return f"data:{head},<{len(value)} chars>"
        if _URL.match(value):
            return _shorten(redact_url(value))
        if len(value) > _MAX_SHOWN and looks_like_payload(value):
            return f"<str of {len(value)} chars>"  # likely raw base64: never echo it
        return _shorten(value)
    return f"<{type(value).__name__}>"
