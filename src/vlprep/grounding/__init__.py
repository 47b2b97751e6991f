"""Boxes and points in Qwen-VL answers: parse them, map them to the original image, draw them.

Coordinate spaces (``Box.space`` / ``Point.space``):

- ``"norm1000"``: relative to the image, 0 .. 1000 on each axis (Qwen2-VL, Qwen3-VL).
- ``"resized"``: absolute pixels of the resized model input, i.e. the ``smart_resize``
  size vlprep produced (Qwen2.5-VL).
- ``"original"``: pixels of the upright original image (EXIF orientation applied, as
  vlprep loads it). Coordinates are continuous: the image spans ``[0, W] x [0, H]``, so a
  box covering the whole image is ``(0, 0, W, H)``.

:func:`parse` returns items in the family's model space; :func:`to_original` maps them;
:func:`locate` does both for one message element; :func:`draw` renders original-space items.
See ``docs/grounding.md`` for the formats and the rules for malformed answers.

The package's files: ``_types`` (the items), ``_text`` (scanning answers), ``_locate``
(parsing, sizes and mapping) and ``_draw`` (drawing).
"""

from __future__ import annotations

from vlprep._errors import GroundingParseError
from vlprep.grounding._draw import draw
from vlprep.grounding._locate import (
    image_sizes,
    locate,
    model_space,
    parse,
    resized_size_from_grid,
    to_original,
)
from vlprep.grounding._types import Box, Family, Item, OnError, Point, Space, TextFormat

__all__ = [
    "Box",
    "Family",
    "GroundingParseError",
    "Item",
    "OnError",
    "Point",
    "Space",
    "TextFormat",
    "draw",
    "image_sizes",
    "locate",
    "model_space",
    "parse",
    "resized_size_from_grid",
    "to_original",
]
