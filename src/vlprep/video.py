"""``fetch_video``: one video element -> float32 ``(T, 3, H, W)`` frames, metadata, sample fps.

Orchestration only: the element is parsed once (``specs``), the frames are planned before
anything is decoded (``sampling``), the container bytes come from the one fetch path
(``sources``), only the planned frames are decoded (``decode.video``) and each frame is
resized as it arrives (``tensors.resize_frame``) into a preallocated output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, cast

import numpy as np
import torch

from vlprep._pool import ordered_map
from vlprep._prefetch import prefetched
from vlprep._stored import pack_video, unpack_video
from vlprep._threads import INTRA_OP_THREADS
from vlprep.cache import MediaCache, digest_arrays, digest_bytes
from vlprep.decode.image import ImageOptions
from vlprep.decode.video import (
    BackendChoice,
    BackendName,
    FrameSeek,
    VideoInput,
    VideoMetadata,
    VideoOptions,
    VideoReader,
    open_video,
)
from vlprep.errors import (
    DecodeError,
    InvalidInputError,
    ResourceLimitError,
    UnsupportedFormatError,
    VlprepError,
)
from vlprep.image import PendingImage, open_pending
from vlprep.limits import CallBudget, CallLimits, element_items
from vlprep.sampling import (
    FRAME_FACTOR,
    FramePlan,
    indices_at_times,
    is_variable_rate,
    plan_frames,
    snap_to_keyframes,
    video_frame_pixels,
)
from vlprep.sizing import (
    ceil_by_factor,
    check_output_keys,
    check_output_size,
    check_patch_size,
    image_pixel_bounds,
    smart_resize,
)
from vlprep.sources import FetchPolicy, fetch, open_local_file
from vlprep.specs import VideoSpec, parse_video_element
from vlprep.tensors import FrameResizer, ResizeMode

__all__ = [
    "FRAMES_SECONDS",
    "fetch_video",
    "fetch_video_item",
    "load_clip",
    "plan_clip",
    "video_target_size",
]

logger = logging.getLogger(__name__)

MAX_LOAD_WORKERS = 8
_DEFAULT_OPTIONS = VideoOptions()
_QWEN_BACKENDS: dict[str, BackendName] = {
    "decord": "decord",
    "torchcodec": "torchcodec",
    "torchvision": "pyav",  # qwen-vl-utils' torchvision reader decoded with PyAV
}

VideoResult = tuple[torch.Tensor, dict[str, Any], float]

FRAMES_SECONDS = "frames_seconds"
"""Metadata key, inside vlprep only, for the sampled frames' presentation times.

A tuple of seconds from the stream's first frame, one per ``frames_indices`` entry, set
when the backend reports them (PyAV and decord from the container's index, torchcodec from
the frames it decoded); absent for frame lists. :func:`fetch_video` drops it:
transformers builds ``VideoMetadata(**metadata)``, which refuses unknown keys.
"""


def video_target_size(
    spec: VideoSpec,
    height: int,
    width: int,
    nframes: int,
    factor: int,
    *,
    options: VideoOptions | None = None,
) -> tuple[int, int]:
    """Frame size for a clip of ``nframes`` frames of ``height x width``, as qwen-vl-utils.

    ``resized_height``/``resized_width`` (both) win, snapped with the image bounds;
    otherwise the per-frame budget of :func:`vlprep.sampling.video_frame_pixels`.

    Raises:
        ResourceLimitError: a frame above ``options.max_output_frame_pixels`` or the clip
            (``nframes`` frames) above ``options.max_output_pixels``, from the keys or the
            result, before anything is allocated.
    """
    options = options or _DEFAULT_OPTIONS
    frame_limit = options.max_output_frame_pixels
    setting = "VideoOptions.max_output_frame_pixels"
    check_output_keys(spec, frame_limit, "video frame", setting)
    if spec.resized_height is not None and spec.resized_width is not None:
        image_low, image_high = image_pixel_bounds(factor)
        size = smart_resize(spec.resized_height, spec.resized_width, factor, image_low, image_high)
    else:
        low, high = video_frame_pixels(
            nframes, factor, spec.min_pixels, spec.max_pixels, spec.total_pixels
        )
        size = smart_resize(height, width, factor, low, high)
    check_output_size(size, frame_limit, "video frame", setting)
    area = size[0] * size[1]
    if nframes * area > options.max_output_pixels:
        raise ResourceLimitError(
            f"the clip would be {nframes} frames of {size[0]}x{size[1]} = "
            f"{nframes * area:,} output pixels, above the limit of "
            f"{options.max_output_pixels:,} (VideoOptions.max_output_pixels); lower "
            "nframes / fps / max_pixels / resized_* or raise the limit"
        )
    return size


def _thread_split(options: VideoOptions) -> tuple[VideoOptions, int]:
    """Split ``torch.get_num_threads()`` between the decoder and the resize.

    Both run at once (:func:`vlprep._prefetch.prefetched`). Left to themselves, FFmpeg
    starts a frame thread per core (plus one) and torch an OpenMP team per core, so on
    2 cores the resize's team waits at its barriers for a thread the decoder has
    preempted, spinning: measured on the 720p benchmark clip, 4.7 CPU s per call against
    3.0 with one decoder thread and a one-thread resize. The decoder gets
    ``options.decode_threads`` when set, else half (one thread in keyframe mode, where it
    decodes one frame per seek); the resize gets the rest (at least 1).
    The same split serves ``resize="decoder"``, where the scaling runs on the decoder's
    thread and torch only copies: giving FFmpeg both threads there measured slower on
    the 120 s benchmark clip (2 frame threads: 2.4-3.3 s against 1.7-2.2 s with one).
    """
    budget = torch.get_num_threads()
    resize_threads = max(1, budget // 2)
    if options.decode_threads:
        return options, max(1, budget - options.decode_threads)
    if options.seek == "keyframe":
        # One decoded frame per keyframe: the decoder idles between seeks and the resizes
        # are the work (measured on the 120 s benchmark clip: 1.16 s -> 1.00 s).
        return dataclasses.replace(options, decode_threads=1), budget
    decode_threads = max(1, budget - resize_threads)
    return dataclasses.replace(options, decode_threads=decode_threads), resize_threads


def _backend(options: VideoOptions) -> BackendName | None:
    """The backend to ask for: the options, else qwen-vl-utils' env override (read now)."""
    if options.backend != "auto":
        return options.backend
    forced = os.environ.get("FORCE_QWENVL_VIDEO_READER")
    if not forced:
        return None
    if forced not in _QWEN_BACKENDS:
        raise InvalidInputError(
            f"FORCE_QWENVL_VIDEO_READER={forced[:20]!r} is not a known backend; "
            f"valid: {sorted(_QWEN_BACKENDS)}"
        )
    return _QWEN_BACKENDS[forced]


@contextlib.contextmanager
def _opened_container(source: object, policy: FetchPolicy | None) -> Iterator[VideoInput]:
    """The container of a video element, as the decoders take it; closed on exit.

    A local path is opened once under the policy and decoded from that open file, never
    reopened by path (the policy's checks hold for the file that is read). URLs and
    ``data:`` URIs are fetched into bytes; bytes and file objects pass through.
    """
    if isinstance(source, str):
        file = open_local_file(source, policy, "video")
        if file is None:
            yield fetch(source, policy, "video").data
            return
        with file:
            yield file
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield fetch(source, policy, "video").data
        return
    if callable(getattr(source, "read", None)):
        yield cast(BinaryIO, source)
        return
    raise InvalidInputError(
        f"unsupported video source of type {type(source).__name__}: give a path, URL, data "
        "URI, bytes, a binary file object, a uint8 array/tensor or a list of frames"
    )


def plan_clip(
    spec: VideoSpec,
    meta: VideoMetadata,
    factor: int,
    seek: FrameSeek = "exact",
    *,
    options: VideoOptions | None = None,
) -> tuple[FramePlan, list[int], tuple[int, int]]:
    """What :func:`fetch_video` will decode from a container: plan, frame indices, frame size.

    The frame plan of qwen-vl-utils' sampling; a variable-frame-rate clip is sampled by time
    (a listed deviation) and the real indices reported. Shared with the header-only
    estimates (:func:`vlprep.inspect`), so an estimate is the loader's own plan.

    With ``seek="keyframe"`` each index moves to the nearest keyframe
    (:func:`_keyframe_plan`): same count and frame size, the keyframes' indices, and the
    plan's ``sample_fps`` rescaled to the time the keyframes span.

    Raises:
        InvalidInputError: a bad element for this clip (see :func:`plan_frames`).
        UnsupportedFormatError: ``seek="keyframe"`` on a stream whose keyframes are unknown.
    """
    plan = plan_frames(
        meta.total_frames,
        meta.fps,
        fps=spec.fps,
        nframes=spec.nframes,
        min_frames=spec.min_frames,
        max_frames=spec.max_frames,
        video_start=spec.video_start,
        video_end=spec.video_end,
    )
    indices = list(plan.indices)
    if meta.frame_times and is_variable_rate(meta.frame_times, meta.fps):
        indices = indices_at_times(meta.frame_times, indices, meta.fps)
    size = video_target_size(spec, meta.height, meta.width, len(indices), factor, options=options)
    if seek == "keyframe":
        indices, sample_fps = _keyframe_plan(indices, meta, plan.sample_fps)
        plan = dataclasses.replace(plan, sample_fps=sample_fps)
    return plan, indices, size


def _keyframe_plan(
    indices: list[int], meta: VideoMetadata, sample_fps: float
) -> tuple[list[int], float]:
    """Planned indices -> nearest keyframes, and the sample fps of the frames returned.

    The plan's rate is ``n / clip * fps``; the returned frames span another stretch of
    time, so the rate is scaled by planned span / returned span (times from
    ``meta.frame_times``, else ``index / fps``). When either span is zero (a single
    keyframe, a one-frame clip) there is nothing to measure and the plan's rate stays.
    """
    if not meta.keyframes:
        raise UnsupportedFormatError(
            "VideoOptions(seek='keyframe') needs the stream's keyframe positions, which this "
            f"{meta.backend} stream does not provide; use seek='exact'"
        )
    times = meta.frame_times
    snapped = snap_to_keyframes(indices, meta.keyframes, times)

    def at(index: int) -> float:
        return times[index] if times else index / meta.fps

    planned = at(indices[-1]) - at(indices[0])
    actual = at(snapped[-1]) - at(snapped[0])
    if planned > 0 and actual > 0:
        sample_fps *= planned / actual
    return snapped, sample_fps


def _resize_kernel(options: VideoOptions) -> ResizeMode:
    """The torch kernel for frames that no video decoder scaled (``"decoder"``: exact)."""
    return "fast" if options.resize == "fast" else "exact"


def _copy_frame(frame: np.ndarray, out: torch.Tensor) -> None:
    """Copy a uint8 ``(h, w, 3)`` frame the decoder already scaled into float32 ``out``."""
    if tuple(frame.shape) != (out.shape[1], out.shape[2], 3):
        raise DecodeError(
            f"the decoder returned a {frame.shape} frame, not the requested "
            f"{(out.shape[1], out.shape[2], 3)}"
        )
    if not frame.flags.writeable:
        frame = np.array(frame)  # torch.from_numpy warns on read-only arrays
    out.copy_(torch.from_numpy(frame).permute(2, 0, 1))


def _stream_options(spec: VideoSpec, options: VideoOptions) -> VideoOptions:
    """``options`` with the element's ``video_stream`` (when set) as ``stream``."""
    if spec.video_stream is None or spec.video_stream == options.stream:
        return options
    return dataclasses.replace(options, stream=spec.video_stream)


def _refuse_stream_key(spec: VideoSpec) -> None:
    """Frame lists and arrays have no streams: refuse a ``video_stream`` key on them.

    Raises:
        InvalidInputError: ``spec.video_stream`` is set.
    """
    if spec.video_stream is not None:
        raise InvalidInputError(
            f"'video_stream' ({spec.video_stream}) picks a stream of a video file; a frame "
            "list or array has none: drop the key"
        )


def _from_container(
    spec: VideoSpec,
    factor: int,
    policy: FetchPolicy | None,
    options: VideoOptions,
    budget: CallBudget,
) -> VideoResult:
    options, resize_threads = _thread_split(_stream_options(spec, options))
    with (
        _opened_container(spec.source, policy) as handle,
        open_video(handle, options, backend=_backend(options)) as reader,
    ):
        meta: VideoMetadata = reader.metadata
        plan, indices, (height, width) = plan_clip(
            spec, meta, factor, options.seek, options=options
        )
        budget.charge(len(indices) * height * width, "video")
        video = torch.empty((len(indices), 3, height, width), dtype=torch.float32)
        if options.resize == "decoder":
            decoded = reader.frames(indices, (height, width))
            place: Callable[[np.ndarray, torch.Tensor], None] = _copy_frame
        else:
            decoded = reader.frames(indices)
            place = FrameResizer(height, width, _resize_kernel(options))
        count = 0
        # Decoding (FFmpeg, GIL released) runs a few frames ahead of the resize (torch),
        # each on its share of the threads (``_thread_split``).
        with (
            contextlib.closing(prefetched(decoded)) as frames,
            INTRA_OP_THREADS.limit(resize_threads),
        ):
            for count, frame in enumerate(frames, start=1):
                k = count - 1
                if k and indices[k] == indices[k - 1]:
                    video[k].copy_(video[k - 1])  # the same frame again (keyframe mode, padding)
                else:
                    place(frame, video[k])
        seconds = _frame_seconds(reader, indices)
    if count != len(indices):
        raise DecodeError(f"the video yielded {count} of {len(indices)} planned frames")
    metadata: dict[str, Any] = {
        "fps": meta.fps,
        "frames_indices": indices,
        "total_num_frames": plan.clip_frames,
        "video_backend": meta.backend,
    }
    if seconds is not None:
        metadata[FRAMES_SECONDS] = seconds
    return video, metadata, plan.sample_fps


def _frame_seconds(reader: VideoReader, indices: Sequence[int]) -> tuple[float, ...] | None:
    """Presentation times of the sampled frames, seconds from the stream's first frame.

    From ``metadata.frame_times`` (PyAV, decord, and either in a child process), else from
    the frames the reader decoded (torchcodec); ``None`` when neither is known.
    """
    times = reader.metadata.frame_times
    if times:
        return tuple(times[i] - times[0] for i in indices)
    seconds = getattr(reader, "decoded_seconds", None)  # ReaderBase's; a custom reader may lack it
    return seconds(indices) if seconds is not None else None


def _frames_from_array(value: Any) -> list[np.ndarray]:
    arr = (
        value.detach().cpu().numpy()
        if type(value).__module__.startswith("torch")
        else np.asarray(value)
    )
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise InvalidInputError(
            f"video arrays must be uint8 (T, H, W, C) or (T, C, H, W), got {arr.dtype} {arr.shape}"
        )
    if arr.shape[-1] not in (1, 3) and arr.shape[1] in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] not in (1, 3) or 0 in arr.shape:
        raise InvalidInputError(f"video arrays need 1 or 3 channels, got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return list(arr)


_WORKER_PIXELS = 1 << 21
"""Largest frame-list item (source pixels) decoded and resized on a pool worker.

2.1 M: a 1080p frame (2,073,600) still is; anything larger is decoded and resized by the
calling thread, one at a time. A decoded frame costs 3 bytes a pixel and its float32 copy
in the exact resize 12 more: eight workers on 1080p frames hold about 300 MB, and a
frame list of 9400x9400 PNGs holds one (1.3 GB) instead of seventeen. On one thread the
allocator also reuses what the previous large frame freed, where eight threads would
each keep their own.
"""


def _frame_error(index: int, exc: VlprepError) -> VlprepError:
    """``exc`` again (same class), its message naming the frame."""
    return type(exc)(f"frame {index} of the frame list: {exc}")


def _from_frame_list(
    spec: VideoSpec,
    items: Sequence[object],
    factor: int,
    policy: FetchPolicy | None,
    options: VideoOptions,
    *,
    image_options: ImageOptions | None,
    budget: CallBudget,
) -> torch.Tensor:
    """Load the items of a frame list on a thread pool, resizing each as it arrives.

    Each worker fetches its item and reads the header; a frame of at most
    ``_WORKER_PIXELS`` is decoded and resized into its slot of the output by that worker,
    a larger one is handed back (still encoded) and decoded by the calling thread, in
    order. Full-size frames alive at once: one per worker, all small, plus one large.
    Item 0 decides the frame size; the other items wait for it before decoding. Returns
    the ``(ceil_by_factor(n, 2), 3, h, w)`` video, padding not yet filled.
    """
    count = len(items)
    total = ceil_by_factor(count, FRAME_FACTOR)
    kernel = _resize_kernel(options)
    sized = threading.Event()
    outputs: list[torch.Tensor] = []  # the video, once item 0 has sized it

    def decode_into(index: int, pending: PendingImage) -> None:
        frame = np.asarray(pending.finish())
        if not index:
            height, width = video_target_size(
                spec, frame.shape[0], frame.shape[1], total, factor, options=options
            )
            budget.charge(total * height * width, "frame-list video")
            outputs.append(torch.empty((total, 3, height, width), dtype=torch.float32))
            sized.set()
        video = outputs[0]
        # Other sizes go to the first frame's target.
        FrameResizer(video.shape[2], video.shape[3], kernel)(frame, video[index])

    def opened(index: int) -> PendingImage | None:
        with budget.timing():
            pending = open_pending(
                items[index], policy=budget.policy(policy), options=image_options
            )
        if pending.pixels > _WORKER_PIXELS:
            return pending  # decoded by the calling thread
        if index:
            sized.wait()
            if not outputs:
                return None  # item 0 failed: its error is raised first, in order
        decode_into(index, pending)
        return None

    def load(index: int) -> PendingImage | None:
        try:
            return opened(index)
        except BaseException as exc:
            if not index:
                sized.set()  # never leave the other items waiting on a failed item 0
            if isinstance(exc, VlprepError):
                raise _frame_error(index, exc) from exc
            raise

    workers = min(MAX_LOAD_WORKERS, count)
    with contextlib.closing(ordered_map(load, count, workers, what="frame-list item")) as loaded:
        try:
            for index, pending in enumerate(loaded):
                if pending is None:
                    continue
                try:
                    decode_into(index, pending)
                except VlprepError as exc:
                    raise _frame_error(index, exc) from exc
        finally:
            sized.set()  # before the pool waits for its workers
    return outputs[0]


def _from_frames(
    spec: VideoSpec,
    factor: int,
    policy: FetchPolicy | None,
    options: VideoOptions,
    image_options: ImageOptions | None,
    *,
    budget: CallBudget,
) -> VideoResult:
    _refuse_stream_key(spec)
    source = spec.source
    arrays: Sequence[object] = source if isinstance(source, (list, tuple)) else []
    if not isinstance(source, (list, tuple)):
        arrays = _frames_from_array(source)
    count = len(arrays)
    if not count:
        raise InvalidInputError("a frame-list video needs at least one frame")
    if count > options.max_list_frames:
        raise ResourceLimitError(
            f"the video has {count} frames, above the limit of "
            f"{options.max_list_frames} (VideoOptions.max_list_frames); subsample it first"
        )
    total = ceil_by_factor(count, FRAME_FACTOR)
    sample_fps = spec.sample_fps if spec.sample_fps is not None else 2.0
    raw_fps = spec.raw_fps if spec.raw_fps is not None else sample_fps
    if isinstance(source, (list, tuple)):
        video = _from_frame_list(
            spec, source, factor, policy, options, image_options=image_options, budget=budget
        )
    else:  # an array or tensor: the frames are in memory already
        first = np.asarray(arrays[0])
        height, width = video_target_size(
            spec, first.shape[0], first.shape[1], total, factor, options=options
        )
        budget.charge(total * height * width, "video")
        video = torch.empty((total, 3, height, width), dtype=torch.float32)
        resize = FrameResizer(height, width, _resize_kernel(options))
        for k, frame in enumerate(arrays):
            resize(np.asarray(frame), video[k])
    video[count:] = video[count - 1]  # pad to an even count with the last frame
    metadata = {
        "fps": raw_fps,
        "frames_indices": list(range(total)),
        "total_num_frames": total / sample_fps * raw_fps,
    }
    return video, metadata, sample_fps


def _load(
    spec: VideoSpec,
    factor: int,
    policy: FetchPolicy | None,
    options: VideoOptions,
    image_options: ImageOptions | None,
    *,
    budget: CallBudget,
) -> VideoResult:
    source = spec.source
    if isinstance(source, (list, tuple)) or hasattr(source, "shape"):
        return _from_frames(spec, factor, policy, options, image_options, budget=budget)
    return _from_container(spec, factor, policy, options, budget)


def _cached(
    cache: MediaCache,
    spec: VideoSpec,
    factor: int,
    *,
    policy: FetchPolicy | None,
    options: VideoOptions,
    image_options: ImageOptions | None,
    budget: CallBudget,
) -> VideoResult:
    """:func:`_load` through ``cache``, keyed by content and every parameter.

    A clip served from the cache was never planned in this call: it is charged to
    ``budget`` by its size once returned.
    """
    source = spec.source
    if isinstance(source, (str, bytes, bytearray, memoryview)):
        data = fetch(source, policy, "video").data
        digest = digest_bytes(data)
        spec_to_load = dataclasses.replace(spec, source=data)
        backend: BackendName | None = _backend(options)
    elif hasattr(source, "shape") and not isinstance(source, (list, tuple)):
        digest = digest_arrays(_frames_from_array(source))
        spec_to_load, backend = spec, None
    else:  # frame lists (each item would need fetching first) and file objects
        return _load(spec, factor, policy, options, image_options, budget=budget)
    key = (
        "video",
        digest,
        dataclasses.replace(spec, source=None),  # every element key
        factor,
        options,  # the whole options object: new fields are part of the key
        backend,  # FORCE_QWENVL_VIDEO_READER, read now
        image_options or ImageOptions(),
    )
    loaded = False

    def load() -> VideoResult:
        nonlocal loaded
        loaded = True
        return _load(spec_to_load, factor, policy, options, image_options, budget=budget)

    result = cache.get_or_load(key, load, pack_video, unpack_video)
    if not loaded:
        frames = result[0]
        budget.charge(frames.shape[0] * frames.shape[2] * frames.shape[3], "video")
    return result


def fetch_video(
    ele: Mapping[str, Any],
    image_patch_size: int = 14,
    return_video_sample_fps: bool = False,
    return_video_metadata: bool = False,
    *,
    policy: FetchPolicy | None = None,
    options: VideoOptions | None = None,
    image_options: ImageOptions | None = None,
    backend: BackendChoice | None = None,
    cache: MediaCache | None = None,
    limits: CallLimits | None = None,
) -> Any:
    """Load the video of one message element, like qwen-vl-utils' ``fetch_video``.

    Args:
        ele: ``{"video": src}`` (or ``video_url``) plus optional ``fps`` or ``nframes``,
            ``min_frames``, ``max_frames``, ``video_start``, ``video_end`` (seconds),
            ``min_pixels``, ``max_pixels``, ``total_pixels``, ``resized_height`` and
            ``resized_width``; for frame lists and arrays ``sample_fps`` and ``raw_fps``.
            ``src``: a path, ``file://``, http(s) or ``data:video/...`` URL, bytes, a binary
            file object, a uint8 array/tensor ``(T, H, W, C)``/``(T, C, H, W)``, or a list of
            frames (anything an image element accepts).
        image_patch_size: 14 (Qwen2/2.5-VL) or 16 (Qwen3-VL); sides become multiples of
            ``2 * image_patch_size``.
        return_video_sample_fps: also return the sample fps.
        return_video_metadata: return ``(video, metadata)``; metadata has ``fps`` (native),
            ``frames_indices`` (absolute), ``total_num_frames`` (clip length) and
            ``video_backend`` (not for frame lists, as upstream).
        policy: fetch rules (video byte cap and deadline).
        options: decoder, limits and resize mode.
        image_options: decode rules for frame-list images.
        backend: ``"pyav"``, ``"decord"``, ``"torchcodec"`` or ``"auto"``; overrides
            ``options.backend``.
        cache: reuse the frames of an earlier call with the same content and parameters
            (see :class:`vlprep.MediaCache`). Paths, URLs, ``data:`` URIs and bytes are
            fetched whole and hashed on every call (a local file is then decoded from
            those bytes); arrays and tensors are hashed; frame lists and file objects are
            not cached. ``None``: no caching.
        limits: :class:`vlprep.CallLimits` for this call (default ``CallLimits()``): a
            frame list counts one item per frame against ``max_items`` (checked before any
            fetch), the clip's output pixels count against ``max_total_pixels``, and every
            fetch (each frame of a frame list) gets the time left to ``deadline``.

    Returns:
        ``video`` — float32 tensor ``(T, 3, H, W)`` with integer values 0..255, T even —
        or ``(video, metadata)``, each optionally paired with ``sample_fps``:
        ``(final, sample_fps)``.

    Raises:
        InvalidInputError, SourceNotAllowedError, FetchError, DecodeError,
        UnsupportedFormatError, ResourceLimitError, BackendUnavailableError.
    """
    video, metadata, sample_fps = load_clip(
        ele,
        image_patch_size,
        policy=policy,
        options=options,
        image_options=image_options,
        backend=backend,
        cache=cache,
        limits=limits,
    )
    metadata.pop(FRAMES_SECONDS, None)  # not a transformers VideoMetadata field
    final: Any = (video, metadata) if return_video_metadata else video
    if return_video_sample_fps:
        return final, sample_fps
    return final


def load_clip(
    ele: Mapping[str, Any],
    image_patch_size: int = 14,
    *,
    policy: FetchPolicy | None = None,
    options: VideoOptions | None = None,
    image_options: ImageOptions | None = None,
    backend: BackendChoice | None = None,
    cache: MediaCache | None = None,
    limits: CallLimits | None = None,
) -> VideoResult:
    """:func:`fetch_video`'s ``((video, metadata), sample_fps)`` as one tuple, with the times.

    Same arguments and errors as :func:`fetch_video`; the metadata also holds
    :data:`FRAMES_SECONDS` where the backend reports the frames' presentation times
    (what :func:`vlprep.build_inputs` writes in Qwen3-VL's ``<t seconds>`` text).

    Returns:
        float32 ``(T, 3, H, W)`` frames, a fresh metadata dict, the sample fps.
    """
    check_patch_size(image_patch_size)
    budget = CallBudget(limits)
    budget.check_items(element_items(ele))
    return fetch_video_item(
        ele,
        image_patch_size * 2,
        policy=policy,
        options=options,
        image_options=image_options,
        cache=cache,
        budget=budget,
        backend=backend,
    )


def fetch_video_item(
    ele: Mapping[str, Any],
    factor: int,
    *,
    policy: FetchPolicy | None,
    options: VideoOptions | None,
    image_options: ImageOptions | None,
    cache: MediaCache | None,
    budget: CallBudget,
    backend: BackendChoice | None = None,
) -> VideoResult:
    """One video element on the ``factor`` grid, within a call's budget: ``(video, metadata,
    sample_fps)``.

    What :func:`fetch_video` runs once its arguments are checked; the calls that load many
    items pass their shared :class:`vlprep.limits.CallBudget` (items already counted).

    Raises:
        As :func:`fetch_video`.
    """
    spec = parse_video_element(ele)
    options = options or _DEFAULT_OPTIONS
    if backend is not None:
        options = dataclasses.replace(options, backend=backend)
    with budget.timing():
        policy = budget.policy(policy)
        if cache is None:
            return _load(spec, factor, policy, options, image_options, budget=budget)
        return _cached(
            cache,
            spec,
            factor,
            policy=policy,
            options=options,
            image_options=image_options,
            budget=budget,
        )
