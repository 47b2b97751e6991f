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
    └── BackendUnavailableError (ImportError)    an optional dependency is not installed

Leaves also subclass the builtin a caller of qwen-vl-utils already catches, so
``except ValueError`` keeps working after migrating. Messages say what went wrong, the
limit, the observed value and the fix; they never contain payload bytes or base64.
"""

from __future__ import annotations

import re

__all__ = [
    "BackendUnavailableError",
    "DecodeError",
    "FetchError",
    "FetchTimeoutError",
    "FetchTooLargeError",
    "GroundingParseError",
    "InvalidInputError",
    "ResourceLimitError",
    "SourceNotAllowedError",
    "SourceNotFoundError",
    "UnsupportedFormatError",
    "VlprepError",
    "describe_source",
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


class BackendUnavailableError(VlprepError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


_MAX_SHOWN = 64
# Only base64 characters (a path has a '.', '-' or '_' somewhere, base64 never does).
_BASE64ISH = re.compile(r"[A-Za-z0-9+/=\s]+")


def describe_source(value: object) -> str:
    """A short, safe description of a source for error messages.

    Never returns payload bytes or base64: ``data:`` URIs show only their media type,
    byte strings only their length, and long strings are truncated to 64 characters.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        if value[:5].lower() == "data:":
            # Escaped: a header is attacker text and must not inject control characters.
            head = value[5:].split(",", 1)[0][:40].encode("unicode_escape").decode("ascii")
            return f"data:{head},<{len(value)} chars>"
        if len(value) <= _MAX_SHOWN:
            return repr(value)
        if ("/" not in value and "\\" not in value) or _BASE64ISH.fullmatch(value):
            return f"<str of {len(value)} chars>"  # likely raw base64: never echo it
        half = (_MAX_SHOWN - 3) // 2
        return repr(value[:half] + "..." + value[-half:])
    return f"<{type(value).__name__}>"
