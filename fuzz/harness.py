"""Harness functions shared by the atheris fuzzers and the replay test.

Each ``fuzz_*`` function feeds one input through a vlprep entry point that takes bytes
from strangers. A rejection must be a :class:`vlprep._errors.VlprepError` whose message is
our own (:func:`check_message`); anything else escaping is a finding. Nothing here
imports atheris, touches the network or reads local files, so ``tests/test_fuzz_replay.py``
runs the same functions over every stored file in the normal suite.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from vlprep._decode.image import ImageOptions, decode_image, probe_header
from vlprep._decode.video import VideoOptions, probe_video
from vlprep._errors import InvalidInputError, VlprepError
from vlprep._sources import FetchPolicy, fetch
from vlprep._sources._http import _parse, _refusal

__all__ = ["TARGETS", "check_message", "fuzz_data_uri", "fuzz_image", "fuzz_url", "fuzz_video"]

# Small limits keep each execution fast; the checks are the same code as the defaults.
IMAGE_OPTIONS = ImageOptions(
    max_source_pixels=4_000_000,
    formats=frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO", "HEIF", "AVIF", "TIFF", "PPM"}),
)
VIDEO_OPTIONS = VideoOptions(
    backend="pyav",
    max_duration=600.0,
    max_frame_pixels=4_000_000,
    max_packets_scanned=20_000,
    max_frames_decoded=200,
)
STRICT = FetchPolicy.strict(allowed_hosts=frozenset({"allowed.test", "cdn.allowed.test"}))
_ADDRESS = re.compile(r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{6,}")  # " at 0x7f3a..."
_ECHO = 64
_BASE64_WINDOW = re.compile(r"[A-Za-z0-9+/=]{24}")


class FindingError(AssertionError):
    """The input broke an invariant: a crash class the fuzzer must report."""


def check_message(exc: BaseException, data: bytes | str = b"") -> None:
    """Fail when a vlprep error message is not our own.

    It must not show an object address (``<... object at 0x7f...>``), more than 64
    consecutive characters of the input (sources are truncated), any 24 characters of a
    ``data:`` payload (no base64), nor run past 1000 characters.
    """
    text = str(exc)
    raw = data if isinstance(data, str) else data.decode("latin-1")
    # A hex run the input itself holds (a URL host "0x7f.1") is an echo, not an address.
    if any(m.group() not in raw for m in _ADDRESS.finditer(text)) or " object at " in text:
        raise FindingError(f"error message leaks an object address: {text[:200]!r}")
    if len(text) > 1000:
        raise FindingError(f"error message of {len(text)} chars: inputs are not truncated")
    # repr() doubles backslashes: undo it so that 40 shown characters count as 40.
    plain = text.replace("\\\\", "\\")
    for start in range(len(plain) - _ECHO):
        window = plain[start : start + _ECHO + 1]
        # A run of a few repeated characters carries no payload.
        if len(set(window)) > 4 and window in raw:
            raise FindingError(f"error message echoes {_ECHO + 1} input characters")
    if raw[:5].lower() == "data:" and "," in raw:
        header, payload = raw.split(",", 1)
        # The header is shown (escaped); a payload that repeats it is not leaked by that.
        shown = header + repr(header) + header.encode("unicode_escape").decode("ascii")
        for start in range(len(plain) - 24):
            window = plain[start : start + 24]
            if (
                _BASE64_WINDOW.fullmatch(window)
                and len(set(window)) > 4
                and window in payload
                and window not in shown
            ):
                raise FindingError("error message holds part of a data: payload")


def _guard(call: Callable[[], object], data: bytes | str) -> None:
    try:
        call()
    except VlprepError as exc:
        check_message(exc, data)


def fuzz_image(data: bytes) -> None:
    """Header probe, then full decode to RGB, of arbitrary bytes."""
    _guard(lambda: probe_header(data, IMAGE_OPTIONS), data)
    _guard(lambda: decode_image(data, IMAGE_OPTIONS), data)


def fuzz_data_uri(data: bytes) -> None:
    """The ``data:`` URI parser, fed through the public :func:`fetch`."""
    text = data.decode("utf-8", "replace")
    uri = text if text[:5].lower() == "data:" else "data:" + text
    for modality in ("image", "video"):
        _guard(lambda m=modality: fetch(uri, STRICT, m), uri)  # type: ignore[misc]


def fuzz_url(data: bytes) -> None:
    """URL policy: parse and check under the strict policy, without any I/O.

    Invariants: an accepted URL names an allow-listed host, its request line and Host
    header carry no whitespace or control characters, and a literal IP that is accepted
    is public. Non-http schemes go through :func:`fetch`, which must refuse them without
    reading anything (the strict policy has no local root).
    """
    url = data.decode("utf-8", "replace")
    try:
        target = _parse(url, STRICT)
    except VlprepError as exc:
        check_message(exc, url)
    else:
        if target.host not in STRICT.allowed_hosts:  # type: ignore[operator]
            raise FindingError(f"host {target.host!r} accepted outside the allow-list")
        for part in (target.request_target, target.host_header):
            if any(c.isspace() or not c.isprintable() or not c.isascii() for c in part):
                raise FindingError(f"unsafe request part {part!r}")
    if not url[:4].lower().startswith("http"):
        _guard(lambda: fetch(url, STRICT, "image"), url)
    host = url.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return
    if (ip.is_loopback or ip.is_private or ip.is_link_local) and _refusal(ip) is None:
        raise FindingError(f"{ip} is non-public but not refused")


def fuzz_video(data: bytes) -> None:
    """Container sniffing, demuxing, indexing and first-frame decode (PyAV)."""
    if not data:
        try:
            probe_video(data, VIDEO_OPTIONS)
        except InvalidInputError:
            return
        except VlprepError as exc:
            check_message(exc, data)
        return
    _guard(lambda: probe_video(data, VIDEO_OPTIONS), data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "image": fuzz_image,
    "data_uri": fuzz_data_uri,
    "url": fuzz_url,
    "video": fuzz_video,
}
