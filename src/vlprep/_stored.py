"""How processed media are held in a :class:`vlprep.MediaCache`: private copies and rebuilds.

``pack_*`` turns a loader's result into what the cache stores (sharing no mutable state with
the result) and its size in bytes; ``unpack_*`` rebuilds a fresh result for each hit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from PIL import Image

__all__ = [
    "StoredImage",
    "StoredVideo",
    "integer_levels",
    "pack_image",
    "pack_video",
    "unpack_image",
    "unpack_video",
]


@dataclass(frozen=True, slots=True)
class StoredImage:
    """A resized image in the cache: immutable pixel bytes plus a private ``info`` copy."""

    mode: str
    size: tuple[int, int]
    data: bytes
    info: dict[Any, Any]


def pack_image(image: Image.Image) -> tuple[object, int]:
    """A resized RGB image -> ``(StoredImage, bytes held)`` (pixels plus bytes in ``info``)."""
    info = copy.deepcopy(image.info)
    data = image.tobytes()
    extra = sum(len(v) for v in info.values() if isinstance(v, (bytes, str)))
    return StoredImage(image.mode, image.size, data, info), len(data) + extra


def unpack_image(stored: object) -> Image.Image:
    """A new ``PIL.Image`` (same mode, size, pixels and ``info``) from a :class:`StoredImage`."""
    entry = cast(StoredImage, stored)
    image = Image.frombytes(entry.mode, entry.size, entry.data)
    image.info = copy.deepcopy(entry.info)
    return image


@dataclass(frozen=True, slots=True)
class StoredVideo:
    """Frames in the cache: uint8 levels plus where the float32 frames hold ``-0.0``.

    The exact resize rounds and clamps, so a level just below zero becomes ``-0.0`` (2-4%
    of the values of the test clips); ``signs`` records them as int32 flat indices or, when
    smaller, a packed bit mask, so the float32 rebuilt on a hit is bit-identical.
    ``frames`` is the float32 tensor itself when it holds anything but integer levels.
    """

    frames: torch.Tensor
    signs: np.ndarray | None
    packed_signs: bool
    metadata: dict[str, Any]
    sample_fps: float


def integer_levels(video: torch.Tensor) -> torch.Tensor | None:
    """``video`` as uint8 when every value is an integer 0..255 (checked frame by frame)."""
    levels = video.to(torch.uint8)
    for frame, level in zip(video, levels, strict=True):
        if not torch.equal(level.to(torch.float32), frame):
            return None
    return levels


def pack_video(result: tuple[torch.Tensor, dict[str, Any], float]) -> tuple[object, int]:
    """``(float32 (T, 3, H, W) frames, metadata, sample fps)`` -> ``(StoredVideo, bytes held)``.

    Integer-level frames are held as uint8 plus their ``-0.0`` positions (int32 indices or,
    above one in 32 values, a bit mask); anything else as a float32 clone.
    """
    video, metadata, sample_fps = result
    metadata = copy.deepcopy(metadata)
    # frames_indices and, where known, the frames' presentation times: 8 bytes a value
    extra = 64 + sum(8 * len(v) for v in metadata.values() if isinstance(v, (list, tuple)))
    levels = integer_levels(video)
    if levels is None:
        frames = video.clone()
        return StoredVideo(frames, None, False, metadata, sample_fps), frames.nbytes + extra
    mask = torch.signbit(video).flatten().numpy()
    count = int(np.count_nonzero(mask))
    packed = count * 4 > mask.size // 8 or mask.size >= 1 << 31
    signs = np.packbits(mask) if packed else np.flatnonzero(mask).astype(np.int32)
    stored = StoredVideo(levels, signs, packed, metadata, sample_fps)
    return stored, levels.nbytes + signs.nbytes + extra


def unpack_video(stored: object) -> tuple[torch.Tensor, dict[str, Any], float]:
    """New float32 frames, bit-identical to the packed ones, and a deep copy of the metadata."""
    entry = cast(StoredVideo, stored)
    if entry.signs is None:
        video = entry.frames.clone()
    else:
        video = entry.frames.to(torch.float32)
        flat = video.view(-1)
        if entry.packed_signs:
            mask = np.unpackbits(entry.signs, count=flat.numel()).view(np.bool_)
            flat.masked_fill_(torch.from_numpy(mask), -0.0)
        elif entry.signs.size:
            flat.index_fill_(0, torch.from_numpy(entry.signs.astype(np.int64)), -0.0)
    return video, copy.deepcopy(entry.metadata), entry.sample_fps
