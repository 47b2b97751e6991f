"""Model-family presets: the numbers that decide sizes, token counts and normalisation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vlprep.errors import InvalidInputError

__all__ = [
    "QWEN2_5_VL",
    "QWEN2_VL",
    "QWEN3_VL",
    "Preset",
    "family_of",
    "get_preset",
    "preset_from_processor",
]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True, slots=True)
class Preset:
    """Vision constants of one Qwen-VL family.

    Pixel bounds are areas in pixels (not edge lengths). Video bounds are per frame;
    ``video_total_pixels`` is the budget for a whole clip (qwen-vl-utils' default is
    ``128000 * factor**2 * 0.9``). Override a field with :func:`dataclasses.replace`.
    """

    name: str
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

    def __post_init__(self) -> None:
        for field in (
            "patch_size",
            "merge_size",
            "temporal_patch_size",
            "min_frames",
            "max_frames",
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"Preset.{field} must be a positive int, got {value!r}")
        for low, high in (
            ("image_min_pixels", "image_max_pixels"),
            ("video_min_pixels", "video_max_pixels"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo <= 0 or hi < lo:
                raise InvalidInputError(
                    f"Preset.{low} ({lo}) must be > 0 and <= Preset.{high} ({hi})"
                )
        if self.min_frames > self.max_frames:
            raise InvalidInputError(
                f"Preset.min_frames ({self.min_frames}) must be <= max_frames ({self.max_frames})"
            )
        if not self.fps > 0:
            raise InvalidInputError(f"Preset.fps must be > 0, got {self.fps!r}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise InvalidInputError("Preset.image_mean/image_std need 3 values, std > 0")

    @property
    def factor(self) -> int:
        """Side granularity of resized images: ``patch_size * merge_size`` (28 or 32)."""
        return self.patch_size * self.merge_size

    def replace(self, **changes: object) -> Preset:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


QWEN2_VL = Preset(name="qwen2-vl", patch_size=14)
"""Qwen2-VL: patch 14 (factor 28), hub pixel bounds 3136 .. 12,845,056, CLIP mean/std."""

QWEN2_5_VL = Preset(name="qwen2.5-vl", patch_size=14)
"""Qwen2.5-VL: same vision constants as Qwen2-VL."""

QWEN3_VL = Preset(
    name="qwen3-vl",
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

_ALIASES: dict[str, Preset] = {
    "qwen2-vl": QWEN2_VL,
    "qwen2vl": QWEN2_VL,
    "qwen2_vl": QWEN2_VL,
    "qwen2.5-vl": QWEN2_5_VL,
    "qwen2_5_vl": QWEN2_5_VL,
    "qwen2.5vl": QWEN2_5_VL,
    "qwen2-5-vl": QWEN2_5_VL,
    "qwen3-vl": QWEN3_VL,
    "qwen3_vl": QWEN3_VL,
    "qwen3vl": QWEN3_VL,
    "qwen3_vl_moe": QWEN3_VL,
    "qwen3-vl-moe": QWEN3_VL,
}


def get_preset(name: str | Preset) -> Preset:
    """Look up a preset by family name.

    Accepts ``"qwen2-vl"``, ``"qwen2.5-vl"``, ``"qwen3-vl"`` (case-insensitive) and the
    transformers ``model_type`` spellings (``"qwen2_5_vl"``, ``"qwen3_vl_moe"``). A
    :class:`Preset` is returned unchanged.

    Raises:
        InvalidInputError: unknown name; the message lists the valid ones.
    """
    if isinstance(name, Preset):
        return name
    if not isinstance(name, str):
        raise InvalidInputError(f"preset name must be a str, got {type(name).__name__}")
    preset = _ALIASES.get(name.strip().lower())
    if preset is None:
        raise InvalidInputError(
            f"unknown preset {name[:40]!r}; valid: 'qwen2-vl', 'qwen2.5-vl', 'qwen3-vl'"
        )
    return preset


_PROCESSOR_FAMILIES = (
    ("Qwen3VL", "qwen3-vl"),
    ("Qwen2_5_VL", "qwen2.5-vl"),
    ("Qwen2VL", "qwen2-vl"),
)


def family_of(preset: Preset) -> str:
    """``"qwen2-vl"``, ``"qwen2.5-vl"`` or ``"qwen3-vl"``: the family a preset belongs to.

    Read from ``preset.name`` (any alias :func:`get_preset` knows, or a name that starts
    with one); a custom name falls back to the patch size (16 -> Qwen3-VL, else Qwen2-VL).
    """
    try:
        return get_preset(preset.name).name
    except InvalidInputError:
        pass
    for alias, known in sorted(_ALIASES.items(), key=lambda kv: -len(kv[0])):
        if preset.name.lower().startswith(alias):
            return known.name
    return QWEN3_VL.name if preset.patch_size == 16 else QWEN2_VL.name


def _processor_family(processor: object) -> str:
    for cls in type(processor).__mro__:
        for marker, family in _PROCESSOR_FAMILIES:
            if cls.__name__.startswith(marker):
                return family
    raise InvalidInputError(
        f"{type(processor).__name__} is not a Qwen-VL processor (Qwen2VLProcessor, "
        "Qwen2_5_VLProcessor or Qwen3VLProcessor); pass preset= explicitly or load the "
        "checkpoint's processor with AutoProcessor.from_pretrained"
    )


def _size_bounds(image_processor: object) -> tuple[int | None, int | None]:
    low = getattr(image_processor, "min_pixels", None)
    high = getattr(image_processor, "max_pixels", None)
    size = getattr(image_processor, "size", None)
    if size is not None:
        if low is None:
            low = (
                size.get("shortest_edge")
                if isinstance(size, dict)
                else getattr(size, "shortest_edge", None)
            )
        if high is None:
            high = (
                size.get("longest_edge")
                if isinstance(size, dict)
                else getattr(size, "longest_edge", None)
            )
    return (int(low) if low else None), (int(high) if high else None)


def preset_from_processor(processor: object) -> Preset:
    """The :class:`Preset` a transformers Qwen-VL processor is configured with.

    The family comes from the processor class; patch, merge and temporal sizes, mean, std
    and the image pixel bounds (``size["shortest_edge"/"longest_edge"]``, or legacy
    ``min_pixels``/``max_pixels``) from its image processor. Video bounds keep
    qwen-vl-utils' per-frame defaults for the factor (``128·f²`` .. ``768·f²``, clip budget
    ``128000·f²·0.9``), which is how vlprep samples and sizes videos.

    Raises:
        InvalidInputError: not a Qwen-VL processor, or inconsistent image/video settings.
    """
    family = _processor_family(processor)
    base = get_preset(family)
    image = getattr(processor, "image_processor", None)
    if image is None:
        return base
    changes: dict[str, object] = {}
    sizes = {
        field: int(getattr(image, field, None) or getattr(base, field))
        for field in ("patch_size", "merge_size", "temporal_patch_size")
    }
    changes.update(sizes)
    for field in ("image_mean", "image_std"):
        value = getattr(image, field, None)
        if value is not None:
            values = value if isinstance(value, (list, tuple)) else [value] * 3
            changes[field] = tuple(float(v) for v in values)
    low, high = _size_bounds(image)
    if low is not None:
        changes["image_min_pixels"] = low
    if high is not None:
        changes["image_max_pixels"] = high
    video = getattr(processor, "video_processor", None)
    for field, value in sizes.items():
        other = getattr(video, field, None)
        if other is not None and int(other) != value:
            raise InvalidInputError(
                f"the image processor's {field} ({value}) differs from the video "
                f"processor's ({other}); vlprep needs one value for both"
            )
    factor = sizes["patch_size"] * sizes["merge_size"]
    changes["video_min_pixels"] = 128 * factor * factor
    changes["video_max_pixels"] = 768 * factor * factor
    changes["video_total_pixels"] = int(128000 * factor * factor * 0.9)
    return base.replace(**changes)
