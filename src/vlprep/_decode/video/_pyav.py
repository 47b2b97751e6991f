"""PyAV backend: the default. Only the planned frames are decoded, within limits.

Opening: the container was sniffed already (MP4/MOV, Matroska/WebM, AVI); FFmpeg is told
that demuxer explicitly (no probing), gets the data through a Python file object, may open
no nested URL (``protocol_whitelist`` ``none`` and an ``io_open`` that refuses), and may
only open allow-listed decoders, even inside ``avformat_find_stream_info``. Then the
stream, codec, frame size and duration are checked, the packets are indexed without
decoding (:mod:`._pyav_index`), and one frame is decoded to read the display matrix.

Keyframe mode (``VideoOptions(seek="keyframe")``): each requested keyframe is reached with
one seek, its packet is found by timestamp (demux only), sent to the decoder alone and
drained out of it, and the decoder is flushed for the next one: one decoded frame per
distinct index, whatever the GOP length. Slice threads only there, since frame threads
would hold the one packet back until more arrive.

Decoder scaling (``frames(..., size=)``, ``resize="decoder"``): swscale scales the decoded
YUV planes with a bicubic filter (widened when it downscales, so antialiased like the exact
resize), then converts them to RGB at the target size with the same converter the exact
path uses at full size. Scaling the planes is SIMD work on 1.5 bytes per pixel; swscale's
scaled packed-RGB output measured 3-8x slower and biased by up to half a level.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, cast

import numpy as np

from vlprep._decode.video._base import ReaderBase
from vlprep._decode.video._pyav_index import (
    FrameIndex,
    header_seconds,
    scan_index,
    stream_timing,
)
from vlprep._decode.video._rotation import IDENTITY, Display, display_from_matrix
from vlprep._decode.video._source import Container, OpenedSource
from vlprep._decode.video._types import (
    ACCEPTED_CODECS,
    VideoMetadata,
    VideoOptions,
    check_frame_limits,
    check_indices,
    check_keyframe_plan,
    check_output_size,
    stream_error,
)
from vlprep._errors import DecodeError, ResourceLimitError, UnsupportedFormatError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

__all__ = ["PyAVReader", "probe_streams"]

logger = logging.getLogger(__name__)

_DEMUXERS = {"mov": "mov,mp4,m4a,3gp,3g2,mj2", "matroska": "matroska,webm", "avi": "avi"}
# Decoder implementation names FFmpeg may pick for ACCEPTED_CODECS (codec_whitelist matches these).
_DECODERS = (
    "h264,hevc,vp8,vp9,libvpx,libvpx-vp9,av1,libdav1d,libaom-av1,mpeg4,mjpeg,"
    "mpeg1video,mpeg2video,theora"
)
_MAX_BAD_PACKETS = 32  # consecutive packets that fail to decode before giving up
# Seek forward only when that skips at least this many frames. One decoder thread loses
# nothing to a seek, so skipping a few frames already pays (measured on a 720p GOP-60 clip:
# 3 decodes 8% fewer frames than 12, at equal cost per frame). Frame threads hold
# ``thread_count - 1`` frames in flight that a seek throws away; with FFmpeg's automatic
# thread count (one per core plus one) the margin stays at 12.
_SEEK_GAIN = 3
_SEEK_GAIN_AUTO_THREADS = 12
_PACKET_SLACK = 64  # packets walked beyond max_frames_decoded (decoder delay, skipped data)


def _refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> NoReturn:
    raise PermissionError("nested open refused by vlprep")


def _describe(stream: Any) -> str:
    """``"3 (h264 480x270)"``: a video stream's index, codec and coded size."""
    ctx = stream.codec_context
    if ctx is None:
        return f"{stream.index} (no decoder)"
    return f"{stream.index} ({ctx.name} {ctx.width}x{ctx.height})"


def _video_stream(container: InputContainer, wanted: int | None) -> VideoStream:
    """The stream to read: index ``wanted``, else FFmpeg's best video stream.

    Raises:
        DecodeError: the file has no video stream (``wanted`` unset).
        InvalidInputError: ``wanted`` is absent or not a video stream; the message lists
            the video streams there are.
    """
    if wanted is None:
        best = container.streams.best("video")
        if best is None:
            raise DecodeError("no video stream in this file (audio-only or empty container)")
        return cast("VideoStream", best)
    for stream in container.streams:
        if stream.index == wanted and stream.type == "video":
            return cast("VideoStream", stream)
    raise stream_error(wanted, [_describe(s) for s in container.streams.video])


def probe_streams(file: BinaryIO, kind: Container) -> tuple[int | None, list[tuple[int, str]]]:
    """FFmpeg's best video stream and every video stream ``(index, description)`` of a file.

    Header only, opened as :class:`PyAVReader` opens it (forced demuxer, no nested opens,
    allow-listed decoders); ``file`` is rewound before and after. For backends that cannot
    choose a stream themselves (decord).

    Raises:
        DecodeError: the container cannot be opened.
        UnsupportedFormatError: it references other files or URLs.
    """
    file.seek(0)
    container = _open_guarded(file, kind)
    try:
        best = container.streams.best("video")
        streams = [(int(s.index), _describe(s)) for s in container.streams.video]
        return (None if best is None else int(best.index)), streams
    finally:
        container.close()
        file.seek(0)


def _open_guarded(file: BinaryIO, kind: Container) -> InputContainer:
    """``av.open`` as every PyAV open here must be: the sniffed demuxer forced, no nested
    opens (playlists, references), only allow-listed decoders.

    Raises:
        UnsupportedFormatError: the container references other files or URLs.
        ResourceLimitError: out of memory while opening.
        DecodeError: corrupt, truncated or not a video.
    """
    import av

    try:
        return av.open(
            file,
            mode="r",
            format=kind,
            options={"codec_whitelist": _DECODERS},
            container_options={"protocol_whitelist": "none", "format_whitelist": kind},
            io_open=_refuse_nested_open,
        )
    except PermissionError as exc:
        raise UnsupportedFormatError(
            "the container references other files or URLs; refused"
        ) from exc
    except MemoryError as exc:
        raise _out_of_memory("open the video") from exc
    except _av_errors() as exc:
        raise DecodeError(
            f"cannot open the video: the {kind} data is corrupt, truncated or not a video"
        ) from exc


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.error.FFmpegError, OSError, ValueError, EOFError, RuntimeError, MemoryError)


def _out_of_memory(what: str) -> ResourceLimitError:
    return ResourceLimitError(
        f"not enough memory to {what} (an address-space limit such as "
        "VideoOptions.isolate_memory, or the machine)"
    )


class _Decoded:
    __slots__ = ("array", "frame", "pos", "size")

    def __init__(self, frame: VideoFrame, pos: int | None) -> None:
        self.frame = frame
        self.pos = pos
        self.array: np.ndarray | None = None
        self.size: tuple[int, int] | None = None  # what ``array`` was scaled to


class PyAVReader(ReaderBase):
    """A video opened with PyAV. See :class:`vlprep._decode.video.VideoReader`.

    Attributes:
        metadata: the stream's :class:`VideoMetadata` (``backend="pyav"``).
        frames_decoded: frames the decoder produced so far (all calls, including the
            first frame decoded at open); tests use it to check that plans stay sparse.
    """

    metadata: VideoMetadata
    frames_decoded: int

    def __init__(self, opened: OpenedSource, kind: Container, options: VideoOptions) -> None:
        self._opened = opened
        self._options = options
        self._container: InputContainer | None = None
        self.frames_decoded = 0
        self._pending: deque[VideoFrame] = deque()
        self._cur: _Decoded | None = None
        self._pos: int | None = None
        self._eof = True
        self._resync = False
        self._bad_packets = 0
        self._call_frames = 0
        self._call_packets = 0
        self._display: Display = IDENTITY
        self._seek_gain = _SEEK_GAIN_AUTO_THREADS
        self._keyframe_mode = options.seek == "keyframe"
        self._size: tuple[int, int] | None = None
        self._scalers: tuple[Any, Any] | None = None
        try:
            self._open(kind)
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------
    def _open(self, kind: Container) -> None:
        import av

        container = _open_guarded(self._opened.file, kind)
        self._container = container
        if container.format.name not in (kind, _DEMUXERS[kind]):
            raise UnsupportedFormatError(
                f"container format {container.format.name[:40]!r} is not accepted"
            )
        stream = _video_stream(container, self._options.stream)
        self._stream = stream
        ctx = stream.codec_context
        if ctx is None:  # PyAV#2344: decoding such a stream can crash the interpreter
            raise DecodeError(
                "the video stream has no usable decoder (unknown codec or truncated file)"
            )
        codec = ctx.codec.canonical_name
        if codec not in ACCEPTED_CODECS:
            raise UnsupportedFormatError(
                f"video codec {codec[:32]!r} is not accepted; accepted: {sorted(ACCEPTED_CODECS)}"
            )
        width, height = int(ctx.width), int(ctx.height)
        if width < 1 or height < 1:
            raise DecodeError(f"the video stream header has an empty frame size {width}x{height}")
        header_duration = header_seconds(container, stream)
        check_frame_limits(width, height, header_duration, self._options)
        for other in container.streams:
            if other.index != stream.index:
                other.discard = av.stream.Discard.all  # skip their data while demuxing
        self._index: FrameIndex = scan_index(container, stream, kind != "avi", self._options)
        timing = stream_timing(stream, self._index, header_duration)
        check_frame_limits(width, height, max(timing.duration, timing.span), self._options)
        ctx.options = {"max_pixels": str(self._options.max_frame_pixels)}
        # Keyframe mode decodes lone packets: frame threads would only add latency.
        ctx.thread_type = "SLICE" if self._keyframe_mode else "AUTO"
        threads = self._options.decode_threads
        if threads:
            ctx.thread_count = threads
        self._seek_gain = _SEEK_GAIN + threads - 1 if threads else _SEEK_GAIN_AUTO_THREADS
        first = self._first_frame()
        if not self._index.by_pts and ctx.has_b_frames:
            # AVI has no presentation timestamps: with frame reordering (open GOPs drop
            # leading frames after a seek) counting from a keyframe would be off, so
            # these streams are decoded sequentially from the start.
            self._index = dataclasses.replace(self._index, key_positions=(), key_seek=())
        self._display = display_from_matrix(_display_matrix(first))
        if self._display.swaps:
            width, height = height, width
        self.metadata = VideoMetadata(
            backend="pyav",
            stream_index=int(stream.index),
            fps=timing.fps,
            total_frames=len(self._index),
            duration=timing.duration,
            width=width,
            height=height,
            rotation=self._display.rotation,
            codec=codec,
            pix_fmt=ctx.pix_fmt,
            frame_times=timing.frame_times,
            keyframes=tuple(self._index.key_positions) or None,
        )

    @property
    def _open_container(self) -> InputContainer:
        if self._container is None:
            raise DecodeError("the video reader is closed")
        return self._container

    def _first_frame(self) -> VideoFrame:
        self._seek(None)
        self._call_frames = self._call_packets = 0
        item = self._decode_next()
        while item is not None and item.pos is None:
            item = self._decode_next()
        if item is None:
            raise DecodeError("no decodable video frames")
        self._cur = item
        return item.frame

    # -- decoding ------------------------------------------------------------------------
    def _seek(self, key: tuple[int, int] | None) -> None:
        """Seek to a keyframe ``(position, timestamp)``, or to the start when ``None``."""
        container = self._open_container
        if key is None:
            known = [s for s in self._index.stamps if s is not None] + list(self._index.key_seek)
            position, ts = 0, min(known, default=0)
        else:
            position, ts = key
        try:
            container.seek(ts, stream=self._stream, backward=True)
        except _av_errors():
            try:
                container.seek(ts, stream=self._stream, backward=False)
            except _av_errors() as exc:
                raise DecodeError("cannot seek in the video stream (corrupt index)") from exc
        self._demux = container.demux(self._stream)
        self._pending.clear()
        self._cur = None
        self._pos = position - 1
        self._eof = False
        self._resync = not self._index.by_pts

    def _read_packet(self) -> Any:
        try:
            packet = next(self._demux)
        except StopIteration:
            return None
        except _av_errors() as exc:
            logger.debug("demuxing stopped early: %s", type(exc).__name__)
            return None
        if packet.size == 0:
            return None
        self._call_packets += 1
        if self._call_packets > self._options.max_frames_decoded + _PACKET_SLACK:
            self._over_budget()
        if self._resync and packet.dts is not None:
            self._resync = False
            position = self._index.position_of_dts(int(packet.dts))
            if position is not None:
                self._pos = position - 1
        return packet

    def _decode_next(self) -> _Decoded | None:
        """The next decoded frame and its index (``None`` when unknown), or ``None`` at EOF."""
        while not self._pending:
            if self._eof:
                return None
            packet = self._read_packet()
            if packet is None:
                self._eof = True
            try:
                frames = self._stream.decode(packet)
                self._bad_packets = 0
            except MemoryError as exc:  # not a corrupt packet: stop, do not skip it
                raise _out_of_memory("decode a video frame") from exc
            except _av_errors() as exc:
                self._bad_packets += 1
                logger.debug("a video packet failed to decode: %s", type(exc).__name__)
                if self._bad_packets > _MAX_BAD_PACKETS:
                    raise DecodeError(
                        f"the video data is corrupt: {_MAX_BAD_PACKETS} consecutive packets "
                        "failed to decode"
                    ) from exc
                continue
            self._pending.extend(frames)
        frame = self._pending.popleft()
        self.frames_decoded += 1
        self._call_frames += 1
        if self._call_frames > self._options.max_frames_decoded:
            self._over_budget()
        if self._index.by_pts and frame.pts is not None:
            position: int | None = self._index.position_of_pts(int(frame.pts))
        else:
            position = None if self._pos is None else self._pos + 1
        if position is not None:
            self._pos = position
        return _Decoded(frame, position)

    def _over_budget(self) -> NoReturn:
        raise ResourceLimitError(
            f"decoding the requested frames needs more than "
            f"{self._options.max_frames_decoded} frames to be walked; raise "
            "VideoOptions.max_frames_decoded or request fewer/closer frames"
        )

    def _needs_seek(self, target: int) -> tuple[bool, tuple[int, int] | None]:
        key = self._index.keyframe_at_or_before(target)
        pos = self._pos
        if self._eof and not self._pending:
            return True, key
        if pos is None or pos >= target:
            return True, key
        return (key is not None and key[0] > pos + self._seek_gain), key

    def _frame_at(self, target: int) -> np.ndarray:
        cur = self._cur
        if cur is not None and cur.pos == target:
            return self._array(cur)
        seek, key = self._needs_seek(target)
        if seek:
            self._seek(key)
        just_seeked = seek
        while True:
            item = self._decode_next()
            if item is None:
                return self._past_end(target)
            self._cur = item
            if item.pos is None:
                continue
            if item.pos == target:
                return self._array(item)
            if item.pos > target:
                if just_seeked and key is not None:  # landed past the target: step back
                    key = self._index.keyframe_before(key)
                    self._seek(key)
                    continue
                logger.debug("frame %d was not produced; using frame %d", target, item.pos)
                return self._array(item)
            just_seeked = False

    def _keyframe_at(self, target: int) -> np.ndarray:
        """Keyframe mode: seek to keyframe ``target``, decode its packet alone."""
        cur = self._cur
        if cur is not None and cur.pos == target:
            return self._array(cur)
        key = self._index.keyframe_at_or_before(target)
        stamp = self._index.stamps[target]
        packet = None
        for start in (key, None):  # its own seek point; the stream start if that misses
            self._seek(start)
            packet = self._packet_with(stamp)
            if packet is not None:
                break
        if packet is None:
            raise DecodeError(
                f"keyframe {target} was not found in the stream (inconsistent index); "
                "use VideoOptions(seek='exact')"
            )
        frame = self._decode_alone(packet, target)
        self._eof = True  # the demuxer position no longer matches the decoder: seek next
        self._cur = _Decoded(frame, target)
        self._pos = target
        return self._array(self._cur)

    def _packet_with(self, stamp: int | None) -> Any:
        """Demux (no decoding) to the packet stamped ``stamp``; ``None`` once it is passed."""
        by_pts = self._index.by_pts
        while True:
            packet = self._read_packet()
            if packet is None:
                return None
            own = packet.pts if by_pts else packet.dts
            if own is not None and own == stamp:
                return packet
            # dts <= pts for every packet: a later dts means the keyframe went by.
            if stamp is not None and packet.dts is not None and packet.dts > stamp:
                return None

    def _decode_alone(self, packet: Any, target: int) -> VideoFrame:
        """Decode one packet with an empty decoder, drain it and flush it for the next."""
        stream = self._stream
        try:
            frames = [*stream.decode(packet), *stream.decode(None)]
        except MemoryError as exc:
            raise _out_of_memory("decode a video frame") from exc
        except _av_errors() as exc:
            raise DecodeError(
                f"keyframe {target} failed to decode (corrupt data); use VideoOptions(seek='exact')"
            ) from exc
        finally:
            ctx = stream.codec_context
            if ctx is not None:
                ctx.flush_buffers()
        self.frames_decoded += len(frames)
        self._call_frames += len(frames)
        if self._call_frames > self._options.max_frames_decoded:
            self._over_budget()
        for frame in frames:
            if not self._index.by_pts or frame.pts is None:
                return frame
            if self._index.position_of_pts(int(frame.pts)) == target:
                return frame
        raise DecodeError(
            f"frame {target} is marked as a keyframe but does not decode on its own (the "
            "container's keyframe flags are wrong); use VideoOptions(seek='exact')"
        )

    def _past_end(self, target: int) -> np.ndarray:
        last = self._cur
        if last is None:
            raise DecodeError(
                f"frame {target} of {len(self._index)} could not be decoded (corrupt or "
                "truncated video)"
            )
        logger.warning(
            "video frame %d of %d could not be decoded (truncated or corrupt); repeating "
            "the last decoded frame",
            target,
            len(self._index),
        )
        return self._array(last)

    def _array(self, item: _Decoded) -> np.ndarray:
        if item.array is None or item.size != self._size:
            try:
                rgb = self._rgb(item.frame)
            except MemoryError as exc:
                raise _out_of_memory("convert a video frame to RGB") from exc
            except _av_errors() as exc:
                raise DecodeError("cannot convert a decoded video frame to RGB") from exc
            item.array = np.ascontiguousarray(self._display.transform(rgb))
            item.size = self._size
        return item.array

    def _rgb(self, frame: VideoFrame) -> np.ndarray:
        """The frame as stored, in RGB: full size, or scaled to ``self._size`` by swscale."""
        if self._size is None:
            return frame.to_ndarray(format="rgb24")
        from av.video.reformatter import Interpolation, VideoReformatter

        height, width = self._size
        if self._display.swaps:  # the target is the displayed size: scale the stored one
            height, width = width, height
        if self._scalers is None:  # one each: swscale keeps its context between frames
            self._scalers = (VideoReformatter(), VideoReformatter())
        planes, packer = self._scalers
        scaled = planes.reformat(
            frame, width=width, height=height, interpolation=Interpolation.BICUBIC, threads=1
        )
        rgb: np.ndarray = packer.reformat(scaled, format="rgb24", threads=1).to_ndarray()
        return rgb

    # -- public --------------------------------------------------------------------------
    def frames(
        self, indices: Sequence[int], size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        """Yield one ``uint8`` ``(H, W, 3)`` RGB array per index, in displayed orientation.

        Args:
            indices: non-decreasing frame indices in ``[0, total_frames)``; repeats allowed.
                In keyframe mode (``VideoOptions(seek="keyframe")``) each must be one of
                ``metadata.keyframes``.
            size: displayed ``(height, width)`` to scale each frame to with swscale
                (bicubic on the YUV planes, then RGB); ``None``: full size.

        Raises:
            InvalidInputError: a bad plan or size (raised here, before decoding).
            UnsupportedFormatError: keyframe mode on a stream without known keyframes.
            DecodeError: the data cannot be decoded.
            ResourceLimitError: more than ``max_frames_decoded`` frames would be walked.
        """
        if self._container is None:
            raise DecodeError("the video reader is closed")
        plan = check_indices(indices, len(self._index))
        scaled = check_output_size(size, "pyav")
        if self._keyframe_mode:
            check_keyframe_plan(plan, self.metadata)
        return self._frames(plan, scaled)

    def _frames(self, plan: list[int], size: tuple[int, int] | None) -> Iterator[np.ndarray]:
        self._call_frames = self._call_packets = 0
        self._size = size
        step = self._keyframe_at if self._keyframe_mode else self._frame_at
        for target in plan:
            if self._container is None:
                raise DecodeError("the video reader was closed during iteration")
            yield step(target)

    def close(self) -> None:
        """Close the container and the file we opened (idempotent)."""
        container, self._container = self._container, None
        self._pending.clear()
        self._cur = None
        if container is not None:
            try:
                container.close()
            except _av_errors():
                logger.debug("error while closing the container", exc_info=True)
        self._opened.close()


def _display_matrix(frame: VideoFrame) -> bytes | None:
    from av.sidedata.sidedata import Type

    side_data: Any = frame.side_data  # a SideDataContainer (the stub says SideData)
    for side in side_data:
        if side.type == Type.DISPLAYMATRIX:
            return bytes(side)
    return None
