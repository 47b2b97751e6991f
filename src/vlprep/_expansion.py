"""Placeholder expansion in token-id space, padding, token types and Qwen3-VL timestamps.

Pure functions over token ids (numpy and torch only). The chat template leaves one
``<|image_pad|>`` per image and one ``<|video_pad|>`` per video; the processors repeat each
to the item's token count before tokenising. Tokenising the short text and repeating the id
afterwards gives the same ids (special tokens are atomic in the tokenizer), without building
and re-scanning strings of thousands of placeholders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from vlprep._errors import InvalidInputError

__all__ = [
    "PTS_TOLERANCE",
    "SpecialTokens",
    "expand_placeholders",
    "mm_token_type_ids",
    "pad_batch",
    "qwen3_video_text",
    "video_timestamps",
]


@dataclass(frozen=True, slots=True)
class SpecialTokens:
    """The placeholder tokens and ids of one tokenizer."""

    image: str = "<|image_pad|>"
    video: str = "<|video_pad|>"
    vision_start: str = "<|vision_start|>"
    vision_end: str = "<|vision_end|>"
    image_id: int = 151655
    video_id: int = 151656
    pad_id: int = 151643

    @classmethod
    def from_processor(cls, processor: Any) -> SpecialTokens:
        """Read the tokens from a transformers processor and their ids from its tokenizer.

        Raises:
            InvalidInputError: the tokenizer lacks a placeholder token or a pad token.
        """
        tokenizer = processor.tokenizer
        default = cls()
        names = {
            key: getattr(processor, f"{key}_token", None) or getattr(default, key)
            for key in ("image", "video", "vision_start", "vision_end")
        }
        ids = {}
        for key in ("image", "video", "vision_start", "vision_end"):
            token_id = tokenizer.convert_tokens_to_ids(names[key])
            if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
                raise InvalidInputError(
                    f"the tokenizer has no {names[key]!r} token; is this a Qwen-VL tokenizer?"
                )
            ids[key] = token_id
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        if not isinstance(pad_id, int):
            raise InvalidInputError("the tokenizer has no pad token; set tokenizer.pad_token")
        return cls(
            image=names["image"],
            video=names["video"],
            vision_start=names["vision_start"],
            vision_end=names["vision_end"],
            image_id=ids["image"],
            video_id=ids["video"],
            pad_id=pad_id,
        )


PTS_TOLERANCE = 1e-3
"""Seconds by which sampled frames' presentation times may differ from ``index / fps`` and
still be written as ``index / fps`` (:func:`video_timestamps`): timestamp rounding (Matroska
stores milliseconds) on a constant-rate stream, far below the text's 0.1 s."""


def video_timestamps(
    frames_indices: Sequence[int],
    fps: float,
    temporal_patch_size: int = 2,
    *,
    frame_seconds: Sequence[float] | None = None,
) -> list[float]:
    """Seconds at the middle of each temporal patch, as Qwen3-VL's processor computes them.

    The indices are padded to a multiple of ``temporal_patch_size`` with the last one;
    each patch's time is the mean of its first and last frame's time. Without
    ``frame_seconds`` a frame's time is ``index / fps`` (what the processor computes from
    the same metadata). With ``frame_seconds`` (the presentation time of each sampled
    frame, seconds from the stream's first frame) those times are used, unless every one
    is within :data:`PTS_TOLERANCE` of ``index / fps`` (a constant-rate stream): then
    ``index / fps`` is kept, so the text equals the processor's bit for bit.

    Args:
        frames_indices: absolute indices of the sampled frames, ``T`` ints.
        fps: the stream's average frame rate.
        temporal_patch_size: frames per temporal patch (2).
        frame_seconds: ``T`` finite floats, or ``None`` when the times are unknown.

    Returns:
        ``ceil(T / temporal_patch_size)`` floats.

    Raises:
        InvalidInputError: no indices, ``fps <= 0``, or ``frame_seconds`` not ``T`` finite
            numbers.
    """
    if not frames_indices:
        raise InvalidInputError("timestamps need the sampled frame indices")
    if not fps > 0:
        raise InvalidInputError(f"timestamps need the video's native fps > 0, got {fps!r}")
    indices = [int(i) for i in frames_indices]
    seconds = [i / fps for i in indices]
    if frame_seconds is not None:
        times = [float(t) for t in frame_seconds]
        if len(times) != len(indices) or not all(math.isfinite(t) for t in times):
            raise InvalidInputError(
                f"frame_seconds must hold one finite time per sampled frame ({len(indices)}), "
                f"got {len(times)} values"
            )
        if any(abs(t - s) > PTS_TOLERANCE for t, s in zip(times, seconds, strict=True)):
            seconds = times
    while len(seconds) % temporal_patch_size:
        seconds.append(seconds[-1])
    step = temporal_patch_size
    return [(seconds[i] + seconds[i + step - 1]) / 2 for i in range(0, len(seconds), step)]


def qwen3_video_text(timestamps: Sequence[float], tokens: SpecialTokens) -> str:
    """Per temporal patch: ``<t seconds>`` + vision start + one video pad + vision end.

    ``t`` is formatted with one decimal (``f"{t:.1f}"``); each pad is later repeated to the
    patch's token count by :func:`expand_placeholders`.
    """
    block = tokens.vision_start + tokens.video + tokens.vision_end
    return "".join(f"<{t:.1f} seconds>{block}" for t in timestamps)


def expand_placeholders(
    sequences: Sequence[Sequence[int]],
    tokens: SpecialTokens,
    image_counts: Sequence[int],
    video_counts: Sequence[int],
) -> list[np.ndarray]:
    """Repeat the i-th image (video) pad id of the batch ``image_counts[i]`` times.

    Pads are consumed in order across the whole batch, like the processors do.

    Returns:
        One int64 array per sequence.

    Raises:
        InvalidInputError: the number of pad ids differs from the number of counts (an
            element the chat template did not render, a literal placeholder in user text).
    """
    found_images = sum(int(np.count_nonzero(np.asarray(s) == tokens.image_id)) for s in sequences)
    found_videos = sum(int(np.count_nonzero(np.asarray(s) == tokens.video_id)) for s in sequences)
    if found_images != len(image_counts) or found_videos != len(video_counts):
        raise InvalidInputError(
            f"the rendered prompt has {found_images} image and {found_videos} video "
            f"placeholders, but the messages hold {len(image_counts)} image and "
            f"{len(video_counts)} video placeholders' worth of media; check that every "
            "element has type 'image'/'video' and that no text contains "
            f"{tokens.image!r} or {tokens.video!r}"
        )
    image_iter, video_iter = iter(image_counts), iter(video_counts)
    expanded = []
    for sequence in sequences:
        ids = np.asarray(sequence, dtype=np.int64)
        repeats = np.ones(ids.shape[0], dtype=np.int64)
        for position in np.flatnonzero((ids == tokens.image_id) | (ids == tokens.video_id)):
            source = image_iter if ids[position] == tokens.image_id else video_iter
            repeats[position] = next(source)
        expanded.append(np.repeat(ids, repeats))
    return expanded


def pad_batch(
    sequences: Sequence[np.ndarray],
    pad_id: int,
    side: Literal["left", "right"] = "left",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest sequence: ``(input_ids, attention_mask)`` int64 ``(B, L)``.

    Raises:
        InvalidInputError: ``side`` is not ``"left"`` or ``"right"``.
    """
    if side not in ("left", "right"):
        raise InvalidInputError(f"padding_side must be 'left' or 'right', got {side!r}")
    length = max((len(s) for s in sequences), default=0)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.int64)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.int64)
    for row, sequence in enumerate(sequences):
        n = len(sequence)
        span = slice(length - n, length) if side == "left" else slice(0, n)
        input_ids[row, span] = torch.from_numpy(np.ascontiguousarray(sequence, dtype=np.int64))
        attention_mask[row, span] = 1
    return input_ids, attention_mask


def mm_token_type_ids(input_ids: torch.Tensor, tokens: SpecialTokens) -> torch.Tensor:
    """int64 ``(B, L)``: 0 text, 1 image pad, 2 video pad (transformers 5.x's convention)."""
    types = torch.zeros_like(input_ids)
    types[input_ids == tokens.image_id] = 1
    types[input_ids == tokens.video_id] = 2
    return types
