"""Resized RGB images -> ``pixel_values`` and ``image_grid_thw``, as transformers computes them.

One pass from uint8: the blocks are reordered while still uint8, then every value goes
through a 256-entry table per channel that holds exactly the float32 result of
transformers' PIL-backend rescale and normalise (``float32(v * (1/255))`` then
``(x - mean) / std`` in float32), so the output is bit-identical without float64 arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image

from vlprep.errors import InvalidInputError
from vlprep.presets import Preset

__all__ = [
    "ResizeMode",
    "normalization_table",
    "patchify_image",
    "patchify_images",
    "FrameResizer",
    "resize_frame",
]

ResizeMode = Literal["exact", "fast"]


def normalization_table(preset: Preset) -> np.ndarray:
    """``(3, 256)`` float32: the normalised value of each uint8 level per channel."""
    levels = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    mean = np.asarray(preset.image_mean, dtype=np.float32)[:, None]
    std = np.asarray(preset.image_std, dtype=np.float32)[:, None]
    return ((levels[None, :] - mean) / std).astype(np.float32)


def _as_rgb_array(image: Image.Image | np.ndarray, preset: Preset) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInputError(
            f"expected an RGB uint8 (H, W, 3) image, got {arr.dtype} {arr.shape}"
        )
    height, width = arr.shape[:2]
    if height % preset.factor or width % preset.factor:
        raise InvalidInputError(
            f"image size {height}x{width} is not a multiple of {preset.factor}; resize it first"
        )
    return arr


def _patchify_into(arr: np.ndarray, preset: Preset, table: np.ndarray, out: np.ndarray) -> None:
    """Write the patches of ``arr`` into ``out`` (``(gh * gw, 3 * T * P * P)`` float32)."""
    p, m, t = preset.patch_size, preset.merge_size, preset.temporal_patch_size
    gh, gw = arr.shape[0] // p, arr.shape[1] // p
    blocks = arr.reshape(gh // m, m, p, gw // m, m, p, 3).transpose(0, 3, 1, 4, 6, 2, 5)
    blocks = np.ascontiguousarray(blocks)  # (gh/m, gw/m, m, m, C, P, P) uint8
    view = out.reshape(gh // m, gw // m, m, m, 3, t, p, p)
    for c in range(3):
        view[:, :, :, :, c] = table[c][blocks[:, :, :, :, c]][:, :, :, :, None]


def patchify_image(
    image: Image.Image | np.ndarray, preset: Preset
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Patchify one resized image for ``preset``.

    Args:
        image: RGB ``PIL.Image`` or uint8 array ``(H, W, 3)``; H and W multiples of
            ``preset.factor`` (run :func:`vlprep.smart_resize` / :func:`vlprep.fetch_image` first).
        preset: patch, merge and temporal sizes, mean and std.

    Returns:
        ``(patches, (1, gh, gw))``: ``patches`` float32 ``(gh * gw, 3 * T * P * P)`` in the
        merge-blocked row order (rows of one ``m x m`` window adjacent), columns ordered
        ``(channel, t, dy, dx)``; the still image is repeated ``T = temporal_patch_size`` times.
    """
    pixel_values, grid = patchify_images([image], preset)
    gh, gw = int(grid[0, 1]), int(grid[0, 2])
    return pixel_values.numpy(), (1, gh, gw)


def patchify_images(
    images: Sequence[Image.Image | np.ndarray], preset: Preset
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patchify several images into one preallocated output, in order.

    Returns:
        ``pixel_values`` float32 ``(sum gh*gw, 3*T*P*P)`` and ``image_grid_thw`` int64
        ``(n_images, 3)`` rows ``[1, gh, gw]``, equal to transformers' Qwen2-VL image
        processor (PIL backend) called with ``do_resize=False``.
    """
    if not images:
        raise InvalidInputError("patchify_images needs at least one image")
    arrays = [_as_rgb_array(image, preset) for image in images]
    p = preset.patch_size
    grids = [(1, a.shape[0] // p, a.shape[1] // p) for a in arrays]
    rows = [gh * gw for _, gh, gw in grids]
    out = np.empty((sum(rows), 3 * preset.temporal_patch_size * p * p), dtype=np.float32)
    table = normalization_table(preset)
    start = 0
    for arr, n in zip(arrays, rows, strict=True):
        _patchify_into(arr, preset, table, out[start : start + n])
        start += n
    return torch.from_numpy(out), torch.tensor(grids, dtype=torch.int64)


class FrameResizer:
    """Resize video frames to one size into a caller's float32 output, reusing buffers.

    ``"exact"`` = torchvision's float bicubic with antialias, rounded and clamped (what
    qwen-vl-utils' ``transforms.functional.resize`` does to uint8 video), written as float32
    integers 0..255: bit-identical to qwen-vl-utils' ``.float()`` output. ``"fast"`` = torch's
    uint8 antialiased bicubic kernel (rounds between its passes: mean < 0.2 levels, a few
    levels at clipped edges). Buffers are reused across frames: fresh allocations of
    frame-sized tensors cost page faults that dominated the resize time here.
    """

    def __init__(self, height: int, width: int, mode: ResizeMode = "exact") -> None:
        if mode not in ("exact", "fast"):
            raise InvalidInputError(f"resize mode must be 'exact' or 'fast', got {mode!r}")
        self.height, self.width, self.mode = height, width, mode
        self._scratch: torch.Tensor | None = None

    def __call__(self, frame: np.ndarray, out: torch.Tensor) -> None:
        """Resize uint8 ``(H, W, 3)`` ``frame`` into float32 ``out`` of shape ``(3, h, w)``."""
        if not frame.flags.writeable or not frame.flags.c_contiguous:
            frame = np.array(frame)  # torch.from_numpy warns on read-only arrays (e.g. from PIL)
        chw = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0)
        size = (self.height, self.width)
        if self.mode == "fast":
            resized = torch.nn.functional.interpolate(
                chw, size=size, mode="bicubic", antialias=True, align_corners=False
            )
            out.copy_(resized[0])
            return
        if self._scratch is None or self._scratch.shape != chw.shape:
            self._scratch = torch.empty(chw.shape, dtype=torch.float32)
        self._scratch.copy_(chw)
        resized = torch.nn.functional.interpolate(
            self._scratch, size=size, mode="bicubic", antialias=True, align_corners=False
        )
        torch.round(resized[0], out=out)
        out.clamp_(0, 255)


def resize_frame(
    frame: np.ndarray, height: int, width: int, mode: ResizeMode = "exact"
) -> torch.Tensor:
    """Resize one video frame the way qwen-vl-utils resizes videos (see :class:`FrameResizer`).

    Args:
        frame: uint8 ``(H, W, 3)`` RGB.
        height, width: target size.
        mode: ``"exact"`` or ``"fast"``.

    Returns:
        uint8 tensor ``(3, height, width)``.
    """
    out = torch.empty((3, height, width), dtype=torch.float32)
    FrameResizer(height, width, mode)(frame, out)
    return out.to(torch.uint8)
