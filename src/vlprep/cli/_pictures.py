"""``--draw``: pictures of what the model sees. The one place ``vlprep-inspect`` decodes pixels.

Images: the resized image (exactly what the loader returns) with the patch grid (a thin
line every ``patch_size`` pixels) and the merged-token blocks (a thicker line every
``patch_size * merge_size`` pixels) drawn over it. Videos: a contact sheet of the sampled
frames, as resized by the loader, each labelled with its frame index and timestamp.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from vlprep._estimates import MediaEstimate
from vlprep._image import fetch_image_for
from vlprep._presets import Preset
from vlprep._sources import FetchPolicy
from vlprep._video import load_clip

__all__ = [
    "BLOCK_COLOR",
    "PATCH_COLOR",
    "SHEET_COLUMNS",
    "SHEET_LABEL",
    "THUMB_SIDE",
    "draw",
    "picture_name",
]

PATCH_COLOR = (0, 255, 255)
"""Patch grid lines (1 px at every multiple of ``patch_size``)."""
BLOCK_COLOR = (255, 0, 255)
"""Merged-token block lines (2 px: the pixel rows/columns on each side of every multiple
of ``patch_size * merge_size``)."""
SHEET_COLUMNS = 6
THUMB_SIDE = 192
SHEET_LABEL = 16
_SHEET_BACKGROUND = (32, 32, 32)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def picture_name(index: int, label: str) -> str:
    """``0007-name.png``: the item's index and a filesystem-safe stem of its label."""
    stem = label.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = _UNSAFE.sub("_", stem).strip("._")[:60] or "item"
    return f"{index:04d}-{stem}.png"


def grid_image(image: Image.Image, preset: Preset) -> Image.Image:
    """``image`` (sides multiples of ``preset.factor``) with the patch and block lines."""
    out = image.convert("RGB").copy()
    pen = ImageDraw.Draw(out)
    width, height = out.size
    patch, factor = preset.patch_size, preset.factor
    for x in range(patch, width, patch):
        pen.line([(x, 0), (x, height - 1)], fill=PATCH_COLOR, width=1)
    for y in range(patch, height, patch):
        pen.line([(0, y), (width - 1, y)], fill=PATCH_COLOR, width=1)
    for x in range(factor, width, factor):
        pen.rectangle([(x - 1, 0), (x, height - 1)], fill=BLOCK_COLOR)
    for y in range(factor, height, factor):
        pen.rectangle([(0, y - 1), (width - 1, y)], fill=BLOCK_COLOR)
    return out


def contact_sheet(frames: Any, estimate: MediaEstimate) -> Image.Image:
    """A grid of the sampled frames (float32 ``(T, 3, H, W)``, 0..255), labelled.

    Each cell is a frame scaled to fit ``THUMB_SIDE`` (never enlarged) above a
    ``SHEET_LABEL``-pixel strip with ``#index  seconds``.
    """
    count, _, height, width = frames.shape
    scale = min(1.0, THUMB_SIDE / max(height, width))
    tw, th = max(1, round(width * scale)), max(1, round(height * scale))
    columns = min(SHEET_COLUMNS, count)
    rows = math.ceil(count / columns)
    cell_h = th + SHEET_LABEL
    sheet = Image.new("RGB", (columns * tw, rows * cell_h), _SHEET_BACKGROUND)
    pen = ImageDraw.Draw(sheet)
    pixels = frames.clamp(0, 255).round().to(dtype=torch.uint8)
    for k in range(count):
        frame = Image.fromarray(pixels[k].permute(1, 2, 0).contiguous().numpy())
        if (tw, th) != frame.size:
            frame = frame.resize((tw, th), Image.Resampling.BILINEAR)
        x, y = (k % columns) * tw, (k // columns) * cell_h
        sheet.paste(frame, (x, y))
        index = estimate.frame_indices[k] if k < len(estimate.frame_indices) else k
        seconds = estimate.timestamps[k] if k < len(estimate.timestamps) else 0.0
        pen.text((x + 3, y + th + 2), f"#{index}  {seconds:.2f}s", fill=(255, 255, 255))
    return sheet


def draw(
    element: Mapping[str, Any],
    estimate: MediaEstimate,
    preset: Preset,
    path: Path,
    policy: FetchPolicy | None = None,
) -> Path:
    """Decode ``element`` as the loader does and write its picture to ``path`` (PNG).

    Raises:
        VlprepError: from loading the media (e.g. a file truncated after its header).
        OSError: the picture cannot be written.
    """
    if estimate.kind == "image":
        picture = grid_image(fetch_image_for(element, preset, policy=policy), preset)
    else:
        # load_clip, not the drop-in: like the estimate, no environment variable is read
        frames = load_clip(element, preset.patch_size, preset=preset, policy=policy)[0]
        picture = contact_sheet(frames, estimate)
    picture.save(path, format="PNG")
    return path
