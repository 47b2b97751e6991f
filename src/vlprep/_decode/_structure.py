"""Bounded walks over JPEG markers and PNG chunks, run before any Pillow plugin sees the bytes.

Pillow checks pixel counts but not how much work a file's *structure* asks for:

* a progressive JPEG may hold any number of scans, and libjpeg makes one pass over every
  coefficient block of the image for each of them, even an empty one (a 4096x4096 JPEG
  padded with 10-byte empty scans cost about 1.4 ms per scan: minutes for a few MB);
* Pillow parses each JPEG marker segment before the first scan in Python (about 1.3 us
  each: 8 M four-byte comment segments fit in 32 MiB), and steps over padding between
  them one byte at a time (4 MiB of 0xFF fill bytes: 3 s);
* Pillow reads each PNG chunk in Python (about 2.5 us each: 2.5 M empty chunks in 30 MB).

The walks count those structures and raise :class:`ResourceLimitError` past the limit.
They never decode anything and stop at the first count over the limit, so their cost is
bounded by the limit (Python steps) plus one pass of ``re`` over the bytes (C). They are
not validators: whatever they do not understand is left for Pillow to judge.
"""

from __future__ import annotations

import re
import struct

from vlprep._errors import ResourceLimitError

__all__ = [
    "check_jpeg_structure",
    "check_png_structure",
    "png_late_exif",
    "webp_canvas_size",
]

# 0xFF followed by a marker code: neither a stuffed zero nor another fill byte. Inside
# entropy-coded data restart markers (RST0-7) belong to the scan, as libjpeg reads them.
_SCAN_END = re.compile(rb"\xff(?=[^\x00\xff\xd0-\xd7])")
_ANY_MARKER = re.compile(rb"\xff(?=[^\x00\xff])")
_SOI, _EOI, _SOS, _TEM = 0xD8, 0xD9, 0xDA, 0x01
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_SEQUENTIAL_SOF = frozenset({0xC0, 0xC1, 0xC9})  # one interleaved scan is the whole image
_PNG_CHUNK = struct.Struct(">I4s")


def check_jpeg_structure(
    data: bytes, max_scans: int, max_segments: int, *, whole: bool = True
) -> None:
    """Count the scans and marker segments of the first JPEG in ``data``.

    Walks the segments by their lengths, skips each scan's entropy-coded data to the next
    marker (as libjpeg does) and stops at the first EOI (an MPO's later frames are never
    decoded). A single-scan sequential JPEG (SOF0, SOF1 or SOF9 whose first scan holds
    every component, i.e. nearly every baseline photo) ends the walk at that scan:
    libjpeg stops with "EOI expected" at a second scan of such a file, so only the header
    costs anything, and the entropy data is not read.

    Args:
        data: the whole file, starting with SOI.
        max_scans: most SOS segments (``ImageOptions.max_jpeg_scans``).
        max_segments: most markers of any kind, padding bytes before the first scan
            counted as one each (``ImageOptions.max_jpeg_segments``).
        whole: ``False`` stops at the first scan: what Pillow reads to open the header.

    Raises:
        ResourceLimitError: more scans or segments than allowed.
    """
    size = len(data)
    pos, scans, segments, components = 2, 0, 0, 0
    sequential = False
    while pos + 1 < size:
        segments += 1
        if data[pos] != 0xFF or data[pos + 1] in (0x00, 0xFF):
            found = _ANY_MARKER.search(data, pos)  # garbage or fill bytes: resynchronise
            end = size if found is None else found.start()
            if scans == 0:
                segments += end - pos  # Pillow steps over these one byte at a time
            pos = end
        if segments > max_segments:
            raise ResourceLimitError(
                f"JPEG has more than {max_segments} marker segments (or padding bytes before "
                "its first scan); refused before decoding (raise "
                "ImageOptions.max_jpeg_segments if intended)"
            )
        if pos + 4 > size:
            return
        marker = data[pos + 1]
        if marker == _EOI:
            return
        if marker in (_SOI, _TEM) or 0xD0 <= marker <= 0xD7:
            pos += 2  # standalone markers carry no length
            continue
        if marker in _SOF and pos + 10 <= size:
            sequential, components = marker in _SEQUENTIAL_SOF, data[pos + 9]
        if marker == _SOS:
            scans += 1
            if scans > max_scans:
                raise ResourceLimitError(
                    f"JPEG has more than {max_scans} scans (libjpeg makes a pass over the "
                    "whole image for each); refused before decoding (ordinary progressive "
                    "JPEGs have about 10; raise ImageOptions.max_jpeg_scans if intended)"
                )
            single = sequential and pos + 4 < size and data[pos + 4] == components
            if not whole or (scans == 1 and single):
                return
        pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
        if marker == _SOS:
            found = _SCAN_END.search(data, pos)
            if found is None:
                return
            pos = found.start()


def check_png_structure(data: bytes, max_chunks: int) -> None:
    """Count the chunks of a PNG up to where Pillow stops reading for the first frame.

    That is ``IEND``, or, in an animated PNG (``acTL`` with more than one frame), the
    ``fcTL`` that starts the second frame: later frames are never decoded. CRCs are not
    checked (Pillow does that).

    Args:
        data: the whole file, starting with the PNG signature.
        max_chunks: most chunks (``ImageOptions.max_png_chunks``).

    Raises:
        ResourceLimitError: more chunks than allowed.
    """
    size = len(data)
    pos, chunks = 8, 0
    animated = seen_pixels = False
    while pos + _PNG_CHUNK.size <= size:
        length, kind = _PNG_CHUNK.unpack_from(data, pos)
        chunks += 1
        if chunks > max_chunks:
            raise ResourceLimitError(
                f"PNG has more than {max_chunks} chunks (each is parsed in Python); refused "
                "before decoding (raise ImageOptions.max_png_chunks if intended)"
            )
        if kind == b"IEND":
            return
        if kind == b"acTL" and length >= 4 and pos + 12 <= size:
            animated = int.from_bytes(data[pos + 8 : pos + 12], "big") > 1
        elif kind in (b"IDAT", b"fdAT"):
            seen_pixels = True
        elif kind == b"fcTL" and animated and seen_pixels:
            return
        pos += 12 + length


def png_late_exif(data: bytes, max_chunks: int) -> tuple[bytes | None, bool]:
    """The last ``eXIf`` chunk after a PNG's pixel data, and whether the walk reached ``IEND``.

    Pillow reads the chunks that follow ``IDAT`` only when it loads the pixels, so a
    header probe misses an ``eXIf`` placed there while a decode applies it. This walk finds
    it without decoding: chunk headers only, ``IDAT`` skipped by its length, at most
    ``max_chunks`` chunks (:func:`check_png_structure` has refused longer files).

    Returns:
        ``(payload, complete)``: the chunk's data (``None`` when there is none) and
        ``False`` when ``data`` ended before ``IEND`` (a prefix of the file: read more).
    """
    size = len(data)
    pos, chunks, found = 8, 0, None
    seen_pixels = False
    while pos + _PNG_CHUNK.size <= size and chunks < max_chunks:
        length, kind = _PNG_CHUNK.unpack_from(data, pos)
        chunks += 1
        if kind == b"IEND":
            return found, True
        if kind == b"IDAT":
            seen_pixels = True
        elif kind == b"eXIf" and seen_pixels:
            if pos + 8 + length > size:
                return found, False
            found = bytes(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return found, chunks >= max_chunks


def webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a WebP's canvas from its first chunk, or ``None`` if unreadable.

    The same fields Pillow reads (``VP8X`` canvas, else the ``VP8``/``VP8L`` frame header):
    Pillow's plugin has libwebp allocate the canvas inside ``Image.open``, so the limits
    are checked on these numbers before it runs.
    """
    kind = data[12:16]
    if kind == b"VP8X" and len(data) >= 30:
        return (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None
