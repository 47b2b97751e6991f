"""Model-family presets: the numbers that decide sizes, token counts and normalisation.

The family table (:data:`FAMILIES`, the aliases, the transformers ``model_type`` spellings,
the processor class names and :data:`DEFAULT_FAMILY`) lives here and only here; the runner,
:mod:`vlprep._positions`, :mod:`vlprep.grounding`, the CLI and the integrations read it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeAlias, cast

from vlprep._errors import InvalidInputError

__all__ = [
    "DEFAULT_FAMILY",
    "DEFAULT_PRESET",
    "FAMILIES",
    "FAMILY_BY_MODEL_TYPE",
    "PROCESSOR_FAMILIES",
    "QWEN2_5_VL",
    "QWEN2_VL",
    "QWEN3_VL",
    "QWEN_VL",
    "VIDEO_FAMILIES",
    "Family",
    "Preset",
    "as_family",
    "family_of",
    "get_preset",
    "preset_from_processor",
    "refuse_video",
    "resolve_family",
    "with_qwen_vl_utils_video",
]

Family: TypeAlias = Literal["qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl"]


class _Row(NamedTuple):
    aliases: tuple[str, ...]
    model_types: tuple[str, ...]  # transformers config.model_type spellings
    class_prefix: str  # what the processor's (or tokenizer's) class name starts with
    processor: bool  # a transformers processor class (not remote code only)
    video: bool  # takes video elements


# The family table. Everything below is derived from it.
_TABLE: dict[Family, _Row] = {
    # The first generation (Qwen-VL, Qwen-VL-Chat): remote code only, its tokenizer class
    # is QWenTokenizer; model_type "qwen" (shared with the text-only Qwen, which has no
    # "visual" config).
    "qwen-vl": _Row(("qwenvl", "qwen-vl-chat", "qwen1-vl"), ("qwen",), "QWen", False, False),
    "qwen2-vl": _Row(("qwen2vl",), ("qwen2_vl",), "Qwen2VL", True, True),
    "qwen2.5-vl": _Row(("qwen2.5vl", "qwen2-5-vl"), ("qwen2_5_vl",), "Qwen2_5_VL", True, True),
    "qwen3-vl": _Row(
        ("qwen3vl", "qwen3-vl-moe"), ("qwen3_vl", "qwen3_vl_moe"), "Qwen3VL", True, True
    ),
}

FAMILIES: tuple[Family, ...] = tuple(_TABLE)
"""The canonical family names, oldest first."""

PROCESSOR_FAMILIES: tuple[Family, ...] = tuple(f for f, row in _TABLE.items() if row.processor)
"""The families transformers ships a processor for (all but ``"qwen-vl"``, whose checkpoints
carry a remote-code tokenizer and model only)."""

VIDEO_FAMILIES: tuple[Family, ...] = tuple(f for f, row in _TABLE.items() if row.video)
"""The families that take video elements (all but ``"qwen-vl"``: images only)."""

DEFAULT_FAMILY: Family = "qwen2.5-vl"
"""The family a function uses when neither a preset nor a processor says otherwise."""

FAMILY_BY_MODEL_TYPE: Mapping[str, Family] = {
    model_type: family for family, row in _TABLE.items() for model_type in row.model_types
}
"""transformers ``config.model_type`` -> family (``"qwen3_vl_moe"`` -> ``"qwen3-vl"``)."""

_FAMILY_BY_NAME: dict[str, Family] = {
    name: family
    for family, row in _TABLE.items()
    for name in (family, *row.aliases, *row.model_types)
}

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_GUESS = cast(Family, "")  # Preset.family left out: guessed once in __post_init__


def _lookup(name: str) -> Family | None:
    return _FAMILY_BY_NAME.get(name.strip().lower())


def _valid() -> str:
    return ", ".join(repr(f) for f in FAMILIES)


def _guess_family(name: str, patch_size: int) -> Family:
    known = _lookup(name)
    if known is not None:
        return known
    for alias, family in sorted(_FAMILY_BY_NAME.items(), key=lambda kv: -len(kv[0])):
        # "qwen" (the first generation's model_type) would claim every Qwen name
        if "vl" in alias and name.lower().startswith(alias):
            return family
    return "qwen3-vl" if patch_size == 16 else "qwen2-vl"


def as_family(value: str | Preset) -> Family:
    """The canonical family of a family name, alias, ``model_type`` or :class:`Preset`.

    Raises:
        InvalidInputError: unknown name; the message lists the valid ones.
    """
    if isinstance(value, Preset):
        return value.family
    if not isinstance(value, str):
        raise InvalidInputError(f"family must be a str, got {type(value).__name__}")
    family = _lookup(value)
    if family is None:
        raise InvalidInputError(f"unknown family {value[:40]!r}; valid: {_valid()}")
    return family


@dataclass(frozen=True, slots=True)
class Preset:
    """Vision constants of one Qwen-VL family.

    ``family`` (``"qwen-vl"``, ``"qwen2-vl"``, ``"qwen2.5-vl"`` or ``"qwen3-vl"``; aliases
    such as ``"qwen2_5_vl"`` are normalised) decides what the numbers cannot: Qwen2-VL and
    Qwen2.5-VL share every vision constant, yet only Qwen2.5-VL takes
    ``second_per_grid_ts`` and writes grounding boxes in resized pixels. It is
    keyword-only and survives :meth:`replace`, whatever the new ``name``. A preset built
    without it gets the family guessed once from ``name`` (an alias, or a name that starts
    with one) or else the patch size (16 -> Qwen3-VL, else Qwen2-VL), with a
    ``DeprecationWarning``: pass ``family=`` explicitly.

    Pixel bounds are areas in pixels (not edge lengths). Video bounds are per frame;
    ``video_total_pixels`` is the budget for a whole clip counted per temporal patch (two
    frames), as qwen-vl-utils' ``total_pixels`` (default ``128000 * factor**2 * 0.9``).
    Override a field with :meth:`replace`; read a checkpoint's with :meth:`from_pretrained`.

    The first generation (``family="qwen-vl"``, :data:`QWEN_VL`) has no pixel bounds:
    every image is squashed to ``image_size`` ``(height, width)`` (aspect ratio not kept)
    and costs ``image_tokens`` tokens (its resampler's 256 queries), whatever its size; it
    takes no video. Both fields are required for that family and ``None`` for the others;
    the pixel bounds of a ``"qwen-vl"`` preset are the fixed area, for display only.
    """

    name: str
    family: Family = field(default=_GUESS, kw_only=True)
    patch_size: int
    merge_size: int = 2
    temporal_patch_size: int = 2
    image_min_pixels: int = 3136
    image_max_pixels: int = 12_845_056
    video_min_pixels: int = 100_352
    video_max_pixels: int = 602_112
    video_total_pixels: int = 90_316_800
    image_mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    image_std: tuple[float, float, float] = OPENAI_CLIP_STD
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768
    image_size: tuple[int, int] | None = None
    image_tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise InvalidInputError(f"Preset.name must be a str, got {type(self.name).__name__}")
        for name in (
            "patch_size",
            "merge_size",
            "temporal_patch_size",
            "min_frames",
            "max_frames",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"Preset.{name} must be a positive int, got {value!r}")
        if self.family == _GUESS:
            guessed = _guess_family(self.name, self.patch_size)
            warnings.warn(
                f"Preset(name={self.name[:40]!r}) without family=: guessed {guessed!r}; pass "
                "family= (one of " + _valid() + ") or start from QWEN2_VL / QWEN2_5_VL / "
                "QWEN3_VL with .replace(...)",
                DeprecationWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "family", guessed)
        else:
            object.__setattr__(self, "family", as_family(self.family))
        for low, high in (
            ("image_min_pixels", "image_max_pixels"),
            ("video_min_pixels", "video_max_pixels"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo <= 0 or hi < lo:
                raise InvalidInputError(
                    f"Preset.{low} ({lo}) must be > 0 and <= Preset.{high} ({hi})"
                )
        if not self.video_total_pixels > 0:
            raise InvalidInputError(
                f"Preset.video_total_pixels must be > 0, got {self.video_total_pixels!r}"
            )
        if self.min_frames > self.max_frames:
            raise InvalidInputError(
                f"Preset.min_frames ({self.min_frames}) must be <= max_frames ({self.max_frames})"
            )
        if not self.fps > 0:
            raise InvalidInputError(f"Preset.fps must be > 0, got {self.fps!r}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise InvalidInputError("Preset.image_mean/image_std need 3 values, std > 0")
        self._check_fixed_size()

    def _check_fixed_size(self) -> None:
        fixed = (self.image_size, self.image_tokens)
        if self.family != "qwen-vl":
            if fixed != (None, None):
                raise InvalidInputError(
                    f"Preset.image_size / image_tokens are the first generation's fixed input "
                    f"(family 'qwen-vl'); family {self.family!r} sizes images by its pixel "
                    "bounds: leave them None"
                )
            return
        size, tokens = fixed
        if size is None or tokens is None:
            raise InvalidInputError(
                "family 'qwen-vl' needs Preset.image_size (448, 448) and image_tokens 256: "
                "start from QWEN_VL with .replace(...)"
            )
        if (
            not isinstance(size, tuple)
            or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)
            or any(v % self.patch_size for v in size)
        ):
            raise InvalidInputError(
                "Preset.image_size must be (height, width), positive ints that are multiples "
                f"of patch_size ({self.patch_size}), got {size!r}"
            )
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise InvalidInputError(f"Preset.image_tokens must be a positive int, got {tokens!r}")

    @property
    def takes_video(self) -> bool:
        """Whether the family takes video elements (every one but ``"qwen-vl"``)."""
        return _TABLE[self.family].video

    @property
    def factor(self) -> int:
        """Side granularity of resized images: ``patch_size * merge_size`` (28 or 32)."""
        return self.patch_size * self.merge_size

    def replace(self, **changes: object) -> Preset:
        """Return a copy with ``changes`` applied (validated again); ``family`` is kept
        unless ``changes`` names it."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike[str] | object) -> Preset:
        """The preset a checkpoint was configured (and usually trained) with.

        ``source`` is a transformers Qwen-VL processor object, or a local checkpoint
        directory (hub ids are not fetched: download the checkpoint, or load its processor
        with ``AutoProcessor.from_pretrained`` and pass that).

        Directory: the family comes from ``config.json``'s ``model_type``
        (``"qwen2_5_vl"``, ``"qwen3_vl_moe"``, ...), else from the ``processor_class`` of
        the processor files. The image and video processor settings are read as
        transformers reads them: the ``"image_processor"`` / ``"video_processor"`` sections
        of ``processor_config.json`` (transformers 5 writes only that file), else
        ``preprocessor_config.json`` / ``video_preprocessor_config.json``.

        Keys -> fields (every family):

        - ``patch_size``, ``merge_size``, ``temporal_patch_size``, ``image_mean``,
          ``image_std`` -> the fields of the same name.
        - image ``size.shortest_edge`` (legacy ``min_pixels``) -> ``image_min_pixels``;
          ``size.longest_edge`` (legacy ``max_pixels``) -> ``image_max_pixels``.
        - video ``fps``, ``min_frames``, ``max_frames`` -> the fields of the same name.
        - video ``size.shortest_edge`` (legacy ``min_pixels``) -> ``video_min_pixels``.

        Qwen2-VL / Qwen2.5-VL (``Qwen2VLVideoProcessor`` sizes each frame alone):

        - video ``size.longest_edge`` (legacy ``max_pixels``) -> ``video_max_pixels``.
        - video ``max_video_tokens`` -> ``video_total_pixels = int(max_video_tokens·f²·0.9)``
          (``f = patch·merge``), transformers' and qwen-vl-utils' clip budget.

        Qwen3-VL (``Qwen3VLVideoProcessor`` bounds ``frames·h·w`` of the whole clip):

        - video ``size.longest_edge`` -> ``video_total_pixels = longest_edge //
          temporal_patch_size`` (vlprep counts the clip budget per temporal patch, as
          qwen-vl-utils does; transformers counts every frame).
        - video ``max_video_tokens`` (per-frame token ceiling) -> ``video_max_pixels =
          max_video_tokens·f²``.

        Keys that are absent keep the family preset's value. A checkpoint without any
        video config gets, from transformers, a video processor built from the image
        config; video bounds equal to the image bounds are taken as that fallback and
        left at the family's video defaults, so a processor object and its directory give
        the same preset.

        Qwen-VL (``model_type`` ``"qwen"`` with a ``visual`` section; or its
        ``QWenTokenizer`` object, which gives :data:`QWEN_VL`): ``visual.image_size`` ->
        ``image_size`` (square) and the pixel bounds, ``visual.patch_size`` ->
        ``patch_size``; mean/std and the 256 tokens are fixed in its remote code.

        Raises:
            InvalidInputError: not a Qwen-VL processor or checkpoint (the message names
                the file and key), a missing directory, unreadable JSON, a hub id, or
                inconsistent image/video settings.
        """
        if isinstance(source, (str, os.PathLike)):
            return _from_directory(Path(source))
        if _processor_family(source) == "qwen-vl":
            return QWEN_VL  # a tokenizer: the vision settings live in the model's config
        return _from_sections(
            _processor_family(source),
            _attributes(getattr(source, "image_processor", None)),
            _attributes(getattr(source, "video_processor", None)),
        )


QWEN2_VL = Preset(name="qwen2-vl", family="qwen2-vl", patch_size=14)
"""Qwen2-VL: patch 14 (factor 28), hub pixel bounds 3136 .. 12,845,056, CLIP mean/std."""

QWEN2_5_VL = Preset(name="qwen2.5-vl", family="qwen2.5-vl", patch_size=14)
"""Qwen2.5-VL: same vision constants as Qwen2-VL."""

QWEN3_VL = Preset(
    name="qwen3-vl",
    family="qwen3-vl",
    patch_size=16,
    image_min_pixels=65_536,
    image_max_pixels=16_777_216,
    video_min_pixels=131_072,
    video_max_pixels=786_432,
    video_total_pixels=117_964_800,
    image_mean=(0.5, 0.5, 0.5),
    image_std=(0.5, 0.5, 0.5),
)
"""Qwen3-VL: patch 16 (factor 32), hub image bounds 256² .. 4096², mean = std = 0.5."""

QWEN_VL = Preset(
    name="qwen-vl",
    family="qwen-vl",
    patch_size=14,
    image_min_pixels=448 * 448,
    image_max_pixels=448 * 448,
    image_size=(448, 448),
    image_tokens=256,
)
"""Qwen-VL / Qwen-VL-Chat (the first generation): every image squashed to 448x448 with
bicubic resampling (aspect ratio not kept), CLIP mean/std, 256 tokens per image (the
resampler's queries over the 32x32 patch grid), images only. Its prompt format is
ChatML with ``Picture n: <img>...</img>`` spans; see ``docs/qwen-vl.md``."""

_PRESETS: dict[Family, Preset] = {p.family: p for p in (QWEN_VL, QWEN2_VL, QWEN2_5_VL, QWEN3_VL)}

DEFAULT_PRESET: Preset = _PRESETS[DEFAULT_FAMILY]
"""The preset of :data:`DEFAULT_FAMILY` (:data:`QWEN2_5_VL`)."""


def refuse_video(preset: Preset) -> None:
    """Raise if ``preset``'s family takes no video (the first generation).

    Raises:
        InvalidInputError: naming the families that take video.
    """
    if not preset.takes_video:
        raise InvalidInputError(
            f"preset {preset.name[:40]!r} (family {preset.family!r}) takes images only; a video "
            "element needs a family that takes video: " + ", ".join(repr(f) for f in VIDEO_FAMILIES)
        )


def resolve_family(preset: Preset | None, family: str | None) -> Family:
    """The family of a call that takes ``preset`` and/or the older ``family=`` keyword.

    Raises:
        InvalidInputError: neither given, an unknown name, or the two disagree.
    """
    if family is None:
        if preset is None:
            raise InvalidInputError("give a preset (or family=)")
        return preset.family
    named = as_family(family)
    if preset is not None and preset.family != named:
        raise InvalidInputError(
            f"family={family!r} disagrees with the preset {preset.name[:40]!r} "
            f"(family {preset.family!r}); drop family= or fix Preset.family"
        )
    return named


def get_preset(name: str | Preset) -> Preset:
    """Look up a preset by family name.

    Accepts ``"qwen-vl"``, ``"qwen2-vl"``, ``"qwen2.5-vl"``, ``"qwen3-vl"``
    (case-insensitive), their aliases and the ``model_type`` spellings (``"qwen"``,
    ``"qwen2_5_vl"``, ``"qwen3_vl_moe"``). A
    :class:`Preset` is returned unchanged.

    Raises:
        InvalidInputError: unknown name; the message lists the valid ones.
    """
    if isinstance(name, Preset):
        return name
    if not isinstance(name, str):
        raise InvalidInputError(f"preset name must be a str, got {type(name).__name__}")
    family = _lookup(name)
    if family is None:
        raise InvalidInputError(f"unknown preset {name[:40]!r}; valid: {_valid()}")
    return _PRESETS[family]


def family_of(preset: Preset) -> Family:
    """``preset.family`` (kept for callers written before it was a field)."""
    return preset.family


def _processor_family(processor: object) -> Family:
    """The family of a transformers processor, or ``"qwen-vl"`` for the first generation's
    tokenizer (``QWenTokenizer``, or any tokenizer with its ``IMAGE_ST`` tokens)."""
    for cls in type(processor).__mro__:
        for family, row in _TABLE.items():
            if cls.__name__.startswith(row.class_prefix):
                return family
    if hasattr(processor, "IMAGE_ST"):
        return "qwen-vl"
    raise InvalidInputError(
        f"{type(processor).__name__} is not a Qwen-VL processor (Qwen2VLProcessor, "
        "Qwen2_5_VLProcessor or Qwen3VLProcessor) nor a Qwen-VL tokenizer (QWenTokenizer) "
        "nor a checkpoint directory; pass preset= explicitly, a local checkpoint directory, "
        "or the checkpoint's processor loaded with AutoProcessor.from_pretrained"
    )


_KEYS = (
    "patch_size",
    "merge_size",
    "temporal_patch_size",
    "image_mean",
    "image_std",
    "size",
    "min_pixels",
    "max_pixels",
    "fps",
    "min_frames",
    "max_frames",
    "max_video_tokens",
)


def _attributes(processor: object) -> dict[str, Any] | None:
    """The settings :func:`_from_sections` reads, from an image or video processor object."""
    if processor is None:
        return None
    out: dict[str, Any] = {}
    for key in _KEYS:
        value = getattr(processor, key, None)
        if value is None:
            continue
        if key == "size" and not isinstance(value, Mapping):
            value = {edge: getattr(value, edge, None) for edge in ("shortest_edge", "longest_edge")}
        out[key] = value
    return out


def _bounds(section: Mapping[str, Any], where: str) -> tuple[int | None, int | None]:
    size = section.get("size")
    size = size if isinstance(size, Mapping) else {}
    low = section.get("min_pixels", size.get("shortest_edge"))
    high = section.get("max_pixels", size.get("longest_edge"))
    return _count(low, where, "size.shortest_edge"), _count(high, where, "size.longest_edge")


def _count(value: object, where: str, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"{where}: {key} must be a number, got {value!r}")
    return int(value)


def _from_sections(
    family: Family,
    image: Mapping[str, Any] | None,
    video: Mapping[str, Any] | None,
    image_where: str = "the image processor",
    video_where: str = "the video processor",
) -> Preset:
    base = _PRESETS[family]
    changes: dict[str, object] = {}
    image = image or {}
    sizes: dict[str, int] = {}
    for key in ("patch_size", "merge_size", "temporal_patch_size"):
        value = _count(image.get(key), image_where, key)
        sizes[key] = getattr(base, key) if value is None else value
        other = None if video is None else _count(video.get(key), video_where, key)
        if other is not None and other != sizes[key]:
            raise InvalidInputError(
                f"the image processor's {key} ({sizes[key]}) differs from the video "
                f"processor's ({other}); vlprep needs one value for both"
            )
    changes.update(sizes)
    for key in ("image_mean", "image_std"):
        value = image.get(key)
        if value is not None:
            values = value if isinstance(value, (list, tuple)) else [value] * 3
            try:
                changes[key] = tuple(float(v) for v in values)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"{image_where}: {key} must be numbers") from exc
    low, high = _bounds(image, image_where)
    if low is not None:
        changes["image_min_pixels"] = low
    if high is not None:
        changes["image_max_pixels"] = high
    factor = sizes["patch_size"] * sizes["merge_size"]
    # The family's video defaults, rescaled to the factor (qwen-vl-utils' token counts).
    changes["video_min_pixels"] = 128 * factor * factor
    changes["video_max_pixels"] = 768 * factor * factor
    changes["video_total_pixels"] = int(128000 * factor * factor * 0.9)
    if video is not None:
        changes.update(_video_changes(family, video, (low, high), sizes, video_where))
    return base.replace(**changes)


def _video_changes(
    family: Family,
    video: Mapping[str, Any],
    image_bounds: tuple[int | None, int | None],
    sizes: Mapping[str, int],
    where: str,
) -> dict[str, object]:
    changes: dict[str, object] = {}
    for key in ("min_frames", "max_frames"):
        value = _count(video.get(key), where, key)
        if value is not None:
            changes[key] = value
    fps = video.get("fps")
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)):
            raise InvalidInputError(f"{where}: fps must be a number, got {fps!r}")
        changes["fps"] = float(fps)
    low, high = _bounds(video, where)
    if (low, high) == image_bounds:
        low = high = None  # transformers' fallback to the image config: not video bounds
    factor = sizes["patch_size"] * sizes["merge_size"]
    tokens = _count(video.get("max_video_tokens"), where, "max_video_tokens")
    if low is not None:
        changes["video_min_pixels"] = low
    if family == "qwen3-vl":
        if high is not None:
            changes["video_total_pixels"] = high // sizes["temporal_patch_size"]
        if tokens is not None:
            changes["video_max_pixels"] = tokens * factor * factor
    else:
        if high is not None:
            changes["video_max_pixels"] = high
        if tokens is not None:
            changes["video_total_pixels"] = int(tokens * factor * factor * 0.9)
    return changes


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _section(data: dict[str, Any] | None, key: str, path: Path) -> dict[str, Any] | None:
    if data is None or key not in data:
        return None
    section = data[key]
    if not isinstance(section, dict):
        raise InvalidInputError(f"{path}: {key!r} must be a JSON object")
    return section


def _from_directory(directory: Path) -> Preset:
    if not directory.is_dir():
        raise InvalidInputError(
            f"{str(directory)[:120]!r} is not a local checkpoint directory; Preset.from_pretrained "
            "fetches nothing: download the checkpoint (huggingface-cli download ...) and pass "
            "its folder, or pass AutoProcessor.from_pretrained(...)'s processor"
        )
    processor_file = directory / "processor_config.json"
    image_file = directory / "preprocessor_config.json"
    video_file = directory / "video_preprocessor_config.json"
    config_file = directory / "config.json"
    nested = _read_json(processor_file)
    image_where, video_where = str(processor_file), str(processor_file)
    image = _section(nested, "image_processor", processor_file)
    if image is None:
        image, image_where = _read_json(image_file), str(image_file)
    video = _section(nested, "video_processor", processor_file)
    if video is None:
        video, video_where = _read_json(video_file), str(video_file)
    config = _read_json(config_file)
    family: Family | None = None
    if config is not None:
        model_type = config.get("model_type")
        family = FAMILY_BY_MODEL_TYPE.get(model_type) if isinstance(model_type, str) else None
        if family is None:
            raise InvalidInputError(
                f"{config_file}: model_type {model_type!r} is not a Qwen-VL model; known: "
                f"{sorted(FAMILY_BY_MODEL_TYPE)}"
            )
        if family == "qwen-vl":
            return _first_generation(config, config_file)
    else:
        for data, path in ((nested, processor_file), (image, image_where)):
            name = None if data is None else data.get("processor_class")
            if isinstance(name, str):
                family = _family_of_class(name, path)
                break
    if family is None:
        raise InvalidInputError(
            f"{directory}: no config.json with a model_type, nor a processor_class in "
            "processor_config.json / preprocessor_config.json; is this a saved Qwen-VL "
            "checkpoint or processor?"
        )
    if image is None:
        raise InvalidInputError(
            f"{directory}: no image processor settings (processor_config.json's "
            "'image_processor' or preprocessor_config.json)"
        )
    return _from_sections(family, image, video, image_where, video_where)


def _first_generation(config: dict[str, Any], where: Path) -> Preset:
    """:data:`QWEN_VL` with a Qwen-VL ``config.json``'s ``visual`` image and patch size."""
    visual = config.get("visual")
    if not isinstance(visual, dict):
        raise InvalidInputError(
            f"{where}: model_type 'qwen' without a 'visual' section is the text-only Qwen, "
            "not Qwen-VL"
        )
    side = _count(visual.get("image_size"), str(where), "visual.image_size")
    patch = _count(visual.get("patch_size"), str(where), "visual.patch_size")
    side = 448 if side is None else side  # visual.py's default
    patch = QWEN_VL.patch_size if patch is None else patch
    return QWEN_VL.replace(
        patch_size=patch,
        image_size=(side, side),
        image_min_pixels=side * side,
        image_max_pixels=side * side,
    )


def _family_of_class(name: str, where: Path | str) -> Family:
    for family, row in _TABLE.items():
        if name.startswith(row.class_prefix):
            return family
    raise InvalidInputError(
        f"{where}: processor_class {name[:60]!r} is not a Qwen-VL processor (Qwen2VLProcessor, "
        "Qwen2_5_VLProcessor or Qwen3VLProcessor)"
    )


def preset_from_processor(processor: object) -> Preset:
    """The preset :func:`vlprep.build_inputs` derives from a processor object.

    Image settings (patch, merge and temporal sizes, mean/std, image pixel bounds) come
    from the processor, as in :meth:`Preset.from_pretrained`. Video bounds and frame limits
    stay at qwen-vl-utils' defaults for the factor ``f`` (``128·f²`` .. ``768·f²`` per frame,
    clip budget ``128000·f²·0.9``, 2 fps, 4 .. 768 frames): that is how vlprep has always
    sampled and sized video for ``build_inputs(processor)``, so its token counts do not move
    with a checkpoint's video config. Pass ``preset=Preset.from_pretrained(...)`` to use the
    checkpoint's video settings as well.

    Raises:
        InvalidInputError: not a Qwen-VL processor, or inconsistent image/video settings.
    """
    if isinstance(processor, (str, os.PathLike)):
        raise InvalidInputError(
            "preset_from_processor takes a processor object; use Preset.from_pretrained for "
            "a checkpoint directory"
        )
    return with_qwen_vl_utils_video(Preset.from_pretrained(processor))


def with_qwen_vl_utils_video(preset: Preset) -> Preset:
    """``preset`` with qwen-vl-utils' default video bounds and frame limits for its factor
    ``f``: ``128·f²`` .. ``768·f²`` per frame, clip budget ``128000·f²·0.9``, 2 fps,
    4 .. 768 frames (the module constants of :mod:`vlprep._sampling`)."""
    from vlprep._sampling import (
        FPS,
        FPS_MAX_FRAMES,
        FPS_MIN_FRAMES,
        MODEL_SEQ_LEN,
        VIDEO_MAX_TOKEN_NUM,
        VIDEO_MIN_TOKEN_NUM,
    )

    area = preset.factor * preset.factor
    return preset.replace(
        video_min_pixels=VIDEO_MIN_TOKEN_NUM * area,
        video_max_pixels=VIDEO_MAX_TOKEN_NUM * area,
        video_total_pixels=int(MODEL_SEQ_LEN * area * 0.9),
        fps=FPS,
        min_frames=FPS_MIN_FRAMES,
        max_frames=FPS_MAX_FRAMES,
    )
