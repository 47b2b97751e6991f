"""Message element dict -> typed spec. Every element key is read and validated here, once."""

from __future__ import annotations

import difflib
import logging
import numbers
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vlprep._errors import InvalidInputError
from vlprep._numbers import is_finite_number, shown

__all__ = [
    "FIT_KEYS",
    "IMAGE_KEYS",
    "VIDEO_KEYS",
    "ImageSpec",
    "VideoSpec",
    "element_kind",
    "number_or_none",
    "parse_image_element",
    "parse_video_element",
    "unwrap_url",
]


logger = logging.getLogger(__name__)

FIT_KEYS = frozenset({"min_tokens", "priority"})
"""Keys read by :func:`vlprep.fit` only (an item's floor in tokens, its shrink priority);
the loaders accept and ignore them."""
IMAGE_KEYS = frozenset(
    {"type", "image", "image_url", "min_pixels", "max_pixels", "resized_height", "resized_width"}
    | FIT_KEYS
)
"""Every key an image element is read for (anything else is ignored, with a warning)."""
VIDEO_KEYS = frozenset(
    {
        "type",
        "video",
        "video_url",
        "fps",
        "nframes",
        "min_frames",
        "max_frames",
        "video_start",
        "video_end",
        "min_pixels",
        "max_pixels",
        "total_pixels",
        "resized_height",
        "resized_width",
        "sample_fps",
        "raw_fps",
        "video_stream",
    }
    | FIT_KEYS
)
"""Every key a video element is read for."""
_TYPES = ("image", "image_url", "video", "video_url", "text")
_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()
# Keys come from strangers on a server: the "once" memory is bounded. Past it, one last line
# says so and further new keys go unreported (neither memory nor the log grows with a flood).
_WARNED_MAX = 1024


def _warn_once(kind: str, key: str, message: str) -> None:
    with _WARNED_LOCK:
        if (kind, key) in _WARNED or len(_WARNED) > _WARNED_MAX:
            return
        _WARNED.add((kind, key))
        if len(_WARNED) > _WARNED_MAX:
            message = (
                f"{_WARNED_MAX} distinct unknown element keys reported; further ones are not "
                "(restart the process to report them again)"
            )
    logger.warning(message)


def warn_unknown_keys(ele: Mapping[str, Any], kind: Literal["image", "video"]) -> None:
    """Log once per key (a ``logging`` warning on ``vlprep._specs``) what ``ele`` holds that
    vlprep ignores: a misspelled key (``"max_pixel"``), a key of the other modality, or an
    unknown ``"type"`` (``"imgae"``), naming the closest valid one."""
    known = IMAGE_KEYS if kind == "image" else VIDEO_KEYS
    other = VIDEO_KEYS if kind == "image" else IMAGE_KEYS
    for key in ele:
        if key in known:
            continue
        name = str(key)[:40]
        if key in other:
            _warn_once(
                kind,
                name,
                f"{kind} elements ignore {name!r} (a {'image' if kind == 'video' else 'video'} "
                "key there)",
            )
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        _warn_once(
            kind, name, f"{kind} element key {name!r} is not one vlprep reads, ignored{hint}"
        )
    kind_value = ele.get("type")
    if isinstance(kind_value, str) and kind_value not in _TYPES:
        close = difflib.get_close_matches(kind_value[:40], _TYPES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        _warn_once(
            "type",
            kind_value[:40],
            f"element type {kind_value[:40]!r} is unknown (read as {kind} from its source "
            f"key){hint}",
        )


def element_kind(ele: Mapping[str, Any]) -> Literal["image", "video"] | None:
    """``"image"`` when ``ele`` has an ``image``/``image_url`` source, ``"video"`` for
    ``video``/``video_url``, else ``None`` (an image source wins when both are set)."""
    if any(ele.get(k) is not None for k in ("image", "image_url")):
        return "image"
    if any(ele.get(k) is not None for k in ("video", "video_url")):
        return "video"
    return None


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
        InvalidInputError: present but not a finite number > 0 (bools and strings refused;
            an int beyond the float range is not finite).
    """
    if key not in ele or ele[key] is None:
        return None
    value = ele[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(
            f"{key!r} must be a number, got {type(value).__name__} {shown(value)}"
        )
    if not is_finite_number(value) or value <= 0:
        raise InvalidInputError(f"{key!r} must be a finite number > 0, got {shown(value)}")
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
    warn_unknown_keys(ele, "image")
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


@dataclass(frozen=True, slots=True)
class VideoSpec:
    """One video element, validated.

    Attributes:
        source: a path, ``file://``/http(s)/``data:video/...`` URL, bytes, a binary file
            object, a uint8 array/tensor ``(T, H, W, C)`` or ``(T, C, H, W)``, or a list of
            frames (anything an image element accepts).
        fps / nframes / min_frames / max_frames: sampling request (``fps`` xor ``nframes``).
        video_start / video_end: clip bounds in seconds.
        min_pixels / max_pixels / total_pixels: per-frame bounds and the clip budget.
        resized_height / resized_width: explicit frame size (both or neither).
        sample_fps / raw_fps: for frame lists and arrays: the rate the frames were taken at,
            and the source video's rate (metadata only).
        video_stream: for containers: the index of the video stream to read (overrides
            ``VideoOptions.stream``); ``None``: the options' choice (the best stream).
    """

    source: object
    fps: float | None = None
    nframes: float | None = None
    min_frames: float | None = None
    max_frames: float | None = None
    video_start: float | None = None
    video_end: float | None = None
    min_pixels: float | None = None
    max_pixels: float | None = None
    total_pixels: float | None = None
    resized_height: float | None = None
    resized_width: float | None = None
    sample_fps: float | None = None
    raw_fps: float | None = None
    video_stream: int | None = None


def _stream(ele: Mapping[str, Any]) -> int | None:
    """``ele["video_stream"]``: a container stream index (an int >= 0), ``None`` when absent."""
    value = ele.get("video_stream")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidInputError(
            "'video_stream' must be the container index of a video stream (an int >= 0, "
            f"as VideoMetadata.stream_index reports it), got {str(value)[:20]!r}"
        )
    return int(value)


def _seconds(ele: Mapping[str, Any], key: str) -> float | None:
    if key not in ele or ele[key] is None:
        return None
    value = ele[key]
    if not is_finite_number(value):
        raise InvalidInputError(f"{key!r} must be a finite number of seconds, got {shown(value)}")
    return float(value)


def _rate(ele: Mapping[str, Any], key: str) -> float | None:
    """A frame rate that may arrive as a numeric string (the Qwen3-VL README passes '1')."""
    value = ele.get(key)
    if isinstance(value, str):
        text = value
        try:
            value = float(text)
        except ValueError:
            raise InvalidInputError(f"{key!r} must be a number, got {text[:20]!r}") from None
    return number_or_none({key: value}, key)


def parse_video_element(ele: Mapping[str, Any]) -> VideoSpec:
    """Validate a video element (``{"type": "video", "video": ..., "fps": 2, ...}``).

    The source is ``ele["video"]``, else ``ele["video_url"]`` (a string or an OpenAI
    ``{"url": ...}`` dict).

    Raises:
        InvalidInputError: no source, both ``fps`` and ``nframes``, bad numbers,
            ``min_pixels > max_pixels``, ``video_start >= video_end``, or a
            ``video_stream`` that is not an int >= 0.
    """
    if not isinstance(ele, Mapping):
        raise InvalidInputError(f"a video element must be a dict, got {type(ele).__name__}")
    if ele.get("video") is not None:
        source = ele["video"]
    elif ele.get("video_url") is not None:
        source = unwrap_url(ele["video_url"], "video_url")
    else:
        raise InvalidInputError("a video element needs a 'video' or 'video_url' key")
    warn_unknown_keys(ele, "video")
    if ele.get("fps") is not None and ele.get("nframes") is not None:
        raise InvalidInputError("give either 'fps' or 'nframes' in a video element, not both")
    numbers = {
        key: number_or_none(ele, key)
        for key in (
            "fps",
            "nframes",
            "min_frames",
            "max_frames",
            "min_pixels",
            "max_pixels",
            "total_pixels",
            "resized_height",
            "resized_width",
        )
    }
    if (
        numbers["min_pixels"] is not None
        and numbers["max_pixels"] is not None
        and numbers["min_pixels"] > numbers["max_pixels"]
    ):
        raise InvalidInputError(
            f"min_pixels ({numbers['min_pixels']}) must be <= max_pixels ({numbers['max_pixels']})"
        )
    if (numbers["resized_height"] is None) != (numbers["resized_width"] is None):
        numbers["resized_height"] = numbers["resized_width"] = None
    start, end = _seconds(ele, "video_start"), _seconds(ele, "video_end")
    if start is not None and end is not None and start >= end:
        raise InvalidInputError(f"video_start ({start}s) must be before video_end ({end}s)")
    return VideoSpec(
        source=source,
        video_start=start,
        video_end=end,
        sample_fps=_rate(ele, "sample_fps"),
        raw_fps=_rate(ele, "raw_fps"),
        video_stream=_stream(ele),
        **numbers,
    )
