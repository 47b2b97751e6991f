"""Encoded image bytes -> header facts and an RGB ``PIL.Image``, within limits.

Order of work: sniff the magic number, count JPEG scans and markers or PNG chunks (bounded
walks, :mod:`vlprep._decode._structure`), open the header with an allow-listed set of Pillow
plugins, check source pixels and aspect ratio, and only then decode pixels. The result is
upright (EXIF orientation applied by default), RGB, with any transparency composited on
white and 16-bit samples scaled (not clipped) to 8 bit.

The Pillow work itself lives in :mod:`vlprep._decode._pillow`, which the isolated decoder
(:mod:`vlprep._decode._image_child`, ``ImageOptions.decode_timeout``) runs in a child
process; this module chooses between the two.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from vlprep._decode._pillow import (
    DEFAULT_FORMATS,
    DEFAULT_OPTIONS,
    ImageDecode,
    ImageHeader,
    ImageOptions,
    apply_draft,
    decode_bytes_per_pixel,
    fast_plan,
    finish,
    finish_image,
    open_checked,
    open_image,
    orient_and_convert,
    orientation_of,
    probe_header,
    quiet_pillow,
    to_rgb,
)
from vlprep._decode._sniff import sniff_format

__all__ = [
    "DEFAULT_FORMATS",
    "ImageDecode",
    "ImageHeader",
    "ImageOptions",
    "decode_bytes_per_pixel",
    "decode_image",
    "decode_image_for",
    "finish_image",
    "open_image",
    "orient_and_convert",
    "orientation_of",
    "probe_header",
    "sniff_format",
    "to_rgb",
]


def decode_image(data: bytes, options: ImageOptions | None = None) -> Image.Image:
    """Decode ``data`` to an upright RGB image (first frame of animations).

    Returns:
        ``PIL.Image.Image`` in mode ``"RGB"`` (8 bit per channel), the decoded size
        (rotated per EXIF when ``options.exif_transpose``).

    Raises:
        DecodeError, UnsupportedFormatError, ResourceLimitError: see :func:`open_image`.
    """
    options = options or DEFAULT_OPTIONS
    if options.decode_timeout is not None:
        from vlprep._decode._image_child import decode_isolated

        return decode_isolated(data, options)
    with quiet_pillow():
        return finish(open_checked(data, options), options.exif_transpose)


def decode_image_for(
    data: bytes,
    options: ImageOptions,
    target_of: Callable[[int, int], tuple[int, int]],
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``data`` for a known output size: ``(image, (height, width))``.

    ``target_of(height, width)`` maps the upright source size to the output size. With
    ``options.decode == "fast"`` a JPEG (or MPO) is decoded at the largest DCT scale whose
    upright size is at least the target in both sides (read from the header: the target
    comes from the full size, never the reduced one); everything else decodes at full size
    and the target comes from the decoded size, as in :func:`decode_image`.

    Returns:
        Upright RGB ``PIL.Image`` (full size, or reduced but ``>=`` the target) and the
        target ``(height, width)``.
    """
    if options.decode_timeout is not None:
        from vlprep._decode._image_child import decode_isolated_for

        return decode_isolated_for(data, options, target_of)
    with quiet_pillow():
        image = open_checked(data, options)
        plan = fast_plan(image, options)
        if plan is None:
            image = finish(image, options.exif_transpose)
            return image, target_of(image.height, image.width)
        (height, width), turned = plan
        target = target_of(height, width)
        apply_draft(image, target, turned)
        return finish(image, options.exif_transpose), target
