"""The item types of :mod:`vlprep.grounding`: :class:`Box`, :class:`Point` and their spaces.

Kept apart so that the drawing code (``_draw``) and the parsing and mapping code
(``_locate``) share them without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from vlprep._presets import Family  # the one family table; re-exported for grounding users

__all__ = ["Box", "Family", "Item", "OnError", "Point", "Quad", "Space", "TextFormat"]

Space: TypeAlias = Literal["norm1000", "resized", "original"]
TextFormat: TypeAlias = Literal["auto", "json", "tokens", "tags", "plain"]
"""``"json"``: ``bbox_2d``/``point_2d`` objects; ``"tokens"``: ``<|box_start|>(x1,y1),(x2,y2)
<|box_end|>`` (Qwen2-VL); ``"tags"``: ``<ref>label</ref><box>(x1,y1),(x2,y2)</box>`` and
``<quad>`` (Qwen-VL, the first generation); ``"plain"``: ``(x1,y1),(x2,y2)`` left after
``skip_special_tokens=True``; ``"auto"``: tokens if a Qwen2-VL grounding token is present,
else tags if a ``<ref>``/``<box>``/``<quad>`` tag is, else JSON if a key is, else plain."""
OnError: TypeAlias = Literal["raise", "skip"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box ``(x1, y1)``-``(x2, y2)`` in coordinate space ``space``.

    Attributes:
        x1, y1, x2, y2: corners, in ``space`` units (see :mod:`vlprep.grounding`). After
            :func:`to_original`, clamped to the image and ordered (``x1 <= x2``, ``y1 <= y2``).
        label: the ``label`` key (JSON) or the ``<|object_ref_start|>`` text; ``None`` if absent.
        space: ``"norm1000"``, ``"resized"`` or ``"original"``.
        raw: the four numbers exactly as the model wrote them (model space, unclamped).
        extra: other keys of the JSON object (e.g. ``text_content``), read-only.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    label: str | None = None
    space: Space = "original"
    raw: tuple[float, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)

    @property
    def width(self) -> float:
        """``x2 - x1`` in ``space`` units."""
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        """``y2 - y1`` in ``space`` units."""
        return self.y2 - self.y1

    @property
    def center(self) -> tuple[float, float]:
        """``(x, y)`` of the centre, in ``space`` units."""
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2


@dataclass(frozen=True, slots=True)
class Point:
    """A point ``(x, y)`` in coordinate space ``space`` (fields as in :class:`Box`)."""

    x: float
    y: float
    label: str | None = None
    space: Space = "original"
    raw: tuple[float, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)


XY: TypeAlias = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Quad:
    """A quadrilateral: four corners ``(x, y)`` in the order written (Qwen-VL ``<quad>``).

    The first generation writes OCR text regions as ``<quad>(x1,y1),(x2,y2),(x3,y3),(x4,y4)
    </quad>``; the corners need not be axis-aligned or in any particular winding.

    Attributes:
        points: the four corners, in ``space`` units and the order the model wrote them.
            After :func:`to_original` each corner is clamped to the image; the order is kept.
        label, space, raw, extra: as in :class:`Box`; ``raw`` holds the eight numbers.
    """

    points: tuple[XY, XY, XY, XY]
    label: str | None = None
    space: Space = "original"
    raw: tuple[float, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)

    @property
    def bounds(self) -> Box:
        """The enclosing axis-aligned :class:`Box` (same label and space; ``raw`` empty)."""
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        return Box(min(xs), min(ys), max(xs), max(ys), self.label, self.space)


Item: TypeAlias = Box | Point | Quad
