"""``fetch_video``: one video element -> float32 ``(T, 3, H, W)`` frames, metadata, sample fps.

Orchestration only: the element is parsed once (``specs``), the frames are planned before
anything is decoded (``planning``), the container bytes come from the one fetch path
(``sources``), only the planned frames are decoded (``decode.video``) and each frame is
resized as it arrives (``tensors.resize_frame``) into a preallocated output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from vlprep._cache import MediaCache, digest_arrays, digest_bytes
from vlprep._decode.image import ImageOptions
from vlprep._decode.video import (
    BackendChoice,
    BackendName,
    VideoMetadata,
    VideoOptions,
    VideoReader,
    open_video,
)
from vlprep._errors import DecodeError, VlprepError
from vlprep._image import PendingImage, open_pending
from vlprep._keywords import checked, renamed
from vlprep._limits import CallBudget, CallLimits, element_items
from vlprep._planning import (
    plan_clip,
    plan_frame_list,
    qwen_vl_utils_preset,
    refuse_stream_key,
    stream_options,
    video_plan_key,
    video_target_size,
)
from vlprep._pool import ordered_map
from vlprep._prefetch import prefetched
from vlprep._presets import Preset, refuse_video
from vlprep._sampling import FramePlan
from vlprep._sizing import check_patch_size
from vlprep._sources import FetchPolicy, fetch
from vlprep._specs import VideoSpec, parse_video_element
from vlprep._stored import pack_video, unpack_video
from vlprep._tensors import FrameResizer, ResizeMode
from vlprep._threads import INTRA_OP_THREADS
from vlprep._video_input import frames_from_array, opened_container, video_backend

__all__ = [
    "FRAMES_SECONDS",
    "LoadedVideo",
    "fetch_video",
    "fetch_video_item",
    "fetch_video_result",
    "load_clip",
    "load_planned_clip",
    "load_planned_frames",
    "plan_clip",
    "probe_clip",
    "video_target_size",
]

logger = logging.getLogger(__name__)

MAX_LOAD_WORKERS = 8
_DEFAULT_OPTIONS = VideoOptions()


class LoadedVideo(NamedTuple):
    """One loaded video: what :func:`vlprep.load_clip` returns and ``build_inputs`` consumes.

    A named tuple, so ``frames, metadata, sample_fps = clip`` keeps working.

    Attributes:
        frames: float32 ``(T, 3, H, W)``, values 0..255 (not normalised), ``H`` and ``W``
            multiples of the preset's factor, ``T`` even (a multiple of the temporal patch).
        metadata: a fresh dict in qwen-vl-utils' keys (``fps``, ``frames_indices``,
            ``total_num_frames``, ``video_backend``, ...), plus :data:`FRAMES_SECONDS` where
            the backend reports presentation times.
        sample_fps: frames per second of the sampled frames (what transformers reads as
            ``fps``/``second_per_grid_ts``).
    """

    frames: torch.Tensor
    metadata: dict[str, Any]
    sample_fps: float


VideoResult = LoadedVideo  # the name the loaders used before the class existed

FRAMES_SECONDS = "frames_seconds"
"""Metadata key, inside vlprep only, for the sampled frames' presentation times.

A tuple of seconds from the stream's first frame, one per ``frames_indices`` entry, set
when the backend reports them (PyAV and decord from the container's index, torchcodec from
the frames it decoded); absent for frame lists. :func:`fetch_video` drops it:
transformers builds ``VideoMetadata(**metadata)``, which refuses unknown keys.
"""


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


ClipPlan = tuple[FramePlan, list[int], tuple[int, int]]
"""What :func:`vlprep._planning.plan_clip` returns: frame plan, indices, frame size."""


def _from_container(
    spec: VideoSpec,
    preset: Preset,
    policy: FetchPolicy | None,
    options: VideoOptions,
    budget: CallBudget,
    *,
    read_env: bool,
    planned: ClipPlan | None = None,
) -> VideoResult:
    """Decode the planned frames of a container; ``planned`` replaces the plan computed
    from its metadata (a :class:`vlprep._plans.Plan` replayed)."""
    options, resize_threads = _thread_split(stream_options(spec, options))
    with (
        opened_container(spec.source, policy) as handle,
        open_video(handle, options, backend=video_backend(options, read_env)) as reader,
    ):
        meta: VideoMetadata = reader.metadata
        plan, indices, (height, width) = (
            plan_clip(spec, meta, preset.factor, options.seek, options=options, preset=preset)
            if planned is None
            else planned
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
    return LoadedVideo(video, metadata, plan.sample_fps)


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


def probe_clip(
    spec: VideoSpec,
    preset: Preset,
    policy: FetchPolicy | None,
    options: VideoOptions,
) -> tuple[VideoMetadata, ClipPlan, tuple[float, ...] | None]:
    """Open a container and plan it as :func:`fetch_video` would, decoding no frame.

    Returns the container metadata, :func:`vlprep._planning.plan_clip`'s plan, and the
    sampled frames' times where the container's index gives them (``None`` otherwise:
    torchcodec knows them only once decoded).
    """
    options = stream_options(spec, options)
    with (
        opened_container(spec.source, policy) as handle,
        open_video(handle, options, backend=video_backend(options)) as reader,
    ):
        meta: VideoMetadata = reader.metadata
        planned = plan_clip(spec, meta, preset.factor, options.seek, options=options, preset=preset)
        times = meta.frame_times
        seconds = tuple(times[i] - times[0] for i in planned[1]) if times else None
    return meta, planned, seconds


def load_planned_clip(
    spec: VideoSpec,
    planned: ClipPlan,
    preset: Preset,
    *,
    policy: FetchPolicy | None,
    options: VideoOptions | None,
    budget: CallBudget,
) -> VideoResult:
    """Decode exactly ``planned``'s frames of a container at its size (a plan's replay).

    Never cached: a cache entry is keyed by the element, not by a plan.
    """
    return _from_container(
        spec, preset, policy, options or _DEFAULT_OPTIONS, budget, read_env=False, planned=planned
    )


def load_planned_frames(
    spec: VideoSpec,
    size: tuple[int, int],
    preset: Preset,
    *,
    policy: FetchPolicy | None,
    options: VideoOptions | None,
    image_options: ImageOptions | None,
    budget: CallBudget,
) -> VideoResult:
    """A frame list or array with every frame resized to ``size`` (a plan's replay)."""
    return _from_frames(
        spec,
        preset,
        policy,
        options or _DEFAULT_OPTIONS,
        image_options,
        budget=budget,
        size=size,
    )


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
    preset: Preset,
    policy: FetchPolicy | None,
    options: VideoOptions,
    *,
    total: int,
    image_options: ImageOptions | None,
    budget: CallBudget,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Load the items of a frame list on a thread pool, resizing each as it arrives.

    Each worker fetches its item and reads the header; a frame of at most
    ``_WORKER_PIXELS`` is decoded and resized into its slot of the output by that worker,
    a larger one is handed back (still encoded) and decoded by the calling thread, in
    order. Full-size frames alive at once: one per worker, all small, plus one large.
    Item 0 decides the frame size; the other items wait for it before decoding. Returns
    the ``(ceil_by_factor(n, 2), 3, h, w)`` video, padding not yet filled. ``size``: the
    frame size to use instead of item 0's target (a plan's replay).
    """
    count = len(items)
    kernel = _resize_kernel(options)
    sized = threading.Event()
    outputs: list[torch.Tensor] = []  # the video, once item 0 has sized it

    def decode_into(index: int, pending: PendingImage) -> None:
        # Fetched before the deadline, decoded after it? No: a decode is the costly part.
        budget.check_deadline(f"decoding frame-list item {index}")
        frame = np.asarray(pending.finish())
        if not index:
            height, width = size or video_target_size(
                spec,
                frame.shape[0],
                frame.shape[1],
                total,
                preset.factor,
                options=options,
                preset=preset,
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
    preset: Preset,
    policy: FetchPolicy | None,
    options: VideoOptions,
    image_options: ImageOptions | None,
    *,
    budget: CallBudget,
    size: tuple[int, int] | None = None,
) -> VideoResult:
    """A frame list or array; ``size`` replaces the computed frame size (a plan's replay)."""
    refuse_stream_key(spec)
    source = spec.source
    arrays: Sequence[object] = source if isinstance(source, (list, tuple)) else []
    if not isinstance(source, (list, tuple)):
        arrays = frames_from_array(source)
    plan = plan_frame_list(spec, len(arrays), options)
    count, total = plan.count, plan.total
    if isinstance(source, (list, tuple)):
        video = _from_frame_list(
            spec,
            source,
            preset,
            policy,
            options,
            total=total,
            image_options=image_options,
            budget=budget,
            size=size,
        )
    else:  # an array or tensor: the frames are in memory already
        first = np.asarray(arrays[0])
        height, width = size or video_target_size(
            spec,
            first.shape[0],
            first.shape[1],
            total,
            preset.factor,
            options=options,
            preset=preset,
        )
        budget.charge(total * height * width, "video")
        video = torch.empty((total, 3, height, width), dtype=torch.float32)
        resize = FrameResizer(height, width, _resize_kernel(options))
        for k, frame in enumerate(arrays):
            resize(np.asarray(frame), video[k])
    video[count:] = video[count - 1]  # pad to an even count with the last frame
    metadata = {
        "fps": plan.raw_fps,
        "frames_indices": list(plan.indices),
        "total_num_frames": plan.clip_frames,
    }
    return LoadedVideo(video, metadata, plan.sample_fps)


def _load(
    spec: VideoSpec,
    preset: Preset,
    policy: FetchPolicy | None,
    options: VideoOptions,
    image_options: ImageOptions | None,
    *,
    budget: CallBudget,
    read_env: bool = False,
) -> VideoResult:
    source = spec.source
    if isinstance(source, (list, tuple)) or hasattr(source, "shape"):
        return _from_frames(spec, preset, policy, options, image_options, budget=budget)
    return _from_container(spec, preset, policy, options, budget, read_env=read_env)


def _cached(
    cache: MediaCache,
    spec: VideoSpec,
    preset: Preset,
    *,
    policy: FetchPolicy | None,
    options: VideoOptions,
    image_options: ImageOptions | None,
    budget: CallBudget,
    read_env: bool,
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
        backend: BackendName | None = video_backend(options, read_env)
    elif hasattr(source, "shape") and not isinstance(source, (list, tuple)):
        digest = digest_arrays(frames_from_array(source))
        spec_to_load, backend = spec, None
    else:  # frame lists (each item would need fetching first) and file objects
        return _load(spec, preset, policy, options, image_options, budget=budget, read_env=read_env)
    key = (
        "video",
        digest,
        dataclasses.replace(spec, source=None),  # every element key
        video_plan_key(preset),  # the grid, video bounds and frame defaults the plan reads
        options,  # the whole options object: new fields are part of the key
        backend,  # the drop-ins' FORCE_QWENVL_VIDEO_READER, read now
        image_options or ImageOptions(),
    )
    loaded = False

    def load() -> VideoResult:
        nonlocal loaded
        loaded = True
        return _load(
            spec_to_load, preset, policy, options, image_options, budget=budget, read_env=read_env
        )

    result = cache.get_or_load(key, load, pack_video, unpack_video)
    if not loaded:
        frames = result[0]
        budget.charge(frames.shape[0] * frames.shape[2] * frames.shape[3], "video")
    return LoadedVideo(*result)


def fetch_video(
    ele: Mapping[str, Any],
    image_patch_size: int = 14,
    return_video_sample_fps: bool = False,
    return_video_metadata: bool = False,
    *,
    policy: FetchPolicy | None = None,
    video_options: VideoOptions | None = None,
    image_options: ImageOptions | None = None,
    cache: MediaCache | None = None,
    limits: CallLimits | None = None,
    preset: Preset | None = None,
    options: VideoOptions | None = None,
    backend: BackendChoice | None = None,
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
            ``2 * image_patch_size``, and the defaults are qwen-vl-utils' (per frame
            ``128·f²`` .. ``768·f²`` pixels, ``128000·f²·0.9`` a clip, 2 fps, 4 .. 768
            frames: :func:`vlprep._planning.qwen_vl_utils_preset`). Ignored with ``preset``.
        return_video_sample_fps: also return the sample fps.
        return_video_metadata: return ``(video, metadata)``; metadata has ``fps`` (native),
            ``frames_indices`` (absolute), ``total_num_frames`` (clip length) and
            ``video_backend`` (not for frame lists, as upstream).
        policy: fetch rules (video byte cap and deadline).
        video_options: decoder (``VideoOptions.backend``: the one place the backend is
            chosen), limits and resize mode.
        image_options: decode rules for frame-list images.
        cache: reuse the frames of an earlier call with the same content and parameters
            (see :class:`vlprep.MediaCache`). Paths, URLs, ``data:`` URIs and bytes are
            fetched whole and hashed on every call (a local file is then decoded from
            those bytes); arrays and tensors are hashed; frame lists and file objects are
            not cached. ``None``: no caching.
        limits: :class:`vlprep.CallLimits` for this call (default ``CallLimits()``): a
            frame list counts one item per frame against ``max_items`` (checked before any
            fetch), the clip's output pixels count against ``max_total_pixels``, and every
            fetch (each frame of a frame list) gets the time left to ``deadline``.
        preset: size and sample for this model configuration instead: the grid is
            ``preset.factor``, and ``preset.video_min_pixels`` / ``video_max_pixels`` /
            ``video_total_pixels`` / ``fps`` / ``min_frames`` / ``max_frames`` are the
            defaults of the element keys (what :func:`vlprep.build_inputs` and
            :func:`vlprep.inspect` use for the same preset).
        options: deprecated name of ``video_options`` (``DeprecationWarning``).
        backend: deprecated (``DeprecationWarning``): ``"pyav"``, ``"decord"``,
            ``"torchcodec"`` or ``"auto"``, set as ``video_options.backend``; pass
            ``VideoOptions(backend=...)`` instead.

    Returns:
        ``video`` — float32 tensor ``(T, 3, H, W)`` with integer values 0..255, T even —
        or ``(video, metadata)``, each optionally paired with ``sample_fps``:
        ``(final, sample_fps)``.

    Raises:
        InvalidInputError, SourceNotAllowedError, FetchError, DecodeError,
        UnsupportedFormatError, ResourceLimitError, BackendUnavailableError.
    """
    video_options = renamed(
        "fetch_video", "video_options", video_options, "options", options, expected=VideoOptions
    )
    image_options = checked(image_options, ImageOptions, "fetch_video(image_options=)")
    if backend is not None:
        warnings.warn(
            "fetch_video(backend=) is deprecated; pass video_options=VideoOptions(backend=...)"
            " (the one place the backend is chosen)",
            DeprecationWarning,
            stacklevel=2,
        )
        video_options = dataclasses.replace(video_options or _DEFAULT_OPTIONS, backend=backend)
    loaded = _load_clip(
        ele,
        image_patch_size,
        policy=policy,
        options=video_options,
        image_options=image_options,
        cache=cache,
        limits=limits,
        preset=preset,
        read_env=True,  # qwen-vl-utils' FORCE_QWENVL_VIDEO_READER, the drop-ins' only
    )
    return fetch_video_result(loaded, return_video_sample_fps, return_video_metadata)


def fetch_video_result(
    loaded: VideoResult, return_video_sample_fps: bool, return_video_metadata: bool
) -> Any:
    """:func:`load_clip`'s result in the shape :func:`fetch_video` returns for those flags."""
    video, metadata, sample_fps = loaded
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
    video_options: VideoOptions | None = None,
    image_options: ImageOptions | None = None,
    cache: MediaCache | None = None,
    limits: CallLimits | None = None,
    preset: Preset | None = None,
) -> LoadedVideo:
    """One video element loaded as :class:`LoadedVideo` ``(frames, metadata, sample_fps)``.

    Same arguments and errors as :func:`fetch_video` (without its qwen-vl-utils flags,
    its deprecated keywords and its ``FORCE_QWENVL_VIDEO_READER``: the backend is
    ``video_options.backend``); the metadata also holds :data:`FRAMES_SECONDS` where the
    backend reports the frames' presentation times (what :func:`vlprep.build_inputs`
    writes in Qwen3-VL's ``<t seconds>`` text).

    Returns:
        float32 ``(T, 3, H, W)`` frames (0..255), a fresh metadata dict, the sample fps.
    """
    video_options = checked(video_options, VideoOptions, "load_clip(video_options=)")
    image_options = checked(image_options, ImageOptions, "load_clip(image_options=)")
    return _load_clip(
        ele,
        image_patch_size,
        policy=policy,
        options=video_options,
        image_options=image_options,
        cache=cache,
        limits=limits,
        preset=preset,
        read_env=False,
    )


def _load_clip(
    ele: Mapping[str, Any],
    image_patch_size: int,
    *,
    policy: FetchPolicy | None,
    options: VideoOptions | None,
    image_options: ImageOptions | None,
    cache: MediaCache | None,
    limits: CallLimits | None,
    preset: Preset | None,
    read_env: bool,
) -> LoadedVideo:
    if preset is None:
        preset = qwen_vl_utils_preset(check_patch_size(image_patch_size))
    budget = CallBudget(limits)
    budget.check_items(element_items(ele))
    return fetch_video_item(
        ele,
        preset,
        policy=policy,
        options=options,
        image_options=image_options,
        cache=cache,
        budget=budget,
        read_env=read_env,
    )


def fetch_video_item(
    ele: Mapping[str, Any],
    preset: Preset | int,
    *,
    policy: FetchPolicy | None,
    options: VideoOptions | None,
    image_options: ImageOptions | None,
    cache: MediaCache | None,
    budget: CallBudget,
    backend: BackendChoice | None = None,
    read_env: bool = False,
) -> VideoResult:
    """One video element sized and sampled for ``preset``, within a call's budget:
    ``(video, metadata, sample_fps)``.

    ``preset`` may be a grid factor (``2 * image_patch_size``), which stands for
    :func:`vlprep._planning.qwen_vl_utils_preset` of that patch size (the drop-ins').

    What :func:`fetch_video` runs once its arguments are checked; the calls that load many
    items pass their shared :class:`vlprep._limits.CallBudget` (items already counted).
    ``read_env``: the qwen-vl-utils drop-ins' ``FORCE_QWENVL_VIDEO_READER`` picks the backend
    when the options leave it ``"auto"`` (see :func:`vlprep._video_input.video_backend`).

    Raises:
        As :func:`fetch_video`.
    """
    spec = parse_video_element(ele)
    if not isinstance(preset, Preset):
        preset = qwen_vl_utils_preset(preset // 2)
    refuse_video(preset)
    options = options or _DEFAULT_OPTIONS
    if backend is not None:
        options = dataclasses.replace(options, backend=backend)
    with budget.timing():
        policy = budget.policy(policy)
        if cache is None:
            return _load(
                spec, preset, policy, options, image_options, budget=budget, read_env=read_env
            )
        return _cached(
            cache,
            spec,
            preset,
            policy=policy,
            options=options,
            image_options=image_options,
            budget=budget,
            read_env=read_env,
        )
