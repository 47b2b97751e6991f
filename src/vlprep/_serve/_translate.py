"""OpenAI chat ``messages`` -> one vlprep conversation, checked part by part.

Accepted content parts:

- ``{"type": "text", "text": str}``
- ``{"type": "image_url", "image_url": {"url": str, "detail": "auto" | "low" | "high"}}``
  (or ``"image_url": str``)
- ``{"type": "video_url", "video_url": {"url": str}}`` (or ``"video_url": str``)
- vlprep's own ``{"type": "image", "image": str}`` and ``{"type": "video", "video": str |
  [str, ...]}`` (a list is a frame-list video: one image source per frame)

vlprep's element keys (``min_pixels``, ``max_pixels``, ``resized_height``,
``resized_width``; for videos also ``fps``, ``nframes``, ``min_frames``, ``max_frames``,
``video_start``, ``video_end``, ``total_pixels``, ``sample_fps``, ``raw_fps``,
``video_stream``) may sit in the part itself or inside its ``image_url`` / ``video_url``
object; any other key there is refused (a knob silently dropped is the bug this server
exists to fix). ``detail: "low"`` caps an image at :data:`LOW_DETAIL_TOKENS` tokens unless the
part sets ``max_pixels`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vlprep._presets import Preset
from vlprep._serve._http_errors import ApiError
from vlprep._specs import IMAGE_KEYS, VIDEO_KEYS

__all__ = ["LOW_DETAIL_TOKENS", "Translated", "VisionPart", "translate"]

LOW_DETAIL_TOKENS = 256
"""The vision tokens ``detail: "low"`` allows one image (``max_pixels = 256 * factor**2``)."""

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_SOURCE_KEYS = {"type", "image", "image_url", "video", "video_url"}
_IMAGE_KNOBS = frozenset(IMAGE_KEYS - _SOURCE_KEYS)
_VIDEO_KNOBS = frozenset(VIDEO_KEYS - _SOURCE_KEYS)
_DETAILS = ("auto", "low", "high")


@dataclass(frozen=True, slots=True)
class VisionPart:
    """Where one image or video came from: ``messages[message].content[part]``."""

    message: int
    part: int
    kind: Literal["image", "video"]
    frames: int  # 1, or a frame list's length

    @property
    def param(self) -> str:
        return f"messages[{self.message}].content[{self.part}]"


@dataclass(frozen=True, slots=True)
class Translated:
    """The conversation vlprep reads, and where each of its vision elements came from
    (``parts[i]`` is ``extract_vision_info``'s ``i``-th element)."""

    conversation: list[dict[str, Any]]
    parts: tuple[VisionPart, ...]

    @property
    def images(self) -> int:
        return sum(p.kind == "image" for p in self.parts)

    @property
    def videos(self) -> int:
        return sum(p.kind == "video" for p in self.parts)


def _bad(message: str, param: str, code: str = "invalid_content") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def _source(value: object, where: str, field_name: str) -> str:
    """A URL object ``{"url": str, ...}`` or a string -> the string."""
    if isinstance(value, Mapping):
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise _bad(f"{where}: '{field_name}' needs a non-empty string url", where)
    return value


def _knobs(part: Mapping[str, Any], inner: object, kind: str, where: str) -> dict[str, Any]:
    allowed = _IMAGE_KNOBS if kind == "image" else _VIDEO_KNOBS
    knobs: dict[str, Any] = {}
    outer_extra = set(part) - _SOURCE_KEYS - allowed
    inner_keys: set[str] = set()
    if isinstance(inner, Mapping):
        inner_keys = set(inner) - {"url", "detail"}
    unknown = sorted(str(k)[:40] for k in (outer_extra | (inner_keys - allowed)))
    if unknown:
        raise _bad(
            f"{where}: {kind} parts do not take {unknown[:4]}; valid keys: {sorted(allowed)}",
            where,
            "unknown_key",
        )
    for key in sorted(allowed):
        values = [src[key] for src in (part, inner) if isinstance(src, Mapping) and key in src]
        if len(values) == 2 and values[0] != values[1]:
            raise _bad(f"{where}: {key!r} is given twice with different values", where)
        if values and values[0] is not None:
            knobs[key] = values[0]
    return knobs


def _image(part: Mapping[str, Any], where: str, preset: Preset) -> dict[str, Any]:
    inner = part.get("image_url") if part.get("image") is None else None
    raw = part.get("image") if part.get("image") is not None else inner
    if raw is None:
        raise _bad(f"{where}: an image part needs 'image_url' ({{'url': ...}})", where)
    url = _source(raw, where, "image_url" if inner is not None else "image")
    element: dict[str, Any] = {"type": "image", "image": url}
    element.update(_knobs(part, inner, "image", where))
    detail = inner.get("detail", "auto") if isinstance(inner, Mapping) else "auto"
    if detail not in _DETAILS:
        raise _bad(f"{where}: detail must be one of {list(_DETAILS)}", where)
    if detail == "low" and "max_pixels" not in element:
        element["max_pixels"] = LOW_DETAIL_TOKENS * preset.factor**2
        if "min_pixels" not in element and preset.image_min_pixels > element["max_pixels"]:
            element["min_pixels"] = element["max_pixels"]
    return element


def _video(part: Mapping[str, Any], where: str) -> tuple[dict[str, Any], int]:
    inner = part.get("video_url") if part.get("video") is None else None
    raw = part.get("video") if part.get("video") is not None else inner
    if raw is None:
        raise _bad(f"{where}: a video part needs 'video_url' ({{'url': ...}})", where)
    source: str | list[str]
    if isinstance(raw, list):
        if not raw:
            raise _bad(f"{where}: a frame-list video needs at least one frame", where)
        source = [_source(item, f"{where}.video[{i}]", "video") for i, item in enumerate(raw)]
        frames = len(source)
    else:
        source = _source(raw, where, "video_url" if inner is not None else "video")
        frames = 1
    element: dict[str, Any] = {"type": "video", "video": source}
    element.update(_knobs(part, inner, "video", where))
    return element, frames


def translate(messages: object, preset: Preset, *, max_images: int, max_videos: int) -> Translated:
    """Check ``messages`` and turn them into one vlprep conversation.

    Raises:
        ApiError: 400 naming the message and part at fault (a malformed part, an unknown
            key, a role this server does not take, more images or videos than allowed).
    """
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list", "messages", "invalid_messages")
    conversation: list[dict[str, Any]] = []
    parts: list[VisionPart] = []
    for m, message in enumerate(messages):
        where = f"messages[{m}]"
        if not isinstance(message, Mapping):
            raise _bad(f"{where} must be an object with 'role' and 'content'", where)
        role = _ROLES.get(str(message.get("role")))
        if role is None:
            raise _bad(
                f"{where}: role must be one of {sorted(_ROLES)} (tools are not supported)",
                f"{where}.role",
            )
        content = message.get("content")
        if isinstance(content, str):
            conversation.append({"role": role, "content": content})
            continue
        if content is None or not isinstance(content, list):
            raise _bad(f"{where}: 'content' must be a string or a list of parts", where)
        out: list[dict[str, Any]] = []
        for p, part in enumerate(content):
            at = f"{where}.content[{p}]"
            if not isinstance(part, Mapping):
                raise _bad(f"{at} must be an object with a 'type'", at)
            kind = part.get("type")
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise _bad(f"{at}: a text part needs a string 'text'", at)
                out.append({"type": "text", "text": text})
            elif kind in ("image_url", "image"):
                if role != "user":
                    raise _bad(f"{at}: images are taken in user messages only", at)
                out.append(_image(part, at, preset))
                parts.append(VisionPart(m, p, "image", 1))
            elif kind in ("video_url", "video"):
                if role != "user":
                    raise _bad(f"{at}: videos are taken in user messages only", at)
                element, frames = _video(part, at)
                out.append(element)
                parts.append(VisionPart(m, p, "video", frames))
            else:
                shown = str(kind)[:32] if isinstance(kind, str) else type(kind).__name__
                raise _bad(
                    f"{at}: part type {shown!r} is not supported; use text, image_url, "
                    "video_url, image or video",
                    at,
                    "unsupported_part",
                )
        conversation.append({"role": role, "content": out})
    result = Translated(conversation, tuple(parts))
    for count, limit, name in (
        (result.images, max_images, "images"),
        (result.videos, max_videos, "videos"),
    ):
        if count > limit:
            raise ApiError(
                400,
                f"the request has {count} {name}, above this server's limit of {limit} per "
                f"request; send fewer {name} per request",
                code=f"too_many_{name}",
                param="messages",
            )
    return result
