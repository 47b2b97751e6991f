"""decord backend (optional, ``pip install 'vlprep[decord]'``).

decord gets the data as a file object (it copies it into memory) and never a path, so
its bundled FFmpeg opens no URL; the container was sniffed before. Differences from the
PyAV backend, all decord limitations:

* **No rotation metadata**: ``rotation`` is always 0 and ``width``/``height`` are those of
  the frames decord returns. decord 0.6 (bundling FFmpeg 4) ignores the display matrix
  of Matroska files, applies a 180 degree MP4 rotation (and mistakes a mirror for it),
  and fails on 90/270 degree MP4 rotations, which are refused with a
  :class:`DecodeError` (use ``backend="pyav"``, which applies every display matrix).
* ``codec`` is ``"unknown"`` and ``pix_fmt`` ``None``: decord does not report them, so the
  codec allow-list cannot be enforced with this backend.
* ``total_frames`` is ``len(vr)``: the header frame count, or ``avg_fps * duration`` when
  the header has none.
* The frame size is known only after decord decodes frame 0; ``max_frame_pixels`` is
  checked then. ``max_packets_scanned`` is not applied (decord indexes the whole file).
* ``frames_decoded`` is an estimate from decord's keyframe list (decode from the last
  keyframe unless the previous target is closer), enforced against
  ``max_frames_decoded`` before asking decord.
* **No stream choice**: decord reads FFmpeg's best video stream. ``VideoOptions.stream``
  is accepted only when it names that stream (read with PyAV's header probe, which runs
  the same ``av_find_best_stream``), and is then reported as ``stream_index``; any other
  index, or any index without PyAV installed, is an ``InvalidInputError`` naming the
  backends that can read it.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np

from vlprep._decode.video._base import BatchReader
from vlprep._decode.video._source import OpenedSource
from vlprep._decode.video._types import (
    VideoMetadata,
    VideoOptions,
    WalkEstimate,
    check_frame_limits,
    known_keyframes,
    stream_error,
)
from vlprep._errors import DecodeError, InvalidInputError

__all__ = ["DecordReader"]

logger = logging.getLogger(__name__)


def _import_decord() -> Any:
    return importlib.import_module("decord")  # untyped: keep it Any


def _errors() -> tuple[type[BaseException], ...]:
    decord = _import_decord()

    return (
        decord.DECORDError,
        RuntimeError,
        AssertionError,  # decord asserts a positive frame count
        ValueError,
        IndexError,
        OSError,
        MemoryError,
    )


def _to_numpy(value: Any) -> np.ndarray:
    """decord NDArray, or whatever a global decord bridge returns, to numpy."""
    if hasattr(value, "asnumpy"):
        return np.asarray(value.asnumpy())
    return np.asarray(value)


class DecordReader(BatchReader):
    """A video opened with decord. See :class:`vlprep._decode.video.VideoReader`.

    Attributes:
        metadata: the stream's :class:`VideoMetadata` (``backend="decord"``, rotation 0,
            ``stream_index`` -1: decord picks the best video stream but does not say which;
            the requested index when ``VideoOptions.stream`` named that stream).
        frames_decoded: estimated frames walked by decord so far.
    """

    metadata: VideoMetadata
    frames_decoded: int

    def __init__(self, opened: OpenedSource, options: VideoOptions) -> None:
        decord = _import_decord()
        self._opened = opened
        self._options = options
        self._seek_mode = options.seek
        self.frames_decoded = 0
        self._vr: Any = None
        try:
            self._open(decord)
        except BaseException:
            self.close()
            raise

    def _open(self, decord: Any) -> None:
        errors = _errors()
        wanted = self._options.stream
        stream_index = -1 if wanted is None else self._check_stream(wanted)
        try:
            vr = decord.VideoReader(self._opened.file, ctx=decord.cpu(0))
        except errors as exc:
            raise DecodeError(
                "decord cannot open the video (corrupt, truncated, no video stream or an "
                "unsupported codec)"
            ) from exc
        self._vr = vr
        try:
            total = len(vr)
            fps = float(vr.get_avg_fps())
            times = np.asarray(vr.get_frame_timestamp(list(range(total))), dtype=np.float64)
            keys = [int(k) for k in vr.get_key_indices()]
        except errors as exc:
            raise DecodeError("decord cannot read the video index") from exc
        if total < 1 or not fps > 0:
            raise DecodeError("no decodable video frames")
        duration = float(times[-1, 1] - times[0, 0]) if len(times) else total / fps
        check_frame_limits(0, 0, duration, self._options)
        first = self._batch([0])[0]
        height, width = int(first.shape[0]), int(first.shape[1])
        check_frame_limits(width, height, duration, self._options)
        self._walk = WalkEstimate(keys, self._options)
        self.metadata = VideoMetadata(
            backend="decord",
            stream_index=stream_index,
            fps=fps,
            total_frames=total,
            duration=duration,
            width=width,
            height=height,
            rotation=0,
            codec="unknown",
            pix_fmt=None,
            frame_times=tuple(float(t) for t in times[:, 0] - times[0, 0]),
            keyframes=known_keyframes(keys, total),
        )

    def _check_stream(self, wanted: int) -> int:
        """The requested stream index, when it is the one decord reads (FFmpeg's best).

        Raises:
            InvalidInputError: PyAV is not installed (the choice cannot be checked), the
                index is not a video stream of the file, or it is not the best one.
        """
        need = (
            f"decord always reads the file's best video stream and cannot choose stream "
            f"{wanted}; use backend='pyav' or 'torchcodec' to pick a stream"
        )
        try:
            importlib.import_module("av")
        except ImportError:
            raise InvalidInputError(
                f"{need} (which stream decord reads is checked with PyAV, not installed)"
            ) from None
        from vlprep._decode.video._pyav import probe_streams
        from vlprep._decode.video._source import read_head, sniff_container

        kind = sniff_container(read_head(self._opened.file))
        best, streams = probe_streams(self._opened.file, kind)
        if wanted not in {index for index, _ in streams}:
            raise stream_error(wanted, [text for _, text in streams])
        if wanted != best:
            raise InvalidInputError(f"{need} (it reads stream {best})")
        return wanted

    def _batch(self, indices: list[int]) -> np.ndarray:
        try:
            arr = _to_numpy(self._vr.get_batch(indices))
        except _errors() as exc:
            raise DecodeError(
                "decord failed to decode the requested video frames (corrupt data, or a "
                "90/270 degree display rotation, which decord 0.6 cannot apply: use "
                "backend='pyav')"
            ) from exc
        expected = getattr(self, "metadata", None)
        bad_shape = arr.ndim != 4 or arr.shape[0] != len(indices) or arr.shape[3] != 3
        if expected is not None and not bad_shape:
            bad_shape = arr.shape[1:3] != (expected.height, expected.width)
        if bad_shape or arr.dtype != np.uint8:
            raise DecodeError(
                "decord returned malformed frames (typically a video with a display "
                "rotation, which decord does not support); use backend='pyav'"
            )
        return arr

    def _alive(self) -> bool:
        return self._vr is not None

    def close(self) -> None:
        """Release the decord reader and the file we opened (idempotent)."""
        self._vr = None
        self._opened.close()
