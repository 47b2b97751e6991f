"""The presentation-order frame table of one stream, built by demuxing without decoding.

Frame ``i`` is the packet with the ``i``-th smallest presentation timestamp, which is how
decord defines it; this makes frame indices exact on variable-frame-rate files. AVI
stores no presentation timestamps (its packet pts are decode-order counters), so there
frames are numbered in decode order and assumed to come out of the decoder in that count
(closed GOPs), which is also what decord does in effect.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, cast

from vlprep._decode.video._types import VideoOptions
from vlprep._errors import DecodeError, ResourceLimitError

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

__all__ = ["FrameIndex", "Timing", "header_seconds", "scan_index", "stream_timing"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameIndex:
    """Where each frame is and where decoding can start.

    Attributes:
        by_pts: ``True`` when frames are identified by presentation timestamp (MP4,
            Matroska); ``False`` when numbered in decode order (AVI).
        stamps: per frame, in index order: its pts (``by_pts``) or its dts, in
            ``stream.time_base`` units; ``None`` entries only when ``by_pts`` is ``False``.
        key_positions: sorted frame indices of keyframes.
        key_seek: the timestamp to seek to for each entry of ``key_positions``.
    """

    by_pts: bool
    stamps: tuple[int | None, ...]
    key_positions: tuple[int, ...]
    key_seek: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.stamps)

    def keyframe_at_or_before(self, index: int) -> tuple[int, int] | None:
        """``(position, seek timestamp)`` of the last keyframe at or before ``index``."""
        k = bisect.bisect_right(self.key_positions, index) - 1
        if k < 0:
            return None
        return self.key_positions[k], self.key_seek[k]

    def keyframe_before(self, key: tuple[int, int]) -> tuple[int, int] | None:
        """The keyframe preceding ``key`` (``None``: decode from the stream start)."""
        k = bisect.bisect_left(self.key_positions, key[0]) - 1
        if k < 0:
            return None
        return self.key_positions[k], self.key_seek[k]

    def position_of_pts(self, pts: int) -> int:
        """Index of the frame with presentation timestamp ``pts`` (first one at or after)."""
        return bisect.bisect_left(cast("tuple[int, ...]", self.stamps), pts)

    def position_of_dts(self, dts: int) -> int | None:
        """Decode-order index of the packet with ``dts`` (decode-order tables only)."""
        if not self.stamps or self.stamps[0] is None:
            return None
        k = bisect.bisect_left(cast("tuple[int, ...]", self.stamps), dts)
        if k < len(self.stamps) and self.stamps[k] == dts:
            return k
        return None


def scan_index(
    container: InputContainer, stream: VideoStream, by_pts: bool, options: VideoOptions
) -> FrameIndex:
    """Demux every packet of ``stream`` (no decoding) and build its frame table.

    Raises:
        ResourceLimitError: more than ``options.max_packets_scanned`` packets.
        DecodeError: no packet at all.
    """
    import av

    limit = options.max_packets_scanned
    packets: list[tuple[int | None, int | None, bool]] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # PyAV's end-of-stream flush packets
                continue
            if len(packets) >= limit:
                raise ResourceLimitError(
                    f"video stream has more than {limit} packets to index; raise "
                    "VideoOptions.max_packets_scanned if intended"
                )
            packets.append((packet.pts, packet.dts, bool(packet.is_keyframe)))
    except (av.error.FFmpegError, OSError, EOFError) as exc:  # a damaged tail
        if not packets:
            raise DecodeError("cannot read any video packet (corrupt or truncated)") from exc
        logger.debug("packet scan stopped early after %d packets: %s", len(packets), exc)
    if not packets:
        raise DecodeError("no decodable video frames (the video stream has no packets)")
    if by_pts and all(pts is not None for pts, _, _ in packets):
        return _by_pts(packets)
    return _by_decode_order(packets)


def _by_pts(packets: list[tuple[int | None, int | None, bool]]) -> FrameIndex:
    # Seek targets are the keyframes' own pts: Matroska cues are pts, and FFmpeg's MP4
    # index holds dts shifted by the edit list, which is at or before the keyframe's pts.
    stamps = sorted(pts for pts, _, _ in packets if pts is not None)
    keys = sorted(
        {
            (bisect.bisect_left(stamps, pts), pts)
            for pts, _, key in packets
            if key and pts is not None
        }
    )
    return FrameIndex(
        by_pts=True,
        stamps=tuple(stamps),
        key_positions=tuple(k for k, _ in keys),
        key_seek=tuple(s for _, s in keys),
    )


def _by_decode_order(packets: list[tuple[int | None, int | None, bool]]) -> FrameIndex:
    dts_list = [dts for _, dts, _ in packets]
    known = [d for d in dts_list if d is not None]
    monotonic = len(known) == len(dts_list) and all(a < b for a, b in itertools.pairwise(known))
    keys = [
        (i, dts) for i, (_, dts, key) in enumerate(packets) if key and dts is not None and monotonic
    ]
    if not monotonic:
        logger.debug("decode timestamps missing or unordered: no seeking in this stream")
    return FrameIndex(
        by_pts=False,
        stamps=tuple(dts_list) if monotonic else tuple(None for _ in dts_list),
        key_positions=tuple(i for i, _ in keys),
        key_seek=tuple(int(d) for _, d in keys if d is not None),
    )


@dataclass(frozen=True, slots=True)
class Timing:
    """Stream timing in seconds: header (or table) duration, table span, fps, frame times."""

    duration: float
    span: float
    fps: float
    frame_times: tuple[float, ...] | None


def header_seconds(container: InputContainer, stream: VideoStream) -> float | None:
    """The duration the headers claim (stream, else container), before any scan."""
    if stream.duration is not None and stream.duration > 0 and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def stream_timing(stream: VideoStream, index: FrameIndex, header: float | None) -> Timing:
    """Duration, fps (``average_rate`` as decord reports it) and per-frame times.

    Raises:
        DecodeError: no frame rate can be determined.
    """
    time_base = stream.time_base or Fraction(1, 1)
    stamps = [int(s) for s in index.stamps if s is not None]
    span = 0.0
    if len(stamps) >= 2:
        step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        span = float((stamps[-1] - stamps[0] + step) * time_base)
    rate = next((r for r in (stream.average_rate, stream.guessed_rate) if r and r > 0), None)
    if header is not None:
        duration = header
    elif span > 0:
        duration = span
    else:
        duration = len(index) / float(rate) if rate else 0.0
    if rate is not None:
        fps = float(rate)
    elif duration > 0:
        fps = len(index) / duration
    else:
        raise DecodeError("cannot determine the frame rate of the video stream")
    frame_times = None
    if stamps and len(stamps) == len(index):
        base = int(stream.start_time) if stream.start_time is not None else stamps[0]
        num, den = time_base.numerator, time_base.denominator
        frame_times = tuple(((s - base) * num) / den for s in stamps)
    return Timing(duration=duration, span=span, fps=fps, frame_times=frame_times)
