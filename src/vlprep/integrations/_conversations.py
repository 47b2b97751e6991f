"""One dataset cell -> one conversation, and the bound defaults applied to its elements.

No Ray and no pyarrow here: plain Python values in, plain values out, so the Ray
callables and the single-process reference use the very same steps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vlprep._errors import InvalidInputError, VlprepError
from vlprep._estimates import element_for
from vlprep._inspect_batch import UNEXPECTED
from vlprep._messages import Conversation, extract_vision_info

__all__ = [
    "BOUND_KEYS",
    "UNEXPECTED",
    "bound_defaults",
    "conversation_of",
    "failure",
    "plain",
    "with_defaults",
]

BOUND_KEYS = ("min_pixels", "max_pixels", "total_pixels", "fps", "nframes")
"""The library's bound options, as element-key defaults (``vlprep.inspect``'s keywords)."""

_VISION_KEYS = ("image", "image_url", "video", "video_url")


def bound_defaults(
    min_pixels: float | None,
    max_pixels: float | None,
    total_pixels: float | None,
    fps: float | None,
    nframes: float | None,
) -> dict[str, Any]:
    """The bound options as element-key defaults, validated as :func:`element_for` does.

    Raises:
        InvalidInputError: a value that is not a finite number > 0, both fps and nframes.
    """
    values: dict[str, Any] = dict(
        zip(BOUND_KEYS, (min_pixels, max_pixels, total_pixels, fps, nframes), strict=True)
    )
    element_for({"video": "check.mp4"}, **values)  # validates the values, reads nothing
    return values


def failure(exc: BaseException) -> tuple[str, str]:
    """``(error_type, error)`` for a row: the class name, and vlprep's message or
    :data:`UNEXPECTED` (a foreign exception's text may quote the payload)."""
    if isinstance(exc, VlprepError):
        return type(exc).__name__, str(exc)
    return type(exc).__name__, UNEXPECTED


def plain(value: object) -> Any:
    """``value`` as plain Python: numpy arrays and scalars unwrapped, null dict keys dropped.

    Arrow gives every struct the union of the keys seen in a column and fills the absent
    ones with null; a text element would then carry ``"image": None`` and count as an
    image. A key whose value is null therefore means "absent", as everywhere in vlprep's
    element handling (``ele.get(key) is None``).
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and type(value).__module__ == "numpy":
        return plain(tolist())
    return value


def conversation_of(value: object) -> list[dict[str, Any]]:
    """One dataset cell as a conversation (a list of message dicts).

    Accepts a list of messages, a ``{"messages": [...]}`` record, or either as JSON text
    (a JSONL line read with ``ray.data.read_text``, a Parquet string column).

    Raises:
        InvalidInputError: null, invalid JSON, not UTF-8, or not a conversation; the
            message names the problem, never the cell's content.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError("the conversation cell is not UTF-8 text") from None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"the conversation cell is not valid JSON (line {exc.lineno}, column "
                f"{exc.colno}: {exc.msg})"
            ) from None
    value = plain(value)
    if value is None:
        raise InvalidInputError("the conversation cell is null")
    if isinstance(value, Mapping):
        if "messages" not in value:
            raise InvalidInputError(
                "a dataset record must be a list of messages or a dict with a 'messages' "
                f"key, got a dict with keys {sorted(str(k) for k in value)[:8]}"
            )
        value = value["messages"]
    if not isinstance(value, list):
        raise InvalidInputError(
            f"a conversation must be a list of messages, got {type(value).__name__}"
        )
    extract_vision_info(value)  # validates the message structure
    return value


def _is_vision(ele: Mapping[str, Any]) -> bool:
    return any(k in ele for k in _VISION_KEYS) or ele.get("type", "text") in _VISION_KEYS


def with_defaults(conversation: Conversation, defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A copy of ``conversation`` whose vision elements have the bound defaults filled in.

    Each element goes through :func:`vlprep._estimates.element_for` (what ``vlprep.inspect``
    and ``vlprep-inspect`` do), so a key set in the element wins and ``fps``/``nframes``
    apply only to videos that set neither. Other content is kept as is.

    Raises:
        InvalidInputError: a vision element without a source, bad default values.
    """
    out: list[dict[str, Any]] = []
    for message in conversation:
        content = message.get("content")
        if not isinstance(content, list):
            out.append(dict(message))
            continue
        items = [
            element_for(ele, **defaults) if isinstance(ele, Mapping) and _is_vision(ele) else ele
            for ele in content
        ]
        out.append({**message, "content": items})
    return out
