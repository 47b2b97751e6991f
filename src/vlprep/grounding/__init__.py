"""Boxes and points in Qwen-VL answers: parse, map to the original image, draw, convert.

Coordinate spaces (``Box.space`` / ``Point.space`` / ``Quad.space``):

- ``"norm1000"``: relative to the image, 0 .. 1000 on each axis (Qwen-VL, Qwen2-VL,
  Qwen3-VL).
- ``"resized"``: absolute pixels of the resized model input, i.e. the ``smart_resize``
  size vlprep produced (Qwen2.5-VL).
- ``"original"``: pixels of the upright original image (EXIF orientation applied, as
  vlprep loads it). Coordinates are continuous: the image spans ``[0, W] x [0, H]``, so a
  box covering the whole image is ``(0, 0, W, H)``.

:func:`parse` returns items in the family's model space; :func:`to_original` maps them;
:func:`locate` does both for one message element; :func:`draw` renders original-space items.
:func:`convert` moves items from one generation's convention to another's,
:func:`convert_text` and :func:`convert_dataset` rewrite the numbers in text and datasets.
See ``docs/grounding.md`` for the formats, the rules for malformed answers and the
conversion formulas.

The package's files: ``_types`` (the items), ``_text`` (scanning answers), ``_locate``
(parsing, sizes and mapping), ``_draw`` (drawing), ``_convert`` (coordinate frames and text
rewriting) and ``_dataset`` (datasets rewritten in place).
"""

from __future__ import annotations

from vlprep._errors import GroundingParseError
from vlprep.grounding._convert import TextConversion, convert, convert_text, coordinate_frame
from vlprep.grounding._dataset import (
    DatasetConversion,
    DatasetProblem,
    DatasetRewrite,
    convert_dataset,
)
from vlprep.grounding._draw import draw
from vlprep.grounding._locate import (
    image_sizes,
    locate,
    model_space,
    parse,
    resized_size_from_grid,
    to_original,
)
from vlprep.grounding._types import (
    Box,
    Family,
    Item,
    OnError,
    Point,
    Quad,
    Space,
    TextFormat,
)

__all__ = [
    "Box",
    "DatasetConversion",
    "DatasetProblem",
    "DatasetRewrite",
    "Family",
    "GroundingParseError",
    "Item",
    "OnError",
    "Point",
    "Quad",
    "Space",
    "TextConversion",
    "TextFormat",
    "convert",
    "convert_dataset",
    "convert_text",
    "coordinate_frame",
    "draw",
    "image_sizes",
    "locate",
    "model_space",
    "parse",
    "resized_size_from_grid",
    "to_original",
]
