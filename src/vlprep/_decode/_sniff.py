"""Name an image format from its first bytes, without running any decoder plugin."""

from __future__ import annotations

__all__ = ["sniff_format"]

_FTYP_HEIF = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_FTYP_AVIF = {b"avif", b"avis"}


def sniff_format(head: bytes) -> str | None:
    """Pillow-style format name for the magic number at the start of ``head``.

    Returns ``None`` when nothing is recognised. Used to name formats that are outside
    the allow-list (so their Pillow plugins never run) and to route HEIF/AVIF.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _FTYP_AVIF:
            return "AVIF"
        if brand in _FTYP_HEIF:
            return "HEIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head.startswith(b"SIMPLE  ="):
        return "FITS"
    if head.startswith(b"\x00\x00\x01\x00") or head.startswith(b"\x00\x00\x02\x00"):
        return "ICO"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith(b"%!PS") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "EPS"
    if head[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"Pf", b"PF"):
        return "PPM"
    if head.startswith(b"\x00\x00\x00\x0cjP  ") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    if head.startswith(b"icns"):
        return "ICNS"
    if head.startswith(b"DDS "):
        return "DDS"
    stripped = head.lstrip()[:256].lower()
    if stripped.startswith(b"<?xml") or stripped.startswith(b"<svg") or b"<svg" in stripped:
        return "SVG"
    return None
