"""Message element dict -> typed spec. Every element key is read and validated here, once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vlprep.errors import InvalidInputError

__all__ = ["ImageSpec", "number_or_none", "parse_image_element", "unwrap_url"]


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One image element, validated.

    Attributes:
        source: a ``PIL.Image``, ``str`` (path, ``file://``, http(s), ``data:``), bytes,
            a numpy HWC/HW uint8 array or a torch CHW/HW uint8 tensor.
        min_pixels / max_pixels: area bounds from the element (``None`` = defaults).
        resized_height / resized_width: explicit target (both or neither are used).
    """

    source: object
    min_pixels: float | None = None
    max_pixels: float | None = None
    resized_height: float | None = None
    resized_width: float | None = None


def number_or_none(ele: Mapping[str, Any], key: str) -> float | None:
    """``ele[key]`` as a finite positive number, ``None`` when absent.

    Raises:
        InvalidInputError: present but not a finite number > 0 (bools and strings refused).
    """
    if key not in ele or ele[key] is None:
        return None
    value = ele[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(
            f"{key!r} must be a number, got {type(value).__name__} {str(value)[:20]!r}"
        )
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{key!r} must be a finite number > 0, got {value!r}")
    return value


def unwrap_url(value: object, key: str) -> object:
    """OpenAI-style ``{"url": ...}`` values -> the URL; anything else unchanged."""
    if isinstance(value, Mapping):
        url = value.get("url")
        if not isinstance(url, str):
            raise InvalidInputError(
                f"{key!r} given as a dict needs a string 'url' key (OpenAI style), "
                f"got keys {sorted(str(k) for k in value)[:8]}"
            )
        return url
    return value


def parse_image_element(ele: Mapping[str, Any]) -> ImageSpec:
    """Validate an image element (``{"type": "image", "image": ..., "max_pixels": ...}``).

    The source is ``ele["image"]``, else ``ele["image_url"]`` (a string or an OpenAI
    ``{"url": ...}`` dict). As in qwen-vl-utils, ``resized_height``/``resized_width`` are
    used only when both are present.

    Raises:
        InvalidInputError: not a mapping, no source, both an image and a video source,
            bad numbers, or ``min_pixels > max_pixels``.
    """
    if not isinstance(ele, Mapping):
        raise InvalidInputError(f"an image element must be a dict, got {type(ele).__name__}")
    if "image" in ele and ele["image"] is not None:
        source = ele["image"]
    elif "image_url" in ele and ele["image_url"] is not None:
        source = unwrap_url(ele["image_url"], "image_url")
    else:
        raise InvalidInputError("an image element needs an 'image' or 'image_url' key")
    if "video" in ele and ele["video"] is not None:
        raise InvalidInputError(
            "an element has both an image and a 'video' source; split it into two elements"
        )
    min_pixels = number_or_none(ele, "min_pixels")
    max_pixels = number_or_none(ele, "max_pixels")
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise InvalidInputError(f"min_pixels ({min_pixels}) must be <= max_pixels ({max_pixels})")
    resized_height = number_or_none(ele, "resized_height")
    resized_width = number_or_none(ele, "resized_width")
    if (resized_height is None) != (resized_width is None):
        # qwen-vl-utils ignores a lone resized_height/resized_width; so do we.
        resized_height = resized_width = None
    return ImageSpec(
        source=source,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        resized_height=resized_height,
        resized_width=resized_width,
    )
