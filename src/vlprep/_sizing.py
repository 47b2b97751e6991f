"""Pure size arithmetic: factor rounding, ``smart_resize`` and token counts.

No I/O, no torch. Numerically identical to qwen-vl-utils 0.0.14 wherever that returns a
valid size; deviations: no side below ``factor`` (the release can return 0) and typed
errors instead of ``assert`` / ``ZeroDivisionError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vlprep._errors import InvalidInputError, ResourceLimitError
from vlprep._numbers import is_finite_number, shown

if TYPE_CHECKING:
    from vlprep._specs import ImageSpec, VideoSpec

__all__ = [
    "IMAGE_MAX_TOKEN_NUM",
    "IMAGE_MIN_TOKEN_NUM",
    "MAX_RATIO",
    "SPATIAL_MERGE_SIZE",
    "TokenEstimate",
    "MAX_PATCH_SIZE",
    "ceil_by_factor",
    "check_output_keys",
    "check_patch_size",
    "check_output_size",
    "count_tokens",
    "estimate_image",
    "estimate_video",
    "floor_by_factor",
    "image_pixel_bounds",
    "round_by_factor",
    "smart_resize",
    "tokens_for_size",
]

MAX_RATIO = 200
MAX_PATCH_SIZE = 1024
"""Largest ``image_patch_size`` the loaders accept (Qwen-VL uses 14 and 16). Already at 1024
the smallest image is 4·2048² pixels; far above it the default bounds leave the float
range (``OverflowError``), so the argument is refused where it is read."""
SPATIAL_MERGE_SIZE = 2
IMAGE_MIN_TOKEN_NUM = 4
IMAGE_MAX_TOKEN_NUM = 16384


def round_by_factor(number: float, factor: int) -> int:
    """Closest multiple of ``factor`` (Python ``round``: ties go to the even multiple)."""
    return round(number / factor) * factor


def ceil_by_factor(number: float, factor: int) -> int:
    """Smallest multiple of ``factor`` that is >= ``number``."""
    return math.ceil(number / factor) * factor


def floor_by_factor(number: float, factor: int) -> int:
    """Largest multiple of ``factor`` that is <= ``number``."""
    return math.floor(number / factor) * factor


def image_pixel_bounds(factor: int) -> tuple[int, int]:
    """qwen-vl-utils' default image bounds for ``factor``: ``(4·f², 16384·f²)``."""
    return IMAGE_MIN_TOKEN_NUM * factor * factor, IMAGE_MAX_TOKEN_NUM * factor * factor


def check_patch_size(value: object) -> int:
    """``value`` as an ``image_patch_size``: an int in ``[1, MAX_PATCH_SIZE]``.

    Raises:
        InvalidInputError: anything else (bools, floats, strings, 0, 10**200).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PATCH_SIZE:
        raise InvalidInputError(
            f"image_patch_size must be an int in [1, {MAX_PATCH_SIZE}] (14 for Qwen2/2.5-VL, "
            f"16 for Qwen3-VL), got {shown(value)}"
        )
    return value


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number, got {type(value).__name__}")
    if not is_finite_number(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a finite number > 0, got {shown(value)}")
    return value


def smart_resize(
    height: float,
    width: float,
    factor: int = 28,
    min_pixels: float | None = None,
    max_pixels: float | None = None,
) -> tuple[int, int]:
    """Size an image so both sides are multiples of ``factor`` within a pixel budget.

    Args:
        height: source height in pixels (> 0).
        width: source width in pixels (> 0).
        factor: side granularity, ``patch_size * 2`` (28 for Qwen2/2.5-VL, 32 for Qwen3-VL).
        min_pixels: lower area bound; default ``4 * factor**2``.
        max_pixels: upper area bound; default ``16384 * factor**2``.

    Returns:
        ``(height, width)``, each a multiple of ``factor`` and at least ``factor``. As in
        qwen-vl-utils the area can land slightly outside ``[min_pixels, max_pixels]``
        (rounding to the grid); it is never a zero side.

    Raises:
        InvalidInputError: non-positive sizes or bounds, ``min_pixels > max_pixels``, or an
            aspect ratio above 200.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise InvalidInputError(f"factor must be a positive int, got {factor!r}")
    h = _check_positive("height", height)
    w = _check_positive("width", width)
    default_min, default_max = image_pixel_bounds(factor)
    lo = default_min if min_pixels is None else _check_positive("min_pixels", min_pixels)
    hi = default_max if max_pixels is None else _check_positive("max_pixels", max_pixels)
    if lo > hi:
        raise InvalidInputError(
            f"min_pixels ({lo}) must be <= max_pixels ({hi}); lower min_pixels or raise max_pixels"
        )
    ratio = max(h, w) / min(h, w)
    if ratio > MAX_RATIO:
        raise InvalidInputError(
            f"aspect ratio {ratio:g} of a {height}x{width} (h x w) image exceeds the limit of "
            f"{MAX_RATIO}; crop or pad the image first"
        )
    h_bar = max(factor, round_by_factor(h, factor))
    w_bar = max(factor, round_by_factor(w, factor))
    if h_bar * w_bar > hi:
        beta = math.sqrt((h * w) / hi)
        # Deviation: qwen-vl-utils 0.0.14 has no max() here and can return a 0 side.
        h_bar = max(factor, floor_by_factor(h / beta, factor))
        w_bar = max(factor, floor_by_factor(w / beta, factor))
    elif h_bar * w_bar < lo:
        beta = math.sqrt(lo / (h * w))
        h_bar = ceil_by_factor(h * beta, factor)
        w_bar = ceil_by_factor(w * beta, factor)
    return h_bar, w_bar


def tokens_for_size(height: int, width: int, factor: int) -> int:
    """Visual tokens of one resized image (or one temporal pair of video frames).

    ``(height / factor) * (width / factor)``: patches of ``factor/2`` merged 2x2.
    """
    if height % factor or width % factor:
        raise InvalidInputError(
            f"size {height}x{width} is not a multiple of factor {factor}; run smart_resize first"
        )
    return (height // factor) * (width // factor)


def count_tokens(grid_thw: tuple[int, int, int], merge_size: int = SPATIAL_MERGE_SIZE) -> int:
    """Placeholder tokens of one image or video with patch grid ``(t, gh, gw)``.

    ``t * gh * gw // merge_size**2``: what the processors expand ``<|image_pad|>`` /
    ``<|video_pad|>`` to (Qwen3-VL videos add a timestamp and a vision start/end pair per
    temporal step around these, see :func:`vlprep._inputs.build_inputs`).
    """
    t, gh, gw = grid_thw
    if min(t, gh, gw) < 1 or gh % merge_size or gw % merge_size:
        raise InvalidInputError(
            f"grid {grid_thw} is not a valid patch grid for merge size {merge_size}"
        )
    return t * gh * gw // (merge_size * merge_size)


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    """Size and token count of one image or video, computed without pixels.

    Attributes:
        height / width: the resized size (per frame for videos), multiples of the factor.
        grid: ``(t, gh, gw)`` patch grid; ``t`` is 1 for images, ``ceil(frames / T)`` for
            videos, as in ``image_grid_thw`` / ``video_grid_thw``.
        tokens: placeholder tokens, :func:`count_tokens` of ``grid``.
    """

    height: int
    width: int
    grid: tuple[int, int, int]
    tokens: int


def estimate_image(
    height: int,
    width: int,
    *,
    patch_size: int = 14,
    merge_size: int = SPATIAL_MERGE_SIZE,
    min_pixels: float | None = None,
    max_pixels: float | None = None,
) -> TokenEstimate:
    """Resized size, grid and tokens of a ``height x width`` (h x w) image.

    Bounds default to qwen-vl-utils' ``4·f²`` .. ``16384·f²`` for ``f = patch_size *
    merge_size``; pass a preset's bounds to match a processor configuration.

    Raises:
        InvalidInputError: see :func:`smart_resize`.
    """
    factor = patch_size * merge_size
    default_min, default_max = image_pixel_bounds(factor)
    h, w = smart_resize(
        height,
        width,
        factor=factor,
        min_pixels=default_min if min_pixels is None else min_pixels,
        max_pixels=default_max if max_pixels is None else max_pixels,
    )
    grid = (1, h // patch_size, w // patch_size)
    return TokenEstimate(h, w, grid, count_tokens(grid, merge_size))


def estimate_video(
    nframes: int,
    height: int,
    width: int,
    *,
    patch_size: int = 14,
    merge_size: int = SPATIAL_MERGE_SIZE,
    temporal_patch_size: int = 2,
) -> TokenEstimate:
    """Grid and tokens of ``nframes`` frames already sized to ``height x width``.

    The frame count is padded to a multiple of ``temporal_patch_size`` (the processors
    repeat the last frame). Use :func:`vlprep._sampling.video_frame_pixels` and
    :func:`smart_resize` for the frame size, :func:`vlprep._sampling.smart_nframes` for
    ``nframes``.

    Raises:
        InvalidInputError: ``nframes < 1`` or a size off the ``patch_size * merge_size`` grid.
    """
    if isinstance(nframes, bool) or not isinstance(nframes, int) or nframes < 1:
        raise InvalidInputError(f"nframes must be an int >= 1, got {nframes!r}")
    factor = patch_size * merge_size
    if height % factor or width % factor or height < 1 or width < 1:
        raise InvalidInputError(
            f"frame size {height}x{width} is not a multiple of {factor}; run smart_resize first"
        )
    t = -(-nframes // temporal_patch_size)
    grid = (t, height // patch_size, width // patch_size)
    return TokenEstimate(height, width, grid, count_tokens(grid, merge_size))


def check_output_keys(spec: ImageSpec | VideoSpec, limit: int, what: str, setting: str) -> None:
    """Refuse element keys that alone ask for more than ``limit`` output pixels.

    Raises:
        ResourceLimitError: ``min_pixels`` or ``resized_height * resized_width`` above it.
    """
    if spec.min_pixels is not None and spec.min_pixels > limit:
        raise ResourceLimitError(
            f"'min_pixels': {spec.min_pixels:.4g} asks for a {what} above the limit of "
            f"{limit:,} output pixels ({setting}); lower it or raise the limit"
        )
    if spec.resized_height is not None and spec.resized_width is not None:
        area = spec.resized_height * spec.resized_width
        if area > limit:
            raise ResourceLimitError(
                f"'resized_height' x 'resized_width' ({spec.resized_height:.4g} x "
                f"{spec.resized_width:.4g}) asks for a {what} above the limit of {limit:,} "
                f"output pixels ({setting}); lower them or raise the limit"
            )


def check_output_size(
    size: tuple[int, int], limit: int, what: str, setting: str
) -> tuple[int, int]:
    """``size`` (``(height, width)``) when its area is within ``limit``.

    Raises:
        ResourceLimitError: above it, naming ``setting``.
    """
    if size[0] * size[1] > limit:
        raise ResourceLimitError(
            f"the {what} would be resized to {size[0]}x{size[1]} = {size[0] * size[1]:,} "
            f"pixels, above the limit of {limit:,} ({setting}); lower max_pixels / "
            "resized_height / resized_width or raise the limit"
        )
    return size
