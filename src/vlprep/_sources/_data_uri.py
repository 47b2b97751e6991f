"""Strict RFC 2397 ``data:`` URIs, base64 only, length checked before decoding."""

from __future__ import annotations

import base64
import binascii
import re

from vlprep._errors import FetchTooLargeError, InvalidInputError, SourceNotAllowedError
from vlprep._sources._payload import Payload
from vlprep._sources.policy import FetchPolicy, Modality

__all__ = ["decode_data_uri"]

_MAX_HEADER = 1024
_MEDIA_TYPE = re.compile(r"^[a-z]+(/[a-z0-9.+-]+)?$")


def decode_data_uri(uri: str, policy: FetchPolicy, modality: Modality) -> Payload:
    """Decode ``data:<type>[;param]*;base64,<payload>``.

    The media type must be of the requested modality (``image`` or ``image/...`` for
    images); the exact subtype is only a hint (decoders sniff the bytes).

    Raises:
        SourceNotAllowedError: ``data`` is not an allowed scheme.
        InvalidInputError: no comma, not base64, wrong modality, invalid base64.
        FetchTooLargeError: the decoded size (computed from the encoded length) exceeds the cap.
    """
    if "data" not in policy.allowed_schemes:
        raise SourceNotAllowedError(
            "data: URIs are not allowed by this FetchPolicy; "
            f"allowed: {sorted(policy.allowed_schemes)}"
        )
    comma = uri.find(",", 5, 5 + _MAX_HEADER)  # the payload is not copied before the size check
    if comma < 0:
        if uri.find(",", 5) >= 0:
            raise InvalidInputError(
                f"malformed data: URI: header longer than {_MAX_HEADER} characters"
            )
        raise InvalidInputError("malformed data: URI: no ',' between the header and the payload")
    header = uri[5:comma]
    encoded_length = len(uri) - comma - 1
    params = header.split(";")
    media_type = params[0].strip().lower()
    if params[-1] != "base64" or len(params) < 2:
        raise InvalidInputError(
            f"data: URI header {header[:40]!r} is not supported: only ';base64,' payloads "
            "(lower case) are accepted"
        )
    if not _MEDIA_TYPE.match(media_type) or media_type.split("/")[0] != modality:
        raise InvalidInputError(
            f"data: URI media type {media_type[:40]!r} is not an {modality} type "
            f"(expected '{modality}/...')"
        )
    cap = policy.max_bytes(modality)
    decoded_size = encoded_length // 4 * 3
    if decoded_size > cap:
        raise FetchTooLargeError(
            f"data: URI holds about {decoded_size} bytes, above the {modality} cap of {cap} bytes "
            f"(raise FetchPolicy.max_{modality}_bytes)"
        )
    encoded = uri[comma + 1 :]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(
            f"data: URI payload ({len(encoded)} chars) is not valid base64 "
            "(no whitespace, correct padding)"
        ) from exc
    return Payload(
        data=data, origin=f"data:{media_type};base64,<{len(encoded)} chars>", media_type=media_type
    )
