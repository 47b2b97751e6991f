"""Pure frame-count arithmetic for video sampling (no I/O, no torch).

``smart_nframes`` and ``frame_range`` equal qwen-vl-utils 0.0.14's ``smart_nframes`` and
``calculate_video_frame_range``; invalid input raises :class:`InvalidInputError` (a
``ValueError``) where the reference used ``assert``.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlprep._errors import InvalidInputError
from vlprep._numbers import is_finite_number, shown
from vlprep._sizing import ceil_by_factor, floor_by_factor, round_by_factor

__all__ = [
    "FPS",
    "FPS_MAX_FRAMES",
    "FPS_MIN_FRAMES",
    "FRAME_FACTOR",
    "MODEL_SEQ_LEN",
    "VIDEO_MAX_TOKEN_NUM",
    "VIDEO_MIN_TOKEN_NUM",
    "FramePlan",
    "frame_indices",
    "frame_range",
    "indices_at_times",
    "is_variable_rate",
    "plan_frames",
    "smart_nframes",
    "snap_to_keyframes",
    "video_frame_pixels",
]

logger = logging.getLogger(__name__)

FPS = 2.0
FRAME_FACTOR = 2
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
VIDEO_MIN_TOKEN_NUM = 128
VIDEO_MAX_TOKEN_NUM = 768
MODEL_SEQ_LEN = 128000


def _number(ele: Mapping[str, Any], key: str) -> float:
    value = ele[key]
    if not is_finite_number(value):
        raise InvalidInputError(
            f"{key!r} must be a finite number, got {type(value).__name__} {shown(value)}"
        )
    return value


def smart_nframes(ele: Mapping[str, Any], total_frames: int, video_fps: float) -> int:
    """Number of frames to sample from a video, a multiple of 2.

    Args:
        ele: the message element; reads ``nframes`` or ``fps`` (default 2.0),
            ``min_frames`` (default 4) and ``max_frames`` (default ``min(768, total_frames)``).
        total_frames: frames available in the clip (> 0).
        video_fps: the clip's native frame rate (> 0).

    Returns:
        An even frame count in ``[2, total_frames]``.

    Raises:
        InvalidInputError: both ``fps`` and ``nframes`` given, non-numeric values, or a
            result outside ``[2, total_frames]`` (e.g. a 1-frame clip).
    """
    if "fps" in ele and "nframes" in ele:
        raise InvalidInputError("give either 'fps' or 'nframes' in a video element, not both")
    if isinstance(total_frames, bool) or not isinstance(total_frames, (int, float)):
        raise InvalidInputError(f"total_frames must be a number, got {type(total_frames).__name__}")
    if not video_fps > 0:
        raise InvalidInputError(f"video_fps must be > 0, got {video_fps!r}")
    if "nframes" in ele:
        nframes = round_by_factor(_number(ele, "nframes"), FRAME_FACTOR)
    else:
        fps = _number(ele, "fps") if "fps" in ele else FPS
        min_frames = ceil_by_factor(
            _number(ele, "min_frames") if "min_frames" in ele else FPS_MIN_FRAMES, FRAME_FACTOR
        )
        max_frames = floor_by_factor(
            _number(ele, "max_frames")
            if "max_frames" in ele
            else min(FPS_MAX_FRAMES, total_frames),
            FRAME_FACTOR,
        )
        wanted = total_frames / video_fps * fps
        if wanted > total_frames:
            logger.warning(
                "requested fps %s exceeds the video's fps %s; using all %s frames",
                fps,
                video_fps,
                total_frames,
            )
        wanted = min(max(wanted, min_frames), max_frames, total_frames)
        nframes = floor_by_factor(wanted, FRAME_FACTOR)
    if not (FRAME_FACTOR <= nframes <= total_frames):
        raise InvalidInputError(
            f"nframes should be in [{FRAME_FACTOR}, {total_frames}], but got {nframes}; "
            "the video has too few frames for the requested sampling"
        )
    return nframes


def frame_range(
    total_frames: int,
    video_fps: float,
    video_start: float | None = None,
    video_end: float | None = None,
) -> tuple[int, int, int]:
    """First and last frame index of a ``video_start``/``video_end`` clip (seconds).

    Returns:
        ``(start, end, count)`` with ``count = end - start + 1``; the whole video when both
        bounds are ``None``.

    Raises:
        InvalidInputError: non-positive fps or frame count, NaN bounds, or an empty range.
    """
    if not video_fps > 0 or not total_frames > 0:
        raise InvalidInputError(
            f"video_fps and total_frames must be > 0, got {video_fps!r} and {total_frames!r}"
        )
    if video_start is None and video_end is None:
        return 0, total_frames - 1, total_frames
    for name, value in (("video_start", video_start), ("video_end", video_end)):
        if value is not None and not is_finite_number(value):
            raise InvalidInputError(
                f"{name} must be a finite number of seconds, got {shown(value)}"
            )
    duration = total_frames / video_fps
    start = 0
    if video_start is not None:
        start = math.ceil(max(0.0, min(video_start, duration)) * video_fps)
    end = total_frames - 1
    if video_end is not None:
        end = min(math.floor(max(0.0, min(video_end, duration)) * video_fps), total_frames - 1)
    if start >= end:
        raise InvalidInputError(
            f"invalid time range: start frame {start} (at {video_start}s) is not before end frame "
            f"{end} (at {video_end}s); the video lasts {duration:.3f}s"
        )
    return start, end, end - start + 1


def frame_indices(start: int, end: int, n: int) -> list[int]:
    """``torch.linspace(start, end, n).round().long().tolist()``, computed without torch.

    torch fills a float32 linspace from both ends (``start + step * i`` for the first half,
    ``end - step * (n - 1 - i)`` for the rest) with a fused multiply-add, then rounds half to
    even. The product of two float32 values is exact in float64, so evaluating the same
    expressions in float64 and rounding once to float32 reproduces it (checked against
    torch on 300,000 random ranges, and by a Hypothesis test).
    """
    if n < 1:
        raise InvalidInputError(f"cannot sample {n} frames; need at least 1")
    if n == 1:
        return [int(np.rint(np.float32(start)))]
    first, last = np.float32(start), np.float32(end)
    step = np.float64((last - first) / np.float32(n - 1))
    i = np.arange(n, dtype=np.int64)
    forward = (np.float64(first) + step * i).astype(np.float32)
    backward = (np.float64(last) - step * (n - 1 - i)).astype(np.float32)
    values = np.where(i < n // 2, forward, backward)
    return [int(v) for v in np.rint(values)]


def video_frame_pixels(
    nframes: int,
    factor: int,
    min_pixels: float | None = None,
    max_pixels: float | None = None,
    total_pixels: float | None = None,
    *,
    defaults: tuple[float, float, float] | None = None,
) -> tuple[float, float]:
    """Per-frame ``(min_pixels, max_pixels)`` for a clip of ``nframes`` frames, as qwen-vl-utils.

    The clip budget ``total_pixels`` (default ``128000 * factor² * 0.9``) is spread over the
    frames counted in temporal pairs: ``max = max(min(768·f², total / nframes * 2),
    int(min * 1.05))``; a ``max_pixels`` from the element can only lower it (a higher one is
    logged and ignored). ``min`` defaults to ``128·f²``. ``defaults`` replaces the three
    defaults (per-frame min, per-frame max, clip total): a
    :class:`~vlprep._presets.Preset`'s ``video_min_pixels``, ``video_max_pixels`` and
    ``video_total_pixels`` (:func:`vlprep._planning.video_target_size` passes them).
    """
    if nframes < 1:
        raise InvalidInputError(f"nframes must be >= 1, got {nframes}")
    if defaults is None:
        square = factor * factor
        defaults = (
            VIDEO_MIN_TOKEN_NUM * square,
            VIDEO_MAX_TOKEN_NUM * square,
            MODEL_SEQ_LEN * square * 0.9,
        )
    default_low, ceiling, default_total = defaults
    low = min_pixels if min_pixels is not None else default_low
    total = total_pixels if total_pixels is not None else default_total
    high = max(min(ceiling, total / nframes * FRAME_FACTOR), int(low * 1.05))
    if max_pixels is not None:
        if max_pixels > high:
            logger.warning(
                "max_pixels %s exceeds the per-frame video budget %s; using the budget",
                max_pixels,
                high,
            )
        high = min(max_pixels, high)
    return low, high


@dataclass(frozen=True, slots=True)
class FramePlan:
    """Which frames of a clip to decode.

    Attributes:
        indices: absolute frame indices, non-decreasing, an even count >= 2 (the last one
            repeated when the clip is too short to give two distinct frames).
        sample_fps: frames per second of the sampled sequence (``len(indices) / clip * fps``).
        clip_frames: frames in the ``video_start``/``video_end`` clip (qwen's
            ``total_num_frames``).
    """

    indices: tuple[int, ...]
    sample_fps: float
    clip_frames: int


def plan_frames(
    total_frames: int,
    video_fps: float,
    *,
    fps: float | None = None,
    nframes: float | None = None,
    min_frames: float | None = None,
    max_frames: float | None = None,
    video_start: float | None = None,
    video_end: float | None = None,
) -> FramePlan:
    """The frames qwen-vl-utils 0.0.14's decord/torchcodec readers sample, as a plan.

    ``frame_range`` then ``smart_nframes`` then ``frame_indices``. Deviation: a clip with
    fewer frames than the request allows (a 1-frame video; ``nframes`` above the clip
    length) is not rejected: all its frames are used and the last is repeated up to an even
    count of at least 2.

    Raises:
        InvalidInputError: both ``fps`` and ``nframes``, an empty time range, a request
            that asks for fewer than 2 frames on a clip that has them.
    """
    start, end, clip = frame_range(total_frames, video_fps, video_start, video_end)
    given = {"fps": fps, "nframes": nframes, "min_frames": min_frames, "max_frames": max_frames}
    ele = {key: value for key, value in given.items() if value is not None}
    try:
        n = smart_nframes(ele, clip, video_fps)
        indices = frame_indices(start, end, n)
    except InvalidInputError:
        if fps is not None and nframes is not None:
            raise
        wanted = round_by_factor(nframes, FRAME_FACTOR) if nframes is not None else FRAME_FACTOR
        if wanted < FRAME_FACTOR or clip >= wanted:
            raise
        logger.warning("the clip has %d frames, fewer than requested; repeating the last", clip)
        indices = list(range(start, end + 1))
        padded = max(FRAME_FACTOR, ceil_by_factor(len(indices), FRAME_FACTOR))
        indices += [indices[-1]] * (padded - len(indices))
    sample_fps = len(indices) / max(clip, 1e-6) * video_fps
    return FramePlan(indices=tuple(indices), sample_fps=sample_fps, clip_frames=clip)


def is_variable_rate(frame_times: Sequence[float], fps: float) -> bool:
    """Whether presentation times stray more than one frame from a constant ``fps`` grid."""
    if len(frame_times) < 3 or not fps > 0:
        return False
    origin = frame_times[0]
    return max(abs(t - origin - i / fps) for i, t in enumerate(frame_times)) > 1.0 / fps


def indices_at_times(frame_times: Sequence[float], indices: Sequence[int], fps: float) -> list[int]:
    """Re-aim planned indices at the times they stand for on a variable-rate clip.

    qwen-vl-utils treats index ``i`` as time ``i / fps``; on a variable-frame-rate file
    that is not where frame ``i`` is shown. This returns, for each planned index, the frame
    whose timestamp is nearest ``frame_times[0] + i / fps`` (ties to the earlier one; not
    necessarily the frame on screen at that time, which may start before it), keeping the
    order.
    """
    origin = frame_times[0]
    chosen = []
    for index in indices:
        target = origin + index / fps
        pos = bisect.bisect_right(frame_times, target + 1e-9) - 1
        pos = min(max(pos, 0), len(frame_times) - 1)
        if pos + 1 < len(frame_times) and frame_times[pos + 1] - target < target - frame_times[pos]:
            pos += 1
        chosen.append(pos)
    return chosen


def snap_to_keyframes(
    indices: Sequence[int],
    keyframes: Sequence[int],
    frame_times: Sequence[float] | None = None,
) -> list[int]:
    """Replace each planned index by the keyframe nearest to it (long-video keyframe mode).

    Nearest in presentation time when ``frame_times`` are given (variable-rate files),
    else in frame count; a tie goes to the earlier keyframe. The mapping keeps the order
    (non-decreasing in, non-decreasing out) and the count; two planned indices nearest to
    the same keyframe both get it.

    Args:
        indices: planned frame indices, non-decreasing.
        keyframes: frame indices of the stream's keyframes (any order, duplicates allowed).
        frame_times: seconds of every frame of the stream, in index order.

    Returns:
        One keyframe index per planned index.

    Raises:
        InvalidInputError: no keyframes, or a keyframe outside ``frame_times``.
    """
    keys = sorted({int(k) for k in keyframes})
    if not keys:
        raise InvalidInputError("the stream has no known keyframe to snap the plan to")
    if frame_times is not None and (keys[0] < 0 or keys[-1] >= len(frame_times)):
        raise InvalidInputError(
            f"keyframe index {keys[-1]} is outside the {len(frame_times)} frame times"
        )

    def at(index: int) -> float:
        return float(frame_times[index]) if frame_times is not None else float(index)

    snapped = []
    for raw in indices:
        index = int(raw)
        k = bisect.bisect_right(keys, index) - 1
        if k < 0:
            snapped.append(keys[0])
            continue
        before = keys[k]
        after = keys[k + 1] if k + 1 < len(keys) else None
        if after is not None and at(after) - at(index) < at(index) - at(before):
            snapped.append(after)
        else:
            snapped.append(before)
    return snapped
