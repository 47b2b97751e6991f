"""The value every source kind is turned into before decoding."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Payload"]


@dataclass(frozen=True, slots=True)
class Payload:
    """Raw media bytes plus where they came from.

    Attributes:
        data: the encoded file (JPEG, PNG, MP4, ...), never decoded here.
        origin: a short, safe description for messages (no payload, URLs truncated).
        media_type: the declared type (``Content-Type`` or data-URI type), if any; a hint
            only, decoders sniff the content.
    """

    data: bytes
    origin: str
    media_type: str | None = None

    def __repr__(self) -> str:
        size = f"<{len(self.data)} bytes>"
        return f"Payload({size}, origin={self.origin}, media_type={self.media_type!r})"
