"""``ImageOptions(decode_timeout=...)``: decode one image in a killable, memory-capped child.

The whole decode runs in the child, header included: the structure walks, Pillow's header
parse, the limits, the pixels, the EXIF rotation and the RGB conversion, so a file that
keeps a decoder busy is stopped by the deadline whatever part of the work it targets.
The child is :class:`vlprep._decode._child.ChildProcess` (shared with the isolated video
reader): it caps its address space at ``max_decode_bytes`` + 256 MiB beyond its imports
and is killed when the decode outlives ``decode_timeout``.

Protocol: the parent sends ``{"options", "size", "memory"}`` and the bytes; the child
answers ``{"header": {...}}`` (the upright size, for ``decode="fast"``); the parent sends
``{"draft": target or null}``; the child answers ``{"image": [width, height], "rows": n}``
followed by the RGB bytes, ``n`` rows at a time (neither side holds a second copy of the
whole image).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from PIL import Image

from vlprep._decode._child import (
    ChildProcess,
    Deadline,
    child_read,
    child_receive,
    child_send,
    error_reply,
    limit_memory,
)
from vlprep._decode._pillow import (
    PLUGIN_FORMATS,
    ImageOptions,
    apply_draft,
    ensure_plugin,
    fast_plan,
    finish,
    open_checked,
    quiet_pillow,
)
from vlprep._decode._sniff import sniff_format
from vlprep._errors import BackendUnavailableError

__all__ = ["decode_isolated", "decode_isolated_for"]

_SLACK = 256 << 20  # address space beyond max_decode_bytes: allocator and library overhead
_BAND_BYTES = 8 << 20  # RGB bytes per band sent back


def decode_isolated(data: bytes, options: ImageOptions) -> Image.Image:
    """:func:`vlprep._decode.image.decode_image` in a child process.

    Raises:
        ResourceLimitError: past ``decode_timeout`` or out of memory in the child (and the
            limits, as in process).
        DecodeError, UnsupportedFormatError: as in process, or the decoder crashed.
    """
    return _run(data, options, None)[0]


def decode_isolated_for(
    data: bytes, options: ImageOptions, target_of: Callable[[int, int], tuple[int, int]]
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`vlprep._decode.image.decode_image_for` in a child process (errors as above)."""
    image, target = _run(data, options, target_of)
    return image, target if target is not None else target_of(image.height, image.width)


def _run(
    data: bytes,
    options: ImageOptions,
    target_of: Callable[[int, int], tuple[int, int]] | None,
) -> tuple[Image.Image, tuple[int, int] | None]:
    """The decoded image, and the target when it came from the header (fast JPEG)."""
    timeout = options.decode_timeout
    if timeout is None:  # pragma: no cover - callers check
        raise ValueError("an isolated decode needs ImageOptions.decode_timeout")
    deadline = Deadline(timeout)
    child = ChildProcess(__name__, "image", "ImageOptions.decode_timeout")
    try:
        request = {
            "options": _options_dict(options),
            "size": len(data),
            "memory": options.max_decode_bytes + _SLACK,
        }
        child.send(request, deadline, data)
        header = child.receive(deadline)["header"]
        target = None
        if target_of is not None and header["fast"]:
            target = target_of(int(header["height"]), int(header["width"]))
        child.send({"draft": target}, deadline)
        reply = child.receive(deadline)
        width, height = (int(v) for v in reply["image"])
        rows = max(1, int(reply["rows"]))
        image = Image.new("RGB", (width, height))
        for top in range(0, height, rows):
            band = min(rows, height - top)
            buffer = bytearray(band * width * 3)
            child.read_into(memoryview(buffer), deadline)
            image.paste(Image.frombytes("RGB", (width, band), buffer), (0, top))
    finally:
        child.close()
    return image, target


def _options_dict(options: ImageOptions) -> dict[str, Any]:
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    values["formats"] = sorted(values["formats"])
    values["decode_timeout"] = None  # the child decodes in process
    return values


def _error(exc: BaseException, memory: int) -> dict[str, Any]:
    limit = f"capped at max_decode_bytes + 256 MiB = {memory >> 20} MiB"
    return error_reply(exc, "image", limit, "ImageOptions.max_decode_bytes")


def _child_main() -> None:  # pragma: no cover - runs in the child, exercised by tests
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the reply pipe
    request = child_receive(stdin)
    memory = int(request["memory"])
    data = child_read(stdin, int(request["size"]))
    try:
        values = request["options"]
        options = ImageOptions(**{**values, "formats": frozenset(values["formats"])})
        # import the plugins before capping memory: the cap is for decoding
        Image.init()
        sniffed = sniff_format(data[:512])
        if sniffed in PLUGIN_FORMATS and sniffed in options.formats:
            with contextlib.suppress(BackendUnavailableError):
                ensure_plugin(sniffed)  # _open reports a missing plugin itself
        limit_memory(memory)
        with quiet_pillow():
            image = open_checked(data, options)
            plan = fast_plan(image, options)
            (height, width), turned = plan or ((image.height, image.width), False)
            header = {"height": height, "width": width, "fast": plan is not None}
            child_send(stdout, {"header": header})
            draft = child_receive(stdin)["draft"]
            if draft is not None:
                apply_draft(image, (int(draft[0]), int(draft[1])), turned)
            rgb = finish(image, options.exif_transpose)
        del image, data
        rows = max(1, _BAND_BYTES // (3 * rgb.width))
        child_send(stdout, {"image": [rgb.width, rgb.height], "rows": rows})
        for top in range(0, rgb.height, rows):
            band = rgb.crop((0, top, rgb.width, min(top + rows, rgb.height)))
            stdout.write(band.tobytes())
        stdout.flush()
    except BaseException as exc:
        child_send(stdout, _error(exc, memory))
