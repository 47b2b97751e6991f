"""Pure frame-count arithmetic for video sampling (no I/O, no torch).

``smart_nframes`` and ``frame_range`` equal qwen-vl-utils 0.0.14's ``smart_nframes`` and
``calculate_video_frame_range``; invalid input raises :class:`InvalidInputError` (a
``ValueError``) where the reference used ``assert``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from vlprep.errors import InvalidInputError
from vlprep.sizing import ceil_by_factor, floor_by_factor, round_by_factor

__all__ = [
    "FPS",
    "FPS_MAX_FRAMES",
    "FPS_MIN_FRAMES",
    "FRAME_FACTOR",
    "frame_range",
    "smart_nframes",
]

logger = logging.getLogger(__name__)

FPS = 2.0
FRAME_FACTOR = 2
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768


def _number(ele: Mapping[str, Any], key: str) -> float:
    value = ele[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(
            f"{key!r} must be a finite number, got {type(value).__name__} {str(value)[:20]!r}"
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
        if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
            raise InvalidInputError(f"{name} must be a finite number of seconds, got {value!r}")
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
