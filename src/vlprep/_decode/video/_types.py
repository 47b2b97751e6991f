"""Value types shared by the video backends: options, metadata, the reader protocol."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

from vlprep._errors import InvalidInputError, ResourceLimitError, UnsupportedFormatError

__all__ = [
    "ACCEPTED_CODECS",
    "BACKEND_NAMES",
    "DECODER_RESIZE_BACKENDS",
    "BackendChoice",
    "BackendName",
    "FrameResize",
    "FrameSeek",
    "VideoMetadata",
    "VideoOptions",
    "VideoReader",
    "WalkEstimate",
    "check_frame_limits",
    "check_indices",
    "check_keyframe_plan",
    "check_output_size",
    "known_keyframes",
    "stream_error",
]

BackendName = Literal["pyav", "decord", "torchcodec"]
BackendChoice = Literal["auto", "pyav", "decord", "torchcodec"]
FrameResize = Literal["exact", "fast", "decoder"]
FrameSeek = Literal["exact", "keyframe"]
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)
_CHOICES: tuple[str, ...] = get_args(BackendChoice)
_RESIZES: tuple[str, ...] = get_args(FrameResize)
_SEEKS: tuple[str, ...] = get_args(FrameSeek)
DECODER_RESIZE_BACKENDS: tuple[str, ...] = ("pyav",)
"""Backends whose own scaler ``resize="decoder"`` can use (decord and torchcodec: none)."""
ACCEPTED_CODECS = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg", "mpeg1video", "mpeg2video", "theora"}
)
"""Video codecs decoded (FFmpeg codec names). JPEG 2000 and everything else is refused."""


@dataclass(frozen=True, slots=True)
class VideoOptions:
    """How a video container is opened and how much work one call may do.

    Attributes:
        backend: ``"auto"`` (PyAV if importable, else torchcodec if it imports and works,
            else decord), or one backend by name. No silent fallback on errors.
        max_duration: longest video accepted, in seconds, checked from the metadata before
            any frame is decoded (``ResourceLimitError`` above it).
        max_frame_pixels: largest ``width * height`` of one frame, checked before decoding.
        max_packets_scanned: most packets read while building the frame index (a
            demux-only pass, no decoding).
        max_frames_decoded: most frames decoded (walked) by one ``frames()`` call; bounds
            the work of a plan on a long video with sparse keyframes.
        resize: frame resize used by :func:`vlprep._video.fetch_video`: ``"exact"`` =
            qwen-vl-utils' float bicubic (bit-identical), ``"fast"`` = torch's uint8
            kernel, ``"decoder"`` = FFmpeg's swscale inside the PyAV backend, bicubic on
            the decoded YUV planes, then converted to RGB at the target size (fastest;
            measured deviation in ``docs/video.md``). ``"decoder"`` needs the PyAV
            backend: ``InvalidInputError`` for decord and torchcodec (here when named,
            at open when ``"auto"`` resolves to them); frame lists and arrays, which no
            video decoder produces, use ``"exact"``.
        max_list_frames: most items in a frame-list video, checked by
            :func:`vlprep._video.fetch_video`; the decoders ignore it.
        decode_threads: FFmpeg decoder threads for the PyAV backend; ``0`` = automatic
            (FFmpeg's choice when reading frames directly; :func:`vlprep._video.fetch_video`
            gives the decoder half of ``torch.get_num_threads()`` and the resize the rest,
            since the two run at the same time). decord and torchcodec ignore it.
        isolate: run the decoder in a child process whose address space is capped
            (``isolate_memory``) and which is killed past ``isolate_timeout``: a decoder
            crash becomes ``DecodeError``, running out of memory or time
            ``ResourceLimitError``. Same metadata and frames as in process; costs one
            process start per opened video (the child does not import torch). POSIX only.
        isolate_memory: bytes of address space the child may add after its imports
            (``RLIMIT_AS`` = its size after imports + this). Default 4 GiB.
        isolate_timeout: wall-clock seconds for each request to the child (opening the
            video, each ``frames()`` call) before it is killed.
        seek: how frames are reached. ``"exact"`` (default): every planned frame,
            decoding forward from the keyframe before it. ``"keyframe"``: long-video mode;
            :func:`vlprep._video.fetch_video` moves each planned frame to the keyframe
            nearest it in time (:func:`vlprep._sampling.snap_to_keyframes`), so each distinct
            keyframe costs a seek and one decoded frame; the reported indices and sample fps
            are those of the keyframes. Readers in this mode accept only keyframe indices
            (``VideoMetadata.keyframes``). All three backends support it; a stream whose
            keyframes are unknown raises ``UnsupportedFormatError``.
        max_output_frame_pixels: largest ``height * width`` a frame is resized to (default
            ``2**25``), and ``max_output_pixels`` the largest ``frames * height * width`` of
            one clip's output (default ``2**28``, just above what qwen-vl-utils' default
            budget allows: 768 frames at the 128,000-token clip budget): both checked from
            the plan before the output is allocated (``ResourceLimitError`` naming the keys).
        stream: container index of the video stream to read (``VideoMetadata.stream_index``);
            ``None`` (default): FFmpeg's best video stream, as before. A message element's
            ``video_stream`` key overrides it. PyAV and torchcodec read any video stream;
            decord always reads the best one, so with decord another index is an
            ``InvalidInputError`` naming the backends that can (which stream is the best is
            read with PyAV: without PyAV installed decord refuses every index). An index
            that is absent or not a video stream (audio, subtitles) is an
            ``InvalidInputError`` listing the file's video streams. Frame lists and arrays
            ignore it.
    """

    backend: BackendChoice = "auto"
    max_duration: float = 7200.0
    max_frame_pixels: int = 8192 * 8192
    max_packets_scanned: int = 500_000
    max_frames_decoded: int = 36_000
    resize: FrameResize = "exact"
    max_list_frames: int = 768
    decode_threads: int = 0
    isolate: bool = False
    isolate_memory: int = 4 << 30
    isolate_timeout: float = 120.0
    seek: FrameSeek = "exact"  # positional construction keeps its meaning up to here
    max_output_frame_pixels: int = 1 << 25
    max_output_pixels: int = 1 << 28
    stream: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in _CHOICES:
            raise InvalidInputError(
                f"VideoOptions.backend must be one of {list(_CHOICES)}, "
                f"got {str(self.backend)[:32]!r}"
            )
        duration = self.max_duration
        if (
            isinstance(duration, bool)
            or not isinstance(duration, (int, float))
            or math.isnan(duration)
            or duration <= 0
        ):
            raise InvalidInputError(
                f"VideoOptions.max_duration must be a positive number of seconds, "
                f"got {duration!r:.32}"
            )
        if self.resize not in _RESIZES:
            raise InvalidInputError(
                f"VideoOptions.resize must be one of {list(_RESIZES)}, "
                f"got {str(self.resize)[:32]!r}"
            )
        if self.resize == "decoder" and self.backend not in ("auto", *DECODER_RESIZE_BACKENDS):
            raise InvalidInputError(
                f"VideoOptions.resize='decoder' resizes in the PyAV backend's scaler; backend "
                f"{self.backend!r} has none: use backend='pyav' (or 'auto'), or "
                "resize='exact' or 'fast'"
            )
        if self.seek not in _SEEKS:
            raise InvalidInputError(
                f"VideoOptions.seek must be one of {list(_SEEKS)}, got {str(self.seek)[:32]!r}"
            )
        for name in (
            "max_frame_pixels",
            "max_packets_scanned",
            "max_frames_decoded",
            "max_list_frames",
            "max_output_frame_pixels",
            "max_output_pixels",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(
                    f"VideoOptions.{name} must be a positive int, got {value!r:.32}"
                )
        if not isinstance(self.isolate, bool):
            raise InvalidInputError(
                f"VideoOptions.isolate must be a bool, got {self.isolate!r:.32}"
            )
        memory = self.isolate_memory
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 64 << 20:
            raise InvalidInputError(
                f"VideoOptions.isolate_memory must be an int of bytes >= 64 MiB, got {memory!r:.32}"
            )
        timeout = self.isolate_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise InvalidInputError(
                f"VideoOptions.isolate_timeout must be a positive number of seconds, "
                f"got {timeout!r:.32}"
            )
        threads = self.decode_threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise InvalidInputError(
                f"VideoOptions.decode_threads must be an int >= 0, got {threads!r:.32}"
            )
        stream = self.stream
        if stream is not None and (
            isinstance(stream, bool) or not isinstance(stream, int) or stream < 0
        ):
            raise InvalidInputError(
                "VideoOptions.stream must be None (the best video stream) or a container "
                f"stream index, an int >= 0, got {stream!r:.32}"
            )

    @classmethod
    def long_video(cls, **overrides: Any) -> VideoOptions:
        """The named long-video mode: ``seek="keyframe"`` with ``resize="decoder"``.

        Each planned frame becomes the keyframe nearest it (one seek and one decoded frame
        per distinct keyframe) and FFmpeg's scaler sizes it while converting to RGB: the
        fastest way through a long clip (3.9-5.1x exact mode on the 120 s benchmark clip,
        see docs/performance.md), with the timestamps of the frames actually returned.
        PyAV only (``resize="decoder"``); pass ``resize="exact"`` to keep qwen-vl-utils'
        resize kernel on the keyframes. Other fields as in the constructor.
        """
        settings: dict[str, Any] = {"seek": "keyframe", "resize": "decoder", **overrides}
        return cls(**settings)


@dataclass(frozen=True, slots=True)
class VideoMetadata:
    """Facts about the chosen video stream, known before frames are decoded.

    Attributes:
        backend: ``"pyav"``, ``"decord"`` or ``"torchcodec"``.
        stream_index: container index of the video stream read (``VideoOptions.stream``, else
            FFmpeg's best): PyAV and torchcodec always report it; decord reports it when
            ``VideoOptions.stream`` named it and ``-1`` otherwise (it reads FFmpeg's best
            stream without saying which).
        fps: average frame rate (what decord's ``get_avg_fps()`` reports).
        total_frames: frames in the stream, in presentation order; frame ``i`` is the
            frame with the ``i``-th smallest presentation timestamp (decord's definition).
        duration: seconds.
        width: displayed width in pixels (after rotation).
        height: displayed height in pixels (after rotation).
        rotation: clockwise degrees applied to the stored frames for display
            (0, 90, 180 or 270).
        codec: codec name (``"h264"``, ``"hevc"``, ...); ``"unknown"`` when the backend
            does not say.
        pix_fmt: stored pixel format (``"yuv420p"``, ...), when known.
        frame_times: presentation time in seconds from the stream start of each frame,
            ``total_frames`` values in index order, when the backend knows them.
        keyframes: sorted indices of the frames a decoder can start from (from the
            container's index: PyAV's demux pass, decord's and torchcodec's key lists);
            ``None`` when unknown (an AVI stream with B-frames).
    """

    backend: str
    stream_index: int
    fps: float
    total_frames: int
    duration: float
    width: int
    height: int
    rotation: int
    codec: str
    pix_fmt: str | None
    frame_times: tuple[float, ...] | None
    keyframes: tuple[int, ...] | None = None


@runtime_checkable
class VideoReader(Protocol):
    """An open video: metadata plus frames at requested indices. Close it (or use ``with``)."""

    metadata: VideoMetadata

    def frames(
        self, indices: Sequence[int], size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        """Yield one ``uint8`` ``(H, W, 3)`` RGB array per index, displayed orientation.

        ``indices`` are non-decreasing, may repeat, each in ``[0, total_frames)``; they
        are validated when ``frames`` is called, before anything is decoded. A later call
        may start anywhere (the reader seeks back). Iterate one ``frames`` call at a time.
        With ``VideoOptions(seek="keyframe")`` every index must be in
        ``metadata.keyframes``. ``size`` = displayed ``(height, width)`` to scale to in the
        decoder (``resize="decoder"``, PyAV only; the others raise ``InvalidInputError``).
        """
        ...

    def close(self) -> None:
        """Release the container and any file the reader opened."""
        ...

    def __enter__(self) -> VideoReader: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def stream_error(requested: int, video_streams: Sequence[str]) -> InvalidInputError:
    """The error for a requested stream index that is absent or not a video stream.

    Args:
        requested: the index asked for (``VideoOptions.stream`` / ``video_stream``).
        video_streams: one description per video stream of the file (``"3 (h264 480x270)"``).
    """
    listed = ", ".join(video_streams) if video_streams else "none"
    return InvalidInputError(
        f"stream {requested} is not a video stream of this file (absent, or audio, subtitles "
        f"or data); its video streams: {listed}. Set 'video_stream' / VideoOptions.stream to "
        "one of those, or leave it unset for the best one"
    )


def check_frame_limits(
    width: int, height: int, duration: float | None, options: VideoOptions
) -> None:
    """Refuse a stream whose frame size or duration is above the limits (before decoding).

    Raises:
        ResourceLimitError: ``width * height > max_frame_pixels`` or
            ``duration > max_duration``.
    """
    pixels = width * height
    if pixels > options.max_frame_pixels:
        raise ResourceLimitError(
            f"video frames are {width}x{height} = {pixels} pixels, above the limit of "
            f"{options.max_frame_pixels}; raise VideoOptions.max_frame_pixels if intended"
        )
    if duration is not None and duration > options.max_duration:
        raise ResourceLimitError(
            f"video lasts {duration:.3f} s, above the limit of {options.max_duration:g} s; "
            "raise VideoOptions.max_duration if intended"
        )


def check_indices(indices: Sequence[int], total_frames: int) -> list[int]:
    """Validate a frame plan: ints, non-decreasing, each in ``[0, total_frames)``.

    Returns:
        The indices as a list of Python ints.

    Raises:
        InvalidInputError: a non-integer, decreasing or out-of-range index.
    """
    out: list[int] = []
    previous = 0
    for raw in indices:
        if isinstance(raw, bool) or not isinstance(raw, (int, np.integer)):
            raise InvalidInputError(f"frame indices must be ints, got {type(raw).__name__}")
        index = int(raw)
        if not 0 <= index < total_frames:
            raise InvalidInputError(
                f"frame index {index} is outside [0, {total_frames}) for this video"
            )
        if index < previous:
            raise InvalidInputError(
                f"frame indices must be non-decreasing, got {index} after {previous}"
            )
        previous = index
        out.append(index)
    return out


def known_keyframes(keys: Sequence[int], total_frames: int) -> tuple[int, ...] | None:
    """A backend's keyframe list as ``VideoMetadata.keyframes``: sorted, unique, in range."""
    known = sorted({int(k) for k in keys if 0 <= int(k) < total_frames})
    return tuple(known) or None


def check_keyframe_plan(indices: Sequence[int], metadata: VideoMetadata) -> None:
    """Refuse a keyframe-mode plan that asks for a frame that is not a keyframe.

    Raises:
        UnsupportedFormatError: the stream's keyframes are unknown.
        InvalidInputError: an index that is not in ``metadata.keyframes``.
    """
    keys = metadata.keyframes
    if not keys:
        raise UnsupportedFormatError(
            "VideoOptions(seek='keyframe') needs the stream's keyframe positions, which this "
            f"{metadata.backend} stream does not provide; use seek='exact'"
        )
    known = frozenset(keys)
    for index in indices:
        if index not in known:
            raise InvalidInputError(
                f"frame {index} is not a keyframe; with VideoOptions(seek='keyframe') request "
                "indices from metadata.keyframes (vlprep._sampling.snap_to_keyframes)"
            )


def check_output_size(size: tuple[int, int] | None, backend: str) -> tuple[int, int] | None:
    """Validate a ``frames(..., size=)`` request: ``None`` or positive ``(height, width)``.

    Raises:
        InvalidInputError: a malformed size, or a size for a backend without a scaler.
    """
    if size is None:
        return None
    if backend not in DECODER_RESIZE_BACKENDS:
        raise InvalidInputError(
            f"scaling in the decoder (resize='decoder') needs the PyAV backend; {backend!r} "
            "has no scaler: use backend='pyav', or resize='exact' or 'fast'"
        )
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in size)
    ):
        raise InvalidInputError(f"size must be (height, width) of positive ints, got {size!r:.40}")
    return int(size[0]), int(size[1])


class WalkEstimate:
    """Frames a seek-and-decode-forward reader walks, estimated from its keyframe list.

    For backends that decode inside one call (decord, torchcodec): each target costs the
    frames from the last keyframe at or before it (or from the previous target, when that
    is closer) up to the target.
    """

    def __init__(self, keyframes: Sequence[int], options: VideoOptions) -> None:
        self._keys = sorted(int(k) for k in keyframes) or [0]
        self._limit = options.max_frames_decoded
        self._pos = -1

    def cost(self, targets: Sequence[int]) -> int:
        """Frames walked to reach ``targets`` (sorted, duplicates allowed) from here."""
        total = 0
        for target in sorted(set(targets)):
            k = bisect.bisect_right(self._keys, target) - 1
            key = self._keys[k] if k >= 0 else 0
            start = self._pos + 1 if key <= self._pos < target else key
            total += max(target - start + 1, 0)
            self._pos = target
        return total

    def check(self, walked: int) -> None:
        """Raise :class:`ResourceLimitError` when ``walked`` exceeds ``max_frames_decoded``."""
        if walked > self._limit:
            raise ResourceLimitError(
                f"decoding the requested frames needs more than {self._limit} frames to be "
                "walked; raise VideoOptions.max_frames_decoded or request fewer/closer frames"
            )
