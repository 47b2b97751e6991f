"""Parse answers into items and map them to the original image (:mod:`vlprep.grounding`).

:func:`parse` returns items in the family's model space; :func:`to_original` maps them;
:func:`locate` does both for one message element, reading the image's sizes
(:func:`image_sizes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from PIL import Image

from vlprep._decode.image import ImageOptions
from vlprep._errors import InvalidInputError
from vlprep._image import HEADER_PREFIX, read_header
from vlprep._planning import image_size_for, upright_size
from vlprep._presets import Preset, as_family, resolve_family
from vlprep._sources import FetchPolicy
from vlprep._specs import parse_image_element
from vlprep.grounding._text import RawItem, parse_json, parse_plain, parse_tags, parse_tokens
from vlprep.grounding._types import Box, Family, Item, OnError, Point, Quad, Space, TextFormat

__all__ = [
    "image_sizes",
    "locate",
    "model_space",
    "parse",
    "resized_size_from_grid",
    "to_original",
]

_MODEL_SPACE: dict[Family, Space] = {
    "qwen-vl": "norm1000",  # <box>(x1,y1),(x2,y2)</box> in [0, 1000) of the original image
    "qwen2-vl": "norm1000",
    "qwen2.5-vl": "resized",
    "qwen3-vl": "norm1000",
}


def _family(family: str | Preset) -> Family:
    return as_family(family)


def model_space(family: str | Preset) -> Space:
    """The space a family writes coordinates in: ``"norm1000"`` or ``"resized"``."""
    return _MODEL_SPACE[_family(family)]


# ------------------------------------------------------------------------- public API

_GROUNDING_TOKEN = re.compile(r"<\|(?:box_start|object_ref_start)\|>")
_GROUNDING_TAG = re.compile(r"<(?:ref|box|quad)>")
_JSON_KEY = re.compile(r"\b(?:bbox_2d|point_2d)\b")
FORMATS: tuple[TextFormat, ...] = ("auto", "json", "tokens", "tags", "plain")


def check_format(format: object) -> None:
    """Raise :class:`InvalidInputError` unless ``format`` is a :data:`TextFormat`."""
    if format not in FORMATS:
        valid = ", ".join(repr(f) for f in FORMATS)
        raise InvalidInputError(f"format must be one of {valid}, got {format!r}")


def detect_format(text: str) -> TextFormat:
    """The form ``format="auto"`` reads ``text`` in: tokens, tags, JSON, else plain."""
    if _GROUNDING_TOKEN.search(text):
        return "tokens"
    if _GROUNDING_TAG.search(text):
        return "tags"
    if _JSON_KEY.search(text):
        return "json"
    return "plain"


def scan(text: str, format: TextFormat, on_error: OnError) -> list[RawItem]:
    """The raw items of ``text`` read in ``format`` (``"auto"`` resolved first)."""
    if format == "auto":
        format = detect_format(text)
    if format == "tokens":
        return parse_tokens(text, on_error)
    if format == "tags":
        return parse_tags(text, on_error)
    if format == "json":
        return parse_json(text, on_error)
    return parse_plain(text)


def _typed(raw: RawItem, space: Space) -> Item:
    kind, v, label, extra = raw
    if kind == "box":
        return Box(v[0], v[1], v[2], v[3], label, space, v, extra)
    if kind == "point":
        return Point(v[0], v[1], label, space, v, extra)
    corners = ((v[0], v[1]), (v[2], v[3]), (v[4], v[5]), (v[6], v[7]))
    return Quad(corners, label, space, v, extra)


def parse(
    text: str,
    family: str | Preset,
    *,
    format: TextFormat = "auto",
    on_error: OnError = "raise",
) -> list[Item]:
    """Boxes and points in a model answer, in the family's model space.

    Args:
        text: the decoded answer. Decode with ``skip_special_tokens=False`` for Qwen-VL and
            Qwen2-VL (or keep the grounding tokens and tags); without them only unlabelled
            ``(x1,y1),(x2,y2)`` boxes can be found.
        family: ``"qwen-vl"``, ``"qwen2-vl"``, ``"qwen2.5-vl"``, ``"qwen3-vl"`` (any alias
            of :func:`vlprep._presets.get_preset`) or a :class:`Preset`. It decides the space
            (``"norm1000"`` for Qwen-VL, Qwen2-VL and Qwen3-VL, ``"resized"`` for
            Qwen2.5-VL), not the format.
        format: ``"auto"`` (default), ``"json"``, ``"tokens"``, ``"tags"`` or ``"plain"``
            (:data:`TextFormat`).
        on_error: ``"raise"`` a :class:`GroundingParseError` on a malformed item, or
            ``"skip"`` it (logged at WARNING) and keep the rest.

    Returns:
        :class:`Box`, :class:`Point` and :class:`Quad` items in order of appearance,
        coordinates as written (not clamped, not reordered); empty when the text holds no
        grounding.

    Raises:
        GroundingParseError: a malformed item (see ``docs/grounding.md``) with ``"raise"``.
        InvalidInputError: ``text`` not a str, unknown family, format or on_error.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
    check_format(format)
    if on_error not in ("raise", "skip"):
        raise InvalidInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    space = model_space(family)
    return [_typed(raw, space) for raw in scan(text, format, on_error)]


def check_size(value: object, name: str) -> tuple[int, int]:
    """``value`` as ``(height, width)`` of positive ints.

    Raises:
        InvalidInputError: anything else (named ``name`` in the message).
    """
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise InvalidInputError(f"{name} must be (height, width) positive ints, got {value!r}")
    return value[0], value[1]


def resized_size_from_grid(grid_thw: Sequence[Any], patch_size: int) -> tuple[int, int]:
    """``(height, width)`` of the model input from an ``image_grid_thw`` row.

    ``(grid[1] * patch_size, grid[2] * patch_size)``: the size vlprep (or a processor)
    resized the image to. ``grid_thw`` may be a list, tuple or 1-D tensor of 3 ints.
    """
    values = [int(v) for v in grid_thw]
    if len(values) != 3 or min(values) < 1 or patch_size < 1:
        raise InvalidInputError(
            f"grid_thw must be 3 positive ints and patch_size >= 1, got {values}, {patch_size}"
        )
    return values[1] * patch_size, values[2] * patch_size


def _clamp(value: float, high: int) -> float:
    return min(max(value, 0.0), float(high))


def to_original(
    items: Iterable[Item],
    original_size: tuple[int, int],
    resized_size: tuple[int, int] | None = None,
) -> list[Item]:
    """Map items to pixels of the upright original image.

    ``"norm1000"``: ``x = v * W / 1000``; ``"resized"``: ``x = v * W / W_resized`` (same
    for y with heights). Results are clamped to ``[0, W] x [0, H]`` and box corners are
    ordered (a :class:`Quad` keeps its corner order); ``raw`` keeps the model's numbers.
    Items already ``"original"`` are returned unchanged.

    Args:
        items: output of :func:`parse`.
        original_size: ``(height, width)`` of the upright original image (as
            :func:`vlprep._image.load_image` returns it).
        resized_size: ``(height, width)`` vlprep resized the image to; needed for
            ``"resized"`` items. Take it from :func:`image_sizes` or
            :func:`resized_size_from_grid`: other bounds give shifted boxes.

    Raises:
        InvalidInputError: bad sizes, or a ``"resized"`` item without ``resized_size``.
    """
    height, width = check_size(original_size, "original_size")
    resized = None if resized_size is None else check_size(resized_size, "resized_size")
    out: list[Item] = []
    for item in items:
        if item.space == "original":
            out.append(item)
            continue
        if item.space == "norm1000":
            sx, sy = width / 1000, height / 1000
        elif resized is None:
            raise InvalidInputError(
                "Qwen2.5-VL coordinates are pixels of the resized input: pass resized_size="
                "(height, width) as vlprep sized the image (image_sizes or image_grid_thw)"
            )
        else:
            sx, sy = width / resized[1], height / resized[0]
        if isinstance(item, Quad):
            a, b, c, d = ((_clamp(x * sx, width), _clamp(y * sy, height)) for x, y in item.points)
            out.append(replace(item, points=(a, b, c, d), space="original"))
        elif isinstance(item, Box):
            xs = sorted((_clamp(item.x1 * sx, width), _clamp(item.x2 * sx, width)))
            ys = sorted((_clamp(item.y1 * sy, height), _clamp(item.y2 * sy, height)))
            out.append(replace(item, x1=xs[0], y1=ys[0], x2=xs[1], y2=ys[1], space="original"))
        else:
            x, y = _clamp(item.x * sx, width), _clamp(item.y * sy, height)
            out.append(replace(item, x=x, y=y, space="original"))
    return out


def image_sizes(
    element: Mapping[str, Any],
    preset: Preset,
    *,
    image: Image.Image | None = None,
    policy: FetchPolicy | None = None,
    options: ImageOptions | None = None,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(original, resized)`` sizes, each ``(height, width)``, as ``build_inputs`` sizes them.

    The original size is upright (EXIF orientation applied unless
    ``options.exif_transpose`` is off), read from the header when possible. The resized size
    uses ``preset.factor``, ``preset.image_min_pixels``/``image_max_pixels`` and the
    element's ``min_pixels``/``max_pixels``/``resized_height``/``resized_width``, exactly as
    :func:`vlprep._image.fetch_image_for` does; a first-generation preset gives its fixed
    ``preset.image_size`` (448x448) and refuses those element keys, as ``build_inputs`` does.

    Args:
        element: the image element of the message (``{"image": ..., "max_pixels": ...}``).
        preset: the model's preset (e.g. from :func:`vlprep._presets.preset_from_processor`).
        image: the upright original image if already loaded (no source is read then).
        policy, options: as for :func:`vlprep._image.load_image`; use the ones the inputs
            were built with.
    """
    spec = parse_image_element(element)
    options = options or ImageOptions()
    if image is not None:
        original = (image.height, image.width)
    else:
        found = read_header(spec.source, policy=policy, options=options, prefix=HEADER_PREFIX)
        original = upright_size(found, options.exif_transpose)
    resized = image_size_for(
        spec, original[0], original[1], preset, max_output_pixels=options.max_output_pixels
    )
    return original, resized


def locate(
    text: str,
    element: Mapping[str, Any],
    preset: Preset,
    *,
    family: str | None = None,
    image: Image.Image | None = None,
    format: TextFormat = "auto",
    on_error: OnError = "raise",
    policy: FetchPolicy | None = None,
    options: ImageOptions | None = None,
) -> list[Item]:
    """:func:`parse` + :func:`to_original` for the answer about one image element.

    Args:
        text, format, on_error: as for :func:`parse`.
        element, preset, image, policy, options: as for :func:`image_sizes`.
        family: the model family; default ``preset.family``. Kept for older callers; one
            that disagrees with ``preset.family`` is an ``InvalidInputError``.

    Returns:
        Items in ``"original"`` space (pixels of the upright image), in answer order.
    """
    items = parse(text, resolve_family(preset, family), format=format, on_error=on_error)
    if not items:
        return []
    original, resized = image_sizes(element, preset, image=image, policy=policy, options=options)
    return to_original(items, original, resized)
