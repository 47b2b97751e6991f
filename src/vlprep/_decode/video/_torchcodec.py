"""torchcodec backend (optional: ``pip install torchcodec`` plus the FFmpeg libraries).

torchcodec gets the data as a file object, never a path or URL; the container was sniffed
before. It scans the file in ``seek_mode="exact"`` (frame ``i`` = ``i``-th presentation
timestamp, like decord and the PyAV backend) and applies the display rotation itself
(torchcodec >= 0.11; ``width``/``height`` are post-rotation). Differences from PyAV:

* the codec allow-list is checked after torchcodec has opened the stream (before any
  frame is requested); the nested-URL and decoder whitelists cannot be set;
* ``max_packets_scanned`` is not applied (torchcodec scans the whole file);
* ``frame_times`` is ``None`` (torchcodec does not expose them without decoding), so a
  variable-frame-rate file is sampled by index, not re-aimed by time; the presentation
  times of the frames it decoded are kept (:meth:`TorchCodecReader.decoded_seconds`);
* ``frames_decoded`` is an estimate from torchcodec's keyframe list.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlprep._decode.video._base import BatchReader
from vlprep._decode.video._source import OpenedSource
from vlprep._decode.video._types import (
    ACCEPTED_CODECS,
    VideoMetadata,
    VideoOptions,
    WalkEstimate,
    check_frame_limits,
    known_keyframes,
    stream_error,
)
from vlprep._errors import BackendUnavailableError, DecodeError, UnsupportedFormatError

__all__ = ["TorchCodecReader"]

logger = logging.getLogger(__name__)

_ERRORS = (RuntimeError, ValueError, IndexError, OSError, MemoryError)


def _decoder_class() -> Any:
    try:
        torchcodec = importlib.import_module("torchcodec")
        decoders = importlib.import_module("torchcodec.decoders")
    except ImportError as exc:
        raise BackendUnavailableError(
            "video backend 'torchcodec' is not installed: pip install torchcodec "
            "(it also needs the FFmpeg shared libraries)"
        ) from exc
    if getattr(torchcodec, "ffmpeg_major_version", 0) is None:
        raise BackendUnavailableError(
            "torchcodec is installed but cannot load the FFmpeg libraries; install FFmpeg "
            "(versions 4-8) or use backend='pyav'"
        )
    return decoders.VideoDecoder


class TorchCodecReader(BatchReader):
    """A video opened with torchcodec. See :class:`vlprep._decode.video.VideoReader`.

    Attributes:
        metadata: the stream's :class:`VideoMetadata` (``backend="torchcodec"``).
        frames_decoded: estimated frames walked so far.
    """

    metadata: VideoMetadata
    frames_decoded: int

    def __init__(self, opened: OpenedSource, options: VideoOptions) -> None:
        self._opened = opened
        self._options = options
        self._seek_mode = options.seek
        self.frames_decoded = 0
        self._decoder: Any = None
        self._origin = 0.0
        self._seconds: dict[int, float] = {}
        try:
            self._open(_decoder_class())
        except BaseException:
            self.close()
            raise

    def _open(self, decoder_class: Any) -> None:
        wanted = self._options.stream
        try:
            decoder = decoder_class(
                self._opened.file, seek_mode="exact", dimension_order="NHWC", stream_index=wanted
            )
            meta = decoder.metadata
            keys = list(decoder._get_key_frame_indices())
        except _ERRORS as exc:
            if wanted is not None:
                self._check_stream(decoder_class, wanted)
            raise DecodeError(
                "torchcodec cannot open the video (corrupt, truncated or no video stream)"
            ) from exc
        self._decoder = decoder
        codec = str(meta.codec or "unknown")
        if codec not in ACCEPTED_CODECS:
            raise UnsupportedFormatError(
                f"video codec {codec[:32]!r} is not accepted; accepted: {sorted(ACCEPTED_CODECS)}"
            )
        total = int(meta.num_frames or 0)
        header = float(getattr(meta, "duration_seconds_from_header", None) or 0.0)
        duration = header or float(meta.duration_seconds or 0.0)
        # frames / header duration is FFmpeg's avg_frame_rate for MP4 and Matroska, the
        # value decord and the PyAV backend report.
        fps = total / header if header > 0 else float(meta.average_fps or 0.0)
        if duration <= 0 and fps > 0:
            duration = total / fps
        width, height = int(meta.width or 0), int(meta.height or 0)
        if total < 1 or width < 1 or height < 1 or not fps > 0:
            raise DecodeError("no decodable video frames")
        check_frame_limits(width, height, duration, self._options)
        self._origin = float(getattr(meta, "begin_stream_seconds", None) or 0.0)
        ccw = meta.rotation or 0.0
        self._walk = WalkEstimate(keys, self._options)
        self.metadata = VideoMetadata(
            backend="torchcodec",
            stream_index=int(meta.stream_index),
            fps=fps,
            total_frames=total,
            duration=duration,
            width=width,
            height=height,
            rotation=round(-float(ccw) / 90.0) * 90 % 360,
            codec=codec,
            pix_fmt=getattr(meta, "pixel_format", None),
            frame_times=None,
            keyframes=known_keyframes(keys, total),
        )

    def _check_stream(self, decoder_class: Any, wanted: int) -> None:
        """Raise the listing ``InvalidInputError`` when ``wanted`` is not a video stream.

        Called after torchcodec refused the index: the file is opened again on its best
        stream (header only) to list the video streams. Returns when that fails or
        ``wanted`` is a video stream (the caller then raises its ``DecodeError``).
        """
        try:
            self._opened.file.seek(0)
            decoder = decoder_class(self._opened.file, seek_mode="approximate")
            core = importlib.import_module("torchcodec._core")
            container = core.get_container_metadata(decoder._decoder)
            videos = [
                (int(m.stream_index), f"{m.stream_index} ({m.codec} {m.width}x{m.height})")
                for m in container.streams
                if isinstance(m, core.VideoStreamMetadata) and m.stream_index is not None
            ]
        except (*_ERRORS, AttributeError, ImportError, TypeError):
            return
        if wanted not in {index for index, _ in videos}:
            raise stream_error(wanted, [text for _, text in videos])

    def _alive(self) -> bool:
        return self._decoder is not None

    def _batch(self, indices: list[int]) -> np.ndarray:
        try:
            batch = self._decoder.get_frames_at(indices)
            pts = [float(t) for t in batch.pts_seconds.tolist()]
            frames = np.asarray(batch.data.numpy())
            self._seconds.update(zip(indices, pts, strict=True))
        except _ERRORS as exc:
            raise DecodeError("torchcodec failed to decode the requested frames") from exc
        return frames

    def decoded_seconds(self, indices: Sequence[int]) -> tuple[float, ...] | None:
        """Presentation times of already decoded frames, seconds from the stream's first frame.

        ``None`` when any of ``indices`` has not been decoded by this reader.
        """
        if not all(int(i) in self._seconds for i in indices):
            return None
        return tuple(self._seconds[int(i)] - self._origin for i in indices)

    def close(self) -> None:
        """Release the decoder and the file we opened (idempotent)."""
        self._decoder = None
        self._opened.close()
