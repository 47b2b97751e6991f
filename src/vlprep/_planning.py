"""What an element will become, from a header or container metadata alone.

The one place that answers the upright size of an image (:func:`upright_size`), the
resized size (:func:`image_target_size`, :func:`video_target_size`), the frames a clip
samples (:func:`plan_clip`, :func:`plan_frame_list`) and the bounds a :class:`Preset`
sets for them. The loaders (:mod:`vlprep._image`, :mod:`vlprep._video`), the estimates
(:func:`vlprep.inspect`), the device path, grounding and the cache keys call these
functions; nothing else computes a size. No I/O here: the callers read the header or
open the container and pass what they read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from PIL import Image

from vlprep._decode.image import ImageHeader, ImageOptions, orientation_of
from vlprep._decode.video import FrameSeek, VideoMetadata, VideoOptions
from vlprep._errors import InvalidInputError, ResourceLimitError, UnsupportedFormatError
from vlprep._presets import (
    QWEN2_5_VL,
    QWEN3_VL,
    Preset,
    with_qwen_vl_utils_video,
)
from vlprep._sampling import (
    FRAME_FACTOR,
    FramePlan,
    indices_at_times,
    is_variable_rate,
    plan_frames,
    snap_to_keyframes,
    video_frame_pixels,
)
from vlprep._sizing import (
    ceil_by_factor,
    check_output_keys,
    check_output_size,
    image_pixel_bounds,
    smart_resize,
)
from vlprep._specs import ImageSpec, VideoSpec

__all__ = [
    "DEFAULT_LIST_FPS",
    "FrameListPlan",
    "ImageSizing",
    "image_size_for",
    "image_sizing",
    "image_target_size",
    "keyframe_plan",
    "plan_clip",
    "plan_frame_list",
    "qwen_vl_utils_preset",
    "refuse_stream_key",
    "stream_options",
    "upright_size",
    "video_plan_key",
    "video_target_size",
]

_DEFAULT_IMAGE_OPTIONS = ImageOptions()
_DEFAULT_VIDEO_OPTIONS = VideoOptions()
_OUTPUT_LIMIT = _DEFAULT_IMAGE_OPTIONS.max_output_pixels

DEFAULT_LIST_FPS = 2.0
"""``sample_fps`` of a frame list or array that sets none (qwen-vl-utils' value)."""


# ---------------------------------------------------------------------------- images


def upright_size(found: ImageHeader | Image.Image, exif_transpose: bool = True) -> tuple[int, int]:
    """``(height, width)`` of an image as displayed: what a decode of it returns.

    Args:
        found: the header of encoded bytes (:func:`vlprep._decode.image.probe_header` or
            :func:`vlprep._image.read_header`, which also read a PNG's ``eXIf`` chunk that
            follows its pixel data), or a caller's ``PIL.Image`` not yet oriented (a lazy
            PNG is loaded here: Pillow sees a late ``eXIf`` chunk only then, as
            :func:`vlprep._image.load_image` does). Never an image vlprep already decoded:
            those are upright and their size is the answer.
        exif_transpose: apply the EXIF orientation (``ImageOptions.exif_transpose``); a
            header read with it off already has orientation 1.
    """
    if isinstance(found, ImageHeader):
        return found.display_size
    if exif_transpose and found.format == "PNG":
        found.load()  # a late eXIf chunk is read with the pixels
    swap = exif_transpose and orientation_of(found) in (5, 6, 7, 8)
    return (found.width, found.height) if swap else (found.height, found.width)


ImageSizing = tuple[int, tuple[float, float] | None, tuple[int, int] | None]
"""``(factor, default bounds, fixed size)``: the numbers an image is sized with."""


def image_sizing(sizing: Preset | int) -> ImageSizing:
    """The image sizing numbers of a preset (its grid, image bounds and fixed size) or of a
    bare grid factor, which stands for qwen-vl-utils' defaults (the drop-ins': bounds
    ``4·f²`` .. ``16384·f²``, no fixed size). Also the image cache's sizing key."""
    if isinstance(sizing, int):
        return sizing, None, None
    return (
        sizing.factor,
        (sizing.image_min_pixels, sizing.image_max_pixels),
        sizing.image_size,
    )


def image_size_for(
    spec: ImageSpec,
    height: int,
    width: int,
    sizing: Preset | int,
    *,
    max_output_pixels: int = _OUTPUT_LIMIT,
) -> tuple[int, int]:
    """:func:`image_target_size` with the numbers of :func:`image_sizing`: the size every
    loader, estimate, plan, the device path and grounding give an image for ``sizing``.

    Raises:
        As :func:`image_target_size`.
    """
    factor, bounds, fixed = image_sizing(sizing)
    return image_target_size(
        spec, height, width, factor, bounds, max_output_pixels=max_output_pixels, fixed=fixed
    )


def image_target_size(
    spec: ImageSpec,
    height: int,
    width: int,
    factor: int,
    bounds: tuple[float, float] | None = None,
    *,
    max_output_pixels: int = _OUTPUT_LIMIT,
    fixed: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The ``(height, width)`` a ``height x width`` image is resized to, as qwen-vl-utils does.

    ``fixed`` (a preset's :attr:`~vlprep.Preset.image_size`, the first generation's
    448x448): every image is squashed to it, aspect ratio not kept, and an element that
    sets ``min_pixels``, ``max_pixels`` or ``resized_*`` is refused (the model takes no
    other size).

    With both ``resized_height`` and ``resized_width``, those are snapped to the grid with
    the default image bounds (element bounds ignored); otherwise the element's
    ``min_pixels``/``max_pixels`` bound the source size. The defaults are ``bounds``
    (``(min_pixels, max_pixels)``), else qwen-vl-utils' ``4·f²`` / ``16384·f²``.

    Raises:
        ResourceLimitError: the result (or ``min_pixels`` / ``resized_*`` alone) above
            ``max_output_pixels`` (:attr:`ImageOptions.max_output_pixels`), checked
            before anything is allocated.
        InvalidInputError: a sizing key with ``fixed``.
    """
    setting = "ImageOptions.max_output_pixels"
    if fixed is not None:
        keys = ("min_pixels", "max_pixels", "resized_height", "resized_width")
        given = [key for key in keys if getattr(spec, key) is not None]
        if given:
            raise InvalidInputError(
                f"the element sets {', '.join(given)}, but this model squashes every image to "
                f"{fixed[0]}x{fixed[1]} (Preset.image_size; the first generation, Qwen-VL): "
                "drop the key(s)"
            )
        return check_output_size(fixed, max_output_pixels, "image", setting)
    check_output_keys(spec, max_output_pixels, "image", setting)
    default_min, default_max = bounds if bounds is not None else image_pixel_bounds(factor)
    if spec.resized_height is not None and spec.resized_width is not None:
        size = smart_resize(
            spec.resized_height,
            spec.resized_width,
            factor=factor,
            min_pixels=default_min,
            max_pixels=default_max,
        )
        return check_output_size(size, max_output_pixels, "image", setting)
    low = spec.min_pixels if spec.min_pixels is not None else default_min
    high = spec.max_pixels if spec.max_pixels is not None else default_max
    if bounds is not None:
        # A bound from the element wins over a configured default it contradicts
        # (e.g. max_pixels below a processor's 65,536 minimum); qwen-vl-utils' own
        # defaults are low and high enough that this never arises there.
        if spec.min_pixels is None:
            low = min(low, high)
        if spec.max_pixels is None:
            high = max(high, low)
    size = smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high)
    return check_output_size(size, max_output_pixels, "image", setting)


# ---------------------------------------------------------------------------- presets


def qwen_vl_utils_preset(image_patch_size: int) -> Preset:
    """The preset whose video numbers are qwen-vl-utils' defaults for ``image_patch_size``.

    What the drop-ins (:func:`vlprep.fetch_video`, :func:`vlprep.process_vision_info`)
    size videos with: per-frame ``128·f²`` .. ``768·f²``, clip budget ``128000·f²·0.9``,
    2 fps, 4 .. 768 frames (``f = 2 * image_patch_size``). 14 is
    :data:`~vlprep._presets.QWEN2_5_VL`, 16 :data:`~vlprep._presets.QWEN3_VL` (their
    numbers are these); another size gets a preset built from the formulas.
    """
    for preset in (QWEN2_5_VL, QWEN3_VL):
        if preset.patch_size == image_patch_size and preset.merge_size == 2:
            return preset
    # qwen-vl-utils sizes by patch size alone; the family is the one Preset used to guess.
    return with_qwen_vl_utils_video(
        Preset(
            name=f"qwen-vl-utils-patch{image_patch_size}",
            family="qwen2-vl",  # what Preset guessed for a patch size other than 16
            patch_size=image_patch_size,
        )
    )


def video_plan_key(preset: Preset) -> tuple[float, ...]:
    """The numbers of ``preset`` that video planning reads, for cache keys.

    Two presets with these equal (Qwen2-VL and Qwen2.5-VL, a renamed copy) plan every
    video alike, so a clip loaded for one is served to the other.
    """
    return (
        preset.factor,
        preset.video_min_pixels,
        preset.video_max_pixels,
        preset.video_total_pixels,
        preset.fps,
        preset.min_frames,
        preset.max_frames,
    )


def _video_bounds(preset: Preset | None) -> tuple[float, float, float] | None:
    if preset is None:
        return None
    return (preset.video_min_pixels, preset.video_max_pixels, preset.video_total_pixels)


# ---------------------------------------------------------------------------- videos


def video_target_size(
    spec: VideoSpec,
    height: int,
    width: int,
    nframes: int,
    factor: int,
    *,
    options: VideoOptions | None = None,
    preset: Preset | None = None,
) -> tuple[int, int]:
    """Frame size for a clip of ``nframes`` frames of ``height x width``, as qwen-vl-utils.

    ``resized_height``/``resized_width`` (both) win, snapped with the image bounds;
    otherwise the per-frame budget of :func:`vlprep._sampling.video_frame_pixels`, with
    ``preset``'s ``video_min_pixels`` / ``video_max_pixels`` / ``video_total_pixels`` as
    the defaults (qwen-vl-utils' ``128·f²`` / ``768·f²`` / ``128000·f²·0.9`` without one).

    Raises:
        ResourceLimitError: a frame above ``options.max_output_frame_pixels`` or the clip
            (``nframes`` frames) above ``options.max_output_pixels``, from the keys or the
            result, before anything is allocated.
    """
    options = options or _DEFAULT_VIDEO_OPTIONS
    frame_limit = options.max_output_frame_pixels
    setting = "VideoOptions.max_output_frame_pixels"
    check_output_keys(spec, frame_limit, "video frame", setting)
    if spec.resized_height is not None and spec.resized_width is not None:
        image_low, image_high = image_pixel_bounds(factor)
        size = smart_resize(spec.resized_height, spec.resized_width, factor, image_low, image_high)
    else:
        low, high = video_frame_pixels(
            nframes,
            factor,
            spec.min_pixels,
            spec.max_pixels,
            spec.total_pixels,
            defaults=_video_bounds(preset),
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


def plan_clip(
    spec: VideoSpec,
    meta: VideoMetadata,
    factor: int,
    seek: FrameSeek = "exact",
    *,
    options: VideoOptions | None = None,
    preset: Preset | None = None,
) -> tuple[FramePlan, list[int], tuple[int, int]]:
    """What :func:`vlprep.fetch_video` will decode from a container: plan, indices, frame size.

    The frame plan of qwen-vl-utils' sampling; a variable-frame-rate clip is sampled by time
    (a listed deviation) and the real indices reported. Shared with the header-only
    estimates (:func:`vlprep.inspect`), so an estimate is the loader's own plan.
    ``preset``'s ``fps``, ``min_frames`` and ``max_frames`` are the defaults of the
    element keys of the same names (qwen-vl-utils' 2.0, 4 and 768 without one), its video
    pixel bounds those of :func:`video_target_size`.

    With ``seek="keyframe"`` each index moves to the nearest keyframe
    (:func:`keyframe_plan`): same count and frame size, the keyframes' indices, and the
    plan's ``sample_fps`` rescaled to the time the keyframes span.

    Raises:
        InvalidInputError: a bad element for this clip (see :func:`plan_frames`).
        UnsupportedFormatError: ``seek="keyframe"`` on a stream whose keyframes are unknown.
    """
    fps, min_frames, max_frames = spec.fps, spec.min_frames, spec.max_frames
    if preset is not None:
        if fps is None and spec.nframes is None:
            fps = preset.fps
        min_frames = preset.min_frames if min_frames is None else min_frames
        max_frames = preset.max_frames if max_frames is None else max_frames
    plan = plan_frames(
        meta.total_frames,
        meta.fps,
        fps=fps,
        nframes=spec.nframes,
        min_frames=min_frames,
        max_frames=max_frames,
        video_start=spec.video_start,
        video_end=spec.video_end,
    )
    indices = list(plan.indices)
    if meta.frame_times and is_variable_rate(meta.frame_times, meta.fps):
        indices = indices_at_times(meta.frame_times, indices, meta.fps)
    size = video_target_size(
        spec, meta.height, meta.width, len(indices), factor, options=options, preset=preset
    )
    if seek == "keyframe":
        indices, sample_fps = keyframe_plan(indices, meta, plan.sample_fps)
        plan = dataclasses.replace(plan, sample_fps=sample_fps)
    return plan, indices, size


def keyframe_plan(
    indices: list[int], meta: VideoMetadata, sample_fps: float
) -> tuple[list[int], float]:
    """Planned indices -> nearest keyframes, and the sample fps of the frames returned.

    The plan's rate is ``n / clip * fps``; the returned frames span another stretch of
    time, so the rate is scaled by planned span / returned span (times from
    ``meta.frame_times``, else ``index / fps``). When either span is zero (a single
    keyframe, a one-frame clip) there is nothing to measure and the plan's rate stays.

    Raises:
        UnsupportedFormatError: the stream's keyframes are unknown.
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


def stream_options(spec: VideoSpec, options: VideoOptions) -> VideoOptions:
    """``options`` with the element's ``video_stream`` (when set) as ``stream``."""
    if spec.video_stream is None or spec.video_stream == options.stream:
        return options
    return dataclasses.replace(options, stream=spec.video_stream)


def refuse_stream_key(spec: VideoSpec) -> None:
    """Frame lists and arrays have no streams: refuse a ``video_stream`` key on them.

    Raises:
        InvalidInputError: ``spec.video_stream`` is set.
    """
    if spec.video_stream is not None:
        raise InvalidInputError(
            f"'video_stream' ({spec.video_stream}) picks a stream of a video file; a frame "
            "list or array has none: drop the key"
        )


@dataclass(frozen=True, slots=True)
class FrameListPlan:
    """The frames of a frame-list (or array) video, before any is decoded.

    Attributes:
        count: frames given.
        total: frames returned (``count`` padded to an even number with the last frame).
        sample_fps: the element's ``sample_fps``, else :data:`DEFAULT_LIST_FPS`.
        raw_fps: the element's ``raw_fps``, else ``sample_fps``.
    """

    count: int
    total: int
    sample_fps: float
    raw_fps: float

    @property
    def indices(self) -> tuple[int, ...]:
        """``frames_indices``: ``0 .. total - 1``."""
        return tuple(range(self.total))

    @property
    def timestamps(self) -> tuple[float, ...]:
        """Seconds of each returned frame: ``i / sample_fps``."""
        return tuple(i / self.sample_fps for i in range(self.total))

    @property
    def clip_frames(self) -> float:
        """``total_num_frames`` as qwen-vl-utils reports it: ``total / sample_fps * raw_fps``."""
        return self.total / self.sample_fps * self.raw_fps


def plan_frame_list(
    spec: VideoSpec, count: int, options: VideoOptions | None = None
) -> FrameListPlan:
    """The plan of a frame list or array of ``count`` frames (sizes come from the first one:
    :func:`video_target_size` with ``plan.total`` frames).

    Raises:
        InvalidInputError: a ``video_stream`` key, or no frame.
        ResourceLimitError: more frames than ``options.max_list_frames``.
    """
    options = options or _DEFAULT_VIDEO_OPTIONS
    refuse_stream_key(spec)
    if not count:
        raise InvalidInputError("a frame-list video needs at least one frame")
    if count > options.max_list_frames:
        raise ResourceLimitError(
            f"the video has {count} frames, above the limit of "
            f"{options.max_list_frames} (VideoOptions.max_list_frames); subsample it first"
        )
    sample_fps = spec.sample_fps if spec.sample_fps is not None else DEFAULT_LIST_FPS
    raw_fps = spec.raw_fps if spec.raw_fps is not None else sample_fps
    return FrameListPlan(
        count=count,
        total=ceil_by_factor(count, FRAME_FACTOR),
        sample_fps=sample_fps,
        raw_fps=raw_fps,
    )
