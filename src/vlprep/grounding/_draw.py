"""Pillow drawing: :func:`vlprep.grounding.draw` and the helpers behind it.

Coordinates are continuous original-image pixels: a box ``(x1, y1, x2, y2)`` covers the
pixel columns ``round(x1) .. round(x2) - 1``; its outline is drawn inward from those edges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from vlprep._errors import InvalidInputError
from vlprep.grounding._types import Box, Item, Quad

__all__ = ["PALETTE", "draw", "draw_items", "item_colours"]

RGB = tuple[int, int, int]

PALETTE: tuple[RGB, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
)
"""Colours in order of use: distinct hues that read on photos (Sasha Trubetskoy's set)."""


def item_colours(items: Sequence[Item]) -> list[RGB]:
    """The colour of each item: one per distinct label, one per unlabelled item."""
    by_label: dict[str, RGB] = {}
    used = 0
    colours = []
    for item in items:
        if item.label is not None and item.label in by_label:
            colours.append(by_label[item.label])
            continue
        colour = PALETTE[used % len(PALETTE)]
        used += 1
        if item.label is not None:
            by_label[item.label] = colour
        colours.append(colour)
    return colours


def _positive(name: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _text_colour(fill: RGB) -> RGB:
    luma = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luma > 150 else (255, 255, 255)


def draw_items(
    image: Image.Image,
    items: Sequence[Item],
    *,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """Render ``items`` (original space) on an RGB copy of ``image``; see :func:`draw`."""
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    width, height = out.size
    short = min(width, height)
    line = _positive("line_width", line_width, max(2, round(short / 250)))
    size = _positive("font_size", font_size, max(12, round(short / 40)))
    font: Any = ImageFont.load_default(size=size)
    pen = ImageDraw.Draw(out)
    colours = item_colours(items)
    tags: list[tuple[str, int, int, int, RGB]] = []  # label, x, top, bottom, colour
    for item, colour in zip(items, colours, strict=True):
        if isinstance(item, Box):
            left, top = round(item.x1), round(item.y1)
            right = max(left, round(item.x2) - 1)
            bottom = max(top, round(item.y2) - 1)
            pen.rectangle((left, top, right, bottom), outline=colour, width=line)
            anchor = (left, top, bottom)
        elif isinstance(item, Quad):
            corners = [(round(x), round(y)) for x, y in item.points]
            pen.polygon(corners, outline=colour, width=line)
            xs, ys = [c[0] for c in corners], [c[1] for c in corners]
            anchor = (min(xs), min(ys), max(ys))
        else:
            radius = max(3, 2 * line)
            x, y = round(item.x), round(item.y)
            pen.ellipse(
                (x - radius, y - radius, x + radius, y + radius),
                fill=colour,
                outline=(255, 255, 255),
                width=max(1, line // 2),
            )
            anchor = (x + radius, y - radius, y + radius)
        if item.label:
            tags.append((item.label, *anchor, colour))
    pad = max(1, size // 6)
    for label, x, top, bottom, colour in tags:
        text = label if len(label) <= 80 else label[:77] + "..."
        left_t, top_t, right_t, bottom_t = pen.textbbox((0, 0), text, font=font)
        tag_w, tag_h = right_t - left_t + 2 * pad, bottom_t - top_t + 2 * pad
        tx = min(max(0, x), max(0, width - tag_w))
        ty = top - tag_h if top - tag_h >= 0 else min(top, max(0, height - tag_h))
        if ty == top and bottom - top < tag_h and bottom + tag_h <= height:
            ty = bottom + 1  # no room above, box too short to hold it: go below
        pen.rectangle((tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=colour)
        pen.text((tx + pad - left_t, ty + pad - top_t), text, fill=_text_colour(colour), font=font)
    return out


def draw(
    image: Image.Image,
    items: Iterable[Item],
    *,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """Draw ``"original"``-space boxes, points and quads on a copy of ``image``.

    Items with the same label share a colour (unlabelled items get one each, in the order
    of :data:`vlprep.grounding._draw.PALETTE`); labels are written on a tag filled with that
    colour, above the box (inside it at the top edge); a :class:`Quad` is outlined as a
    polygon through its corners, its tag placed as for its enclosing box. Line width defaults to
    ``max(2, round(min(W, H) / 250))``, the font size to ``max(12, round(min(W, H) / 40))``.

    Args:
        image: the upright original image (any mode; it is not modified).
        items: boxes and points in ``"original"`` space (from :func:`to_original`).

    Returns:
        A new RGB ``PIL.Image.Image`` of the same size. Saving it is the caller's job.

    Raises:
        InvalidInputError: an item not in ``"original"`` space, or a width/size below 1.
    """
    items = list(items)
    for item in items:
        if item.space != "original":
            raise InvalidInputError(
                f"draw needs items in 'original' space, got {item.space!r}; call to_original"
            )
    return draw_items(image, items, line_width=line_width, font_size=font_size)
