"""Turn a video source into an open binary file, and name its container from the magic.

Decoders get a file object, never a path string or URL: FFmpeg must not open anything by
itself. The container is sniffed here, before FFmpeg sees a byte, so playlists (HLS,
ffconcat), SDP files, images and text never reach a demuxer.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Literal

from vlprep._errors import (
    DecodeError,
    InvalidInputError,
    UnsupportedFormatError,
    describe_source,
)
from vlprep._sources import LocalFile, open_path

__all__ = ["Container", "OpenedSource", "VideoSource", "open_source", "sniff_container"]

VideoSource = bytes | bytearray | memoryview | BinaryIO | str | os.PathLike[str]
Container = Literal["mov", "matroska", "avi"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_BMFF_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"})
# ISO BMFF brands of still images (HEIF/AVIF): not videos.
_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avci", b"jpeg"}
)
_EBML = b"\x1a\x45\xdf\xa3"
_HEAD = 64


@dataclass(slots=True)
class OpenedSource:
    """A readable, seekable binary file positioned at 0, and whether we must close it.

    ``local`` marks a regular file that vlprep opened itself (:class:`LocalFile`): its
    descriptor may be handed to an isolated decoder process, which then reads the very
    file that was checked instead of opening a path again.
    """

    file: BinaryIO
    owned: bool
    description: str
    local: bool = False

    def close(self) -> None:
        if self.owned:
            self.file.close()


def _open_path(path: str) -> OpenedSource:
    # The one local-file opener (shared with fetch): opened once, checked on the descriptor.
    file, _ = open_path(path)
    return OpenedSource(file, owned=True, description=file.shown, local=True)


def open_source(source: object) -> OpenedSource:
    """Open ``source`` for reading.

    Args:
        source: ``bytes``-like (wrapped in ``BytesIO``), a readable and seekable binary
            file object (used as is, not closed by us; a :class:`LocalFile` from
            :func:`vlprep._sources.open_local_file` is one, opened under the fetch policy),
            or a local path (``str`` or ``os.PathLike``), opened as the OS resolves it: no
            fetch policy applies, so give only paths you trust. URLs (anything with a
            scheme) are refused: fetch them with ``vlprep._sources.fetch`` first.

    Raises:
        InvalidInputError: a URL, an empty path, a path that is not a regular file, a
            non-seekable file or another type.
        SourceNotFoundError: the path does not exist.
        FetchError: the path cannot be opened.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return OpenedSource(io.BytesIO(data), owned=True, description=describe_source(data))
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, bytes):  # os.fspath of a bytes path
        raise InvalidInputError("byte-string paths are not supported; pass a str path")
    if isinstance(source, str):
        if not source:
            raise InvalidInputError("empty video path")
        if _SCHEME.match(source):
            raise InvalidInputError(
                f"video source {describe_source(source)} looks like a URL; decoders take "
                "bytes, a file object or a local path (fetch URLs with vlprep._sources.fetch)"
            )
        return _open_path(source)
    if isinstance(source, LocalFile):
        return OpenedSource(source, owned=False, description=source.shown, local=True)
    if hasattr(source, "read") and hasattr(source, "seek"):
        file: BinaryIO = source  # type: ignore[assignment]
        seekable = getattr(file, "seekable", None)
        if callable(seekable) and not seekable():
            raise InvalidInputError("video file objects must be seekable (wrap in io.BytesIO)")
        return OpenedSource(file, owned=False, description=f"<{type(source).__name__}>")
    raise InvalidInputError(
        f"a video source must be bytes, a binary file object or a local path, "
        f"got {type(source).__name__}"
    )


def read_head(file: BinaryIO) -> bytes:
    """The first bytes of ``file``; leaves it positioned at 0."""
    try:
        file.seek(0)
        head = file.read(_HEAD)
        file.seek(0)
    except (OSError, ValueError) as exc:
        raise DecodeError("cannot read the video data (read or seek failed)") from exc
    if not isinstance(head, bytes):
        raise InvalidInputError("video file objects must be opened in binary mode")
    return head


def sniff_container(head: bytes) -> Container:
    """The demuxer for the magic number at the start of ``head``.

    Accepts the ISO BMFF family (MP4, MOV, 3GP: a known box type at offset 4),
    Matroska/WebM (EBML magic) and AVI (``RIFF....AVI ``).

    Raises:
        DecodeError: empty data.
        UnsupportedFormatError: anything else (playlists, SDP, images, text, ...).
    """
    if not head:
        raise DecodeError("empty video data (0 bytes)")
    if len(head) >= 8 and head[4:8] in _BMFF_BOXES:
        if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
            raise UnsupportedFormatError(
                "this ISO BMFF file is a still image (HEIF/AVIF brand), not a video"
            )
        return "mov"
    if head.startswith(_EBML):
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    raise UnsupportedFormatError(
        f"not a supported video container ({_what(head)}); accepted: MP4/MOV, Matroska/WebM, AVI"
    )


def _what(head: bytes) -> str:
    stripped = head.lstrip()
    if stripped.startswith(b"#EXTM3U"):
        return "an HLS playlist"
    if stripped.startswith(b"ffconcat"):
        return "an ffconcat script"
    if stripped[:2] in (b"v=", b"o=", b"s="):
        return "looks like SDP text"
    if head[:4] == b"RIFF":
        return "a RIFF file that is not AVI"
    return "unrecognised magic number"
