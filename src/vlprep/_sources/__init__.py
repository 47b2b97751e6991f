"""The one place bytes come from: local files, ``file://``, http(s) and ``data:`` URIs.

Every source string goes through :func:`fetch`, which applies a :class:`FetchPolicy`
(schemes, local root, hosts, timeouts, total deadline, byte caps). Decoders receive only
the resulting :class:`Payload` bytes, or a local file already opened under the policy
(:func:`open_local_file`), never a URL or a path to open.
"""

from __future__ import annotations

import re

from vlprep._errors import (
    FetchTooLargeError,
    InvalidInputError,
    SourceNotAllowedError,
    describe_source,
)
from vlprep._sources._data_uri import decode_data_uri
from vlprep._sources._local import (
    LocalFile,
    open_local,
    open_path,
    path_from_file_url,
    read_local,
)
from vlprep._sources._payload import Payload
from vlprep._sources.policy import DEFAULT_POLICY, MIB, FetchPolicy, Modality

__all__ = [
    "DEFAULT_POLICY",
    "MIB",
    "FetchPolicy",
    "LocalFile",
    "Modality",
    "Payload",
    "fetch",
    "open_local_file",
    "open_path",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def fetch(
    source: str | bytes | bytearray | memoryview,
    policy: FetchPolicy | None = None,
    modality: Modality = "image",
    *,
    prefix: int | None = None,
) -> Payload:
    """Obtain the encoded bytes of ``source`` under ``policy``.

    Args:
        source: ``bytes`` (returned as is, cap checked), an ``http(s)://`` URL, a
            ``data:`` URI, a ``file://`` URL or a local path.
        policy: the rules; :data:`DEFAULT_POLICY` when ``None``.
        modality: ``"image"`` or ``"video"``, selecting the deadline and byte cap.
        prefix: when given, only the first ``prefix`` bytes are wanted: a local file is
            read that far, an http(s) body is read that far and the connection closed.
            Every policy check still applies to the whole source (a file or declared
            ``Content-Length`` above the cap is refused as in a full fetch). Fewer bytes
            than ``prefix`` means the payload is complete.

    Raises:
        SourceNotAllowedError: scheme, host, address or path refused by the policy.
        InvalidInputError: malformed source.
        FetchError: HTTP status, connection or read failure, missing file
            (:class:`FetchTimeoutError`, :class:`FetchTooLargeError`, :class:`SourceNotFoundError`).
    """
    if prefix is not None and (
        isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 1
    ):
        raise InvalidInputError(f"prefix must be a positive int, got {prefix!r}")
    payload = _fetch(source, DEFAULT_POLICY if policy is None else policy, modality, prefix)
    if prefix is not None and len(payload.data) > prefix:
        return Payload(payload.data[:prefix], payload.origin, payload.media_type)
    return payload


def _fetch(
    source: str | bytes | bytearray | memoryview,
    policy: FetchPolicy,
    modality: Modality,
    prefix: int | None,
) -> Payload:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        cap = policy.max_bytes(modality)
        if len(data) > cap:
            raise FetchTooLargeError(
                f"{len(data)} bytes given, above the {modality} cap of {cap} bytes "
                f"(raise FetchPolicy.max_{modality}_bytes)"
            )
        return Payload(data=data, origin=describe_source(data))
    if not isinstance(source, str):
        raise InvalidInputError(f"a source must be a str or bytes, got {type(source).__name__}")
    if not source:
        raise InvalidInputError("empty source string")
    match = _SCHEME.match(source)
    scheme = match.group(1).lower() if match else None
    if scheme in ("http", "https"):
        if scheme not in policy.allowed_schemes:
            raise SourceNotAllowedError(
                f"{scheme}:// sources are not allowed by this FetchPolicy; "
                f"allowed: {sorted(policy.allowed_schemes)}"
            )
        from vlprep._sources._http import fetch_http

        return fetch_http(source, policy, modality, prefix)
    if scheme == "data":
        return decode_data_uri(source, policy, modality)
    if scheme == "file":
        if not source[:7].lower() == "file://":
            raise InvalidInputError(
                f"malformed file URL {describe_source(source)}; use file:///path"
            )
        return read_local(path_from_file_url(source), policy, modality, prefix)
    if scheme is not None:
        raise SourceNotAllowedError(
            f"scheme {scheme[:16]!r} of {describe_source(source)} is not supported; "
            f"allowed: {sorted(policy.allowed_schemes)} or a local path"
        )
    return read_local(source, policy, modality, prefix)


def open_local_file(
    source: str, policy: FetchPolicy | None = None, modality: Modality = "video"
) -> LocalFile | None:
    """Open a local source under the policy, or return ``None`` for http(s) and ``data:``.

    Lets a video decoder read a large local file in place (seeking, no copy into memory)
    under the same rules :func:`fetch` applies: local files allowed, opened beneath
    ``local_root``, a regular file, hard links as the policy says, within the byte cap.
    The checks are made on the opened descriptor, so decode from the returned file (and
    close it), never by opening the path again.

    Raises:
        SourceNotAllowedError, SourceNotFoundError, InvalidInputError, FetchTooLargeError,
        FetchError.
    """
    policy = DEFAULT_POLICY if policy is None else policy
    match = _SCHEME.match(source)
    scheme = match.group(1).lower() if match else None
    if scheme is None:
        return open_local(source, policy, modality)[0]
    if scheme == "file" and source[:7].lower() == "file://":
        return open_local(path_from_file_url(source), policy, modality)[0]
    return None
