"""Coordinates from one generation's convention to another's (:func:`vlprep.grounding.convert`).

Every generation writes a coordinate as a position in a *frame* laid over the upright
original image: ``1000 x 1000`` units for the 0-1000 families (Qwen-VL, Qwen2-VL, Qwen3-VL),
the resized input's ``H_r x W_r`` pixels for Qwen2.5-VL. A value ``v`` on the x axis is the
original pixel ``v * W / F_w``, so moving it from frame ``F`` to frame ``G`` is
``v * G_w / F_w`` (heights likewise). Text is rewritten in place by :func:`convert_text`:
only the numbers change, rounded half up to integers as a model writes them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from vlprep._decode.image import ImageOptions
from vlprep._errors import GroundingParseError, InvalidInputError
from vlprep._planning import image_size_for
from vlprep._presets import Preset, get_preset
from vlprep._specs import parse_image_element
from vlprep.grounding._locate import check_format, check_size, detect_format, model_space, scan
from vlprep.grounding._text import NUMBER, PAIRS, TAGS, TOKENS
from vlprep.grounding._types import Box, Item, Point, TextFormat

__all__ = [
    "Edit",
    "TextConversion",
    "apply_edits",
    "convert",
    "convert_text",
    "coordinate_frame",
    "rewrite",
]

_NORM = (1000, 1000)
_MAX_OUTPUT = ImageOptions().max_output_pixels


def coordinate_frame(
    original_size: tuple[int, int],
    family: str | Preset,
    *,
    element: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """``(height, width)`` of the frame a generation's coordinates count in.

    ``(1000, 1000)`` for the 0-1000 families; for Qwen2.5-VL the size ``build_inputs``
    resizes the image to: ``smart_resize`` of ``original_size`` with the preset's image
    bounds and the element's ``min_pixels`` / ``max_pixels`` / ``resized_height`` /
    ``resized_width`` (as :func:`vlprep.grounding.image_sizes` computes it).

    Args:
        original_size: ``(height, width)`` of the upright original image (EXIF applied).
        family: a family name or alias (its default preset's bounds), or a :class:`Preset`
            (its family and its bounds).
        element: the image element the coordinates are about, for its size keys; its
            source is not read (it may be left out).

    Raises:
        InvalidInputError: bad sizes, an unknown family, bad element keys, or (Qwen2.5-VL)
            an aspect ratio above 200 that ``smart_resize`` refuses.
        ResourceLimitError: the element asks for an input above the default
            ``ImageOptions.max_output_pixels``.
    """
    height, width = check_size(original_size, "original_size")
    preset = get_preset(family)
    if model_space(preset) == "norm1000":
        return _NORM
    keys: dict[str, Any] = {"image": ""}
    if element is not None:
        if not isinstance(element, Mapping):
            raise InvalidInputError(f"element must be a dict, got {type(element).__name__}")
        keys.update(element)
        if keys.get("image") is None and keys.get("image_url") is None:
            keys["image"] = ""
    spec = parse_image_element(keys)
    return image_size_for(spec, height, width, preset, max_output_pixels=_MAX_OUTPUT)


def _scale(value: float, to: int, frm: int) -> float:
    return value if to == frm else value * to / frm


def convert(
    items: Iterable[Item],
    original_size: tuple[int, int],
    source: str | Preset,
    target: str | Preset,
    *,
    element: Mapping[str, Any] | None = None,
) -> list[Item]:
    """Move items from ``source``'s coordinate convention to ``target``'s.

    ``x_target = x * G_w / F_w`` and ``y_target = y * G_h / F_h``, where ``F`` and ``G`` are
    the two :func:`coordinate_frame` sizes for this image. Values are not rounded, clamped
    or reordered; ``raw`` keeps the numbers the source model wrote. When both frames are
    equal (the same generation and bounds, or two 0-1000 generations) the items come back
    with unchanged numbers.

    Args:
        items: items in ``source``'s model space (from :func:`vlprep.grounding.parse`).
        original_size: ``(height, width)`` of the upright original image (EXIF applied).
        source, target: family names or aliases, or :class:`Preset` objects (whose image
            bounds decide Qwen2.5-VL's frame).
        element: the image element, for its size keys (see :func:`coordinate_frame`).

    Returns:
        The items in ``target``'s model space, in the same order.

    Raises:
        InvalidInputError: an item not in ``source``'s model space, bad sizes or families.
    """
    space_from, space_to = model_space(source), model_space(target)
    frame_from = coordinate_frame(original_size, source, element=element)
    frame_to = coordinate_frame(original_size, target, element=element)
    (fh, fw), (gh, gw) = frame_from, frame_to
    out: list[Item] = []
    for item in items:
        if item.space != space_from:
            raise InvalidInputError(
                f"convert got an item in {item.space!r} space, but {_name(source)} writes "
                f"{space_from!r}; pass the family the items were parsed with as source="
            )
        if isinstance(item, Box):
            out.append(
                replace(
                    item,
                    x1=_scale(item.x1, gw, fw),
                    y1=_scale(item.y1, gh, fh),
                    x2=_scale(item.x2, gw, fw),
                    y2=_scale(item.y2, gh, fh),
                    space=space_to,
                )
            )
        elif isinstance(item, Point):
            out.append(
                replace(item, x=_scale(item.x, gw, fw), y=_scale(item.y, gh, fh), space=space_to)
            )
        else:
            a, b, c, d = ((_scale(x, gw, fw), _scale(y, gh, fh)) for x, y in item.points)
            out.append(replace(item, points=(a, b, c, d), space=space_to))
    return out


def _name(family: str | Preset) -> str:
    return get_preset(family).family


# ------------------------------------------------------------------------ text rewriting


@dataclass(frozen=True, slots=True)
class TextConversion:
    """The result of :func:`convert_text`.

    Attributes:
        text: the text with every coordinate rewritten (the input itself when nothing
            changed); every other character is the input's.
        items: how many boxes, points and quads were found (and converted).
        changed: how many numbers were written differently.
        format: the form the text was read in (``"auto"`` resolved).
    """

    text: str
    items: int
    changed: int
    format: TextFormat


# A JSON number (the grammar), and a bbox_2d / point_2d array of plain numbers.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_JSON_ARRAY = re.compile(r'"(?P<key>bbox_2d|point_2d)"\s*:\s*\[(?P<body>[^\[\]{}"]*)\]')
_JSON_BODY = re.compile(rf"\s*{_JSON_NUMBER.pattern}\s*(?:,\s*{_JSON_NUMBER.pattern}\s*)*")

Group = tuple[str, list[tuple[int, int]]]
"""``(kind, [(start, end) of each number])`` of one item found in the text."""


def _numbers_in(text: str, start: int, end: int, per: int, kind: str) -> list[Group]:
    spans = [(start + m.start(), start + m.end()) for m in NUMBER.finditer(text[start:end])]
    usable = len(spans) - len(spans) % per
    return [(kind, spans[i : i + per]) for i in range(0, usable, per)]


def _groups(text: str, format: TextFormat) -> list[Group]:
    """Every item's number spans, found as the parser of ``format`` finds the items."""
    groups: list[Group] = []
    if format == "tokens":
        for m in TOKENS.finditer(text):
            if m.group("box") is not None:
                groups += _numbers_in(text, m.start("box"), m.end("box"), 4, "box")
    elif format == "tags":
        for m in TAGS.finditer(text):
            kind = m.group("kind")
            if kind is not None:
                per = 4 if kind == "box" else 8
                groups += _numbers_in(text, m.start("body"), m.end("body"), per, kind)
    elif format == "json":
        for m in _JSON_ARRAY.finditer(text):
            body = m.group("body")
            if not _JSON_BODY.fullmatch(body):
                continue
            base = m.start("body")
            spans = [(base + n.start(), base + n.end()) for n in _JSON_NUMBER.finditer(body)]
            kind, per = ("box", 4) if m.group("key") == "bbox_2d" else ("point", 2)
            if len(spans) == per:
                groups.append((kind, spans))
    else:
        for m in PAIRS.finditer(text):
            groups.append(("box", [m.span(i) for i in range(1, 5)]))
    return groups


def _integer(value: float) -> str:
    if not math.isfinite(value) or abs(value) > 1e15:
        raise GroundingParseError(
            f"a converted coordinate is out of range ({value:.3g}); the text is left unchanged"
        )
    return str(math.floor(value + 0.5))


Edit = tuple[int, int, str]
"""``(start, end, new)``: replace ``text[start:end]`` (one number) with ``new``."""


def rewrite(
    text: str,
    original_size: tuple[int, int],
    source: str | Preset,
    target: str | Preset,
    *,
    element: Mapping[str, Any] | None = None,
    format: TextFormat = "auto",
) -> tuple[list[Edit], int, TextFormat]:
    """The edits :func:`convert_text` makes: ``(edits in text order, items, format read)``."""
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
    check_format(format)
    read = detect_format(text) if format == "auto" else format
    frame_from = coordinate_frame(original_size, source, element=element)
    frame_to = coordinate_frame(original_size, target, element=element)
    if format == "auto" and read == "plain":
        return [], 0, read
    raw = scan(text, read, "raise")
    if not raw:
        return [], 0, read
    groups = _groups(text, read)
    found = sorted((kind, tuple(float(text[s:e]) for s, e in spans)) for kind, spans in groups)
    if found != sorted((kind, values) for kind, values, _, _ in raw):
        raise GroundingParseError(
            f"could not place the {len(raw)} grounding items of the text for rewriting "
            f"(found {len(groups)} coordinate groups); the text is left unchanged"
        )
    if frame_from == frame_to:
        return [], len(raw), read
    edits: list[Edit] = []
    for _, spans in groups:
        for i, (start, end) in enumerate(spans):
            axis = 1 - i % 2  # x (width) at even positions, y (height) at odd ones
            value = _scale(float(text[start:end]), frame_to[axis], frame_from[axis])
            new = _integer(value)
            if new != text[start:end]:
                edits.append((start, end, new))
    return sorted(edits), len(raw), read


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    """``text`` with non-overlapping ``edits`` applied."""
    pieces: list[str] = []
    last = 0
    for start, end, new in sorted(edits):
        pieces += [text[last:start], new]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def convert_text(
    text: str,
    original_size: tuple[int, int],
    source: str | Preset,
    target: str | Preset,
    *,
    element: Mapping[str, Any] | None = None,
    format: TextFormat = "auto",
) -> TextConversion:
    """Rewrite the coordinates in ``text`` from ``source``'s convention to ``target``'s.

    Only the numbers of the boxes, points and quads change; the text form (Qwen2-VL special
    tokens, Qwen-VL tags, JSON) and every other character are kept. Each new number is
    :func:`convert`'s value rounded half up to an integer (``floor(v + 0.5)``). When the two
    frames are equal the text is returned unchanged, numbers included.

    ``format="auto"`` reads the special-token, tag and JSON forms as :func:`parse` picks them,
    but never bare ``(x1,y1),(x2,y2)`` pairs, which prose can hold too: pass
    ``format="plain"`` to rewrite those.

    Args:
        text: a model answer or a prompt.
        original_size, source, target, element: as for :func:`convert`.
        format: as for :func:`vlprep.grounding.parse`.

    Raises:
        GroundingParseError: a malformed item, or items the rewriter could not place in the
            text (nothing is changed then).
        InvalidInputError: bad arguments, as for :func:`convert`.
    """
    edits, items, read = rewrite(
        text, original_size, source, target, element=element, format=format
    )
    return TextConversion(apply_edits(text, edits), items, len(edits), read)
