"""``inspect``: the size, grid and token count of one image or video, without decoding pixels.

Images are sized from their header (read through :func:`vlprep._sources.fetch`, only as
far as the header needs); videos from their container metadata and the frame plan. The
numbers are computed by the planner the loaders use (:mod:`vlprep._planning`:
``upright_size``, ``image_target_size``, ``plan_clip``, ``plan_frame_list``,
``video_target_size``, with the preset's bounds), so an estimate equals what
:func:`vlprep._image.fetch_image_for`, :func:`vlprep._video.fetch_video` and
:func:`vlprep.build_inputs` produce for the same element and preset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from vlprep._decode.image import ImageHeader, ImageOptions, sniff_format
from vlprep._decode.video import VideoOptions, probe_video, sniff_container
from vlprep._errors import (
    DecodeError,
    InvalidInputError,
    UnsupportedFormatError,
    describe_source,
)
from vlprep._image import HEADER_PREFIX, read_header
from vlprep._numbers import is_finite_number, shown
from vlprep._planning import (
    image_size_for,
    plan_clip,
    plan_frame_list,
    refuse_stream_key,
    stream_options,
    upright_size,
    video_target_size,
)
from vlprep._presets import DEFAULT_PRESET, Preset, get_preset, refuse_video
from vlprep._sizing import count_tokens, estimate_video
from vlprep._sources import FetchPolicy, fetch
from vlprep._specs import VideoSpec, element_kind, parse_image_element, parse_video_element
from vlprep._video_input import frames_from_array, opened_container, video_backend

__all__ = [
    "HEADER_PREFIX",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "MediaEstimate",
    "MediaKind",
    "element_for",
    "inspect",
    "kind_of",
    "shown_source",
]

MediaKind = Literal["image", "video"]

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".mpo"}
    | {".heif", ".heic", ".avif"}
)
"""File extensions taken as images (the formats vlprep decodes by default)."""

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".3gp"})
"""File extensions taken as videos (the containers vlprep opens)."""

_DEFAULT_IMAGE_OPTIONS = ImageOptions()
_DEFAULT_VIDEO_OPTIONS = VideoOptions()


@dataclass(frozen=True, slots=True)
class MediaEstimate:
    """What the model will get from one image or video, computed without pixels.

    Sizes are ``height`` then ``width`` in pixels, as everywhere in vlprep.

    Attributes:
        source: the source as given (a path or URL; ``data:`` URIs and bytes shortened).
        kind: ``"image"`` or ``"video"``.
        original_height / original_width: the source size as displayed (after the EXIF
            orientation for images, after the rotation metadata for videos).
        height / width: the resized size (per frame for videos), multiples of the factor.
        grid: ``(t, gh, gw)`` patch grid, as ``image_grid_thw`` / ``video_grid_thw``.
        tokens: ``<|image_pad|>`` / ``<|video_pad|>`` tokens (``t * gh * gw / merge²``).
            Qwen3-VL videos add, per temporal patch, a ``<t seconds>`` text and a vision
            start/end pair; those text tokens are not counted here.
        format: the image format (``"JPEG"``, ...) or the video codec (``"h264"``, ...).
        duration: video length in seconds (``None`` for images and frame lists).
        native_fps: the video's average frame rate (frame lists: ``raw_fps``).
        frames: frames sampled (even; before temporal patching).
        sample_fps: frames per second of the sampled sequence.
        frame_indices: the absolute indices of the sampled frames.
        timestamps: seconds of each sampled frame from the stream start (its presentation
            time where the container gives it, else ``index / native_fps``).
    """

    source: str
    kind: MediaKind
    original_height: int
    original_width: int
    height: int
    width: int
    grid: tuple[int, int, int]
    tokens: int
    format: str | None = None
    duration: float | None = None
    native_fps: float | None = None
    frames: int | None = None
    sample_fps: float | None = None
    frame_indices: tuple[int, ...] = ()
    timestamps: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples become lists)."""
        out = asdict(self)
        for key in ("grid", "frame_indices", "timestamps"):
            out[key] = list(out[key])
        return out


def _suffix(source: str) -> str:
    path = urlsplit(source).path if "://" in source[:12] else source
    return os.path.splitext(path)[1].lower()


def kind_of(source: object, policy: FetchPolicy | None = None) -> MediaKind:
    """Whether a bare source is an image or a video.

    From a ``data:`` URI's media type, else the file extension, else the first bytes
    (read through :func:`vlprep._sources.fetch`). Lists, tuples and 4-D arrays are videos
    (frame lists), other in-memory objects images.

    Raises:
        UnsupportedFormatError: the bytes are neither a known image nor a video container.
        FetchError, SourceNotAllowedError, InvalidInputError: from reading the first bytes.
    """
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, (list, tuple)):
        return "video"
    if isinstance(source, str):
        if source[:5].lower() == "data:":
            return "video" if source[5:11].lower() == "video/" else "image"
        suffix = _suffix(source)
        if suffix in IMAGE_SUFFIXES:
            return "image"
        if suffix in VIDEO_SUFFIXES:
            return "video"
    elif not isinstance(source, (bytes, bytearray, memoryview)):
        return "video" if len(getattr(source, "shape", ())) == 4 else "image"
    head = fetch(source, policy, "video", prefix=512).data
    if sniff_format(head) is not None:
        return "image"
    try:
        sniff_container(head)
    except DecodeError as exc:
        raise UnsupportedFormatError(
            f"{describe_source(source)} is neither a known image format nor a video "
            "container (MP4/MOV, Matroska/WebM, AVI)"
        ) from exc
    return "video"


def shown_source(source: object) -> str:
    """A source as estimates and fits show it: a path or URL as given (the user's own
    input, in a report to that user), frame lists by their length, anything else through
    :func:`vlprep._errors.describe_source` (never payload bytes or base64)."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str) and source[:5].lower() != "data:":
        return source
    if isinstance(source, (list, tuple)):
        return f"<{len(source)} frames>"
    return describe_source(source)


def _image_size(
    source: object, policy: FetchPolicy | None, options: ImageOptions
) -> tuple[int, int, str | None]:
    """``(height, width, format)`` as displayed: from the header for encoded sources."""
    found = read_header(source, policy=policy, options=options, prefix=HEADER_PREFIX)
    fmt = found.format if isinstance(found, ImageHeader) else None
    return (*upright_size(found, options.exif_transpose), fmt)


def _estimate_image(
    ele: Mapping[str, Any], preset: Preset, policy: FetchPolicy | None, options: ImageOptions
) -> MediaEstimate:
    spec = parse_image_element(ele)
    height, width, fmt = _image_size(spec.source, policy, options)
    rh, rw = image_size_for(
        spec, height, width, preset, max_output_pixels=options.max_output_pixels
    )
    grid = (1, rh // preset.patch_size, rw // preset.patch_size)
    tokens = count_tokens(grid, preset.merge_size)
    if preset.image_tokens is not None:
        tokens = preset.image_tokens  # the first generation: fixed, whatever the grid
    return MediaEstimate(
        source=shown_source(spec.source),
        kind="image",
        original_height=height,
        original_width=width,
        height=rh,
        width=rw,
        grid=grid,
        tokens=tokens,
        format=fmt,
    )


def _estimate_container(
    spec: VideoSpec, preset: Preset, policy: FetchPolicy | None, options: VideoOptions
) -> MediaEstimate:
    # The same steps as vlprep._video.fetch_video, stopping before the first frame decode.
    options = stream_options(spec, options)  # the element's video_stream, as the loader
    with opened_container(spec.source, policy) as container:
        meta = probe_video(container, options, backend=video_backend(options))
    plan, indices, (height, width) = plan_clip(
        spec, meta, preset.factor, options.seek, options=options, preset=preset
    )
    sized = estimate_video(
        len(indices),
        height,
        width,
        patch_size=preset.patch_size,
        merge_size=preset.merge_size,
        temporal_patch_size=preset.temporal_patch_size,
    )
    times = meta.frame_times
    stamps = tuple(times[i] if times else i / meta.fps for i in indices)
    return MediaEstimate(
        source=shown_source(spec.source),
        kind="video",
        original_height=meta.height,
        original_width=meta.width,
        height=height,
        width=width,
        grid=sized.grid,
        tokens=sized.tokens,
        format=meta.codec,
        duration=meta.duration,
        native_fps=meta.fps,
        frames=len(indices),
        sample_fps=plan.sample_fps,
        frame_indices=tuple(indices),
        timestamps=stamps,
    )


def _estimate_frames(
    spec: VideoSpec,
    preset: Preset,
    policy: FetchPolicy | None,
    options: VideoOptions,
    image_options: ImageOptions,
) -> MediaEstimate:
    refuse_stream_key(spec)
    source = spec.source
    if isinstance(source, (list, tuple)):
        plan = plan_frame_list(spec, len(source), options)
        frame_height, frame_width, fmt = _image_size(source[0], policy, image_options)
    else:
        arrays = frames_from_array(source)
        plan = plan_frame_list(spec, len(arrays), options)
        frame_height, frame_width, fmt = (*arrays[0].shape[:2], None)
    total = plan.total
    height, width = video_target_size(
        spec, frame_height, frame_width, total, preset.factor, options=options, preset=preset
    )
    sized = estimate_video(
        total,
        height,
        width,
        patch_size=preset.patch_size,
        merge_size=preset.merge_size,
        temporal_patch_size=preset.temporal_patch_size,
    )
    return MediaEstimate(
        source=shown_source(source),
        kind="video",
        original_height=int(frame_height),
        original_width=int(frame_width),
        height=height,
        width=width,
        grid=sized.grid,
        tokens=sized.tokens,
        format=fmt,
        native_fps=plan.raw_fps,
        frames=total,
        sample_fps=plan.sample_fps,
        frame_indices=plan.indices,
        timestamps=plan.timestamps,
    )


def _number(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number, got {type(value).__name__}")
    if not is_finite_number(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a finite number > 0, got {shown(value)}")
    return value


def _element(
    source_or_element: object, kind: MediaKind | None, policy: FetchPolicy | None
) -> tuple[MediaKind, dict[str, Any]]:
    if isinstance(source_or_element, Mapping):
        ele = dict(source_or_element)
        found = element_kind(ele)
        if found is not None:
            return found, ele
        raise InvalidInputError(
            "a vision element needs an 'image', 'image_url', 'video' or 'video_url' "
            f"source, got keys {sorted(str(k) for k in ele)[:8]}"
        )
    source = source_or_element
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if kind is None:
        kind = kind_of(source, policy)
    elif kind not in ("image", "video"):
        raise InvalidInputError(f"kind must be 'image', 'video' or None, got {kind!r:.32}")
    return kind, {kind: source}


def element_for(
    source_or_element: object,
    *,
    min_pixels: float | None = None,
    max_pixels: float | None = None,
    total_pixels: float | None = None,
    fps: float | None = None,
    nframes: float | None = None,
    kind: MediaKind | None = None,
    policy: FetchPolicy | None = None,
) -> dict[str, Any]:
    """The message element :func:`inspect` estimates, with the defaults filled in.

    A bare source becomes ``{"image": source}`` or ``{"video": source}`` (``kind``, else
    :func:`kind_of`); an element is copied. Each default is set only where the element
    has no value: ``min_pixels``/``max_pixels`` for both kinds, ``total_pixels`` for
    videos, ``fps``/``nframes`` for videos that set neither. Passing the result to the
    loaders (``fetch_image_for``, ``fetch_video``, ``build_inputs``) loads what was
    estimated.

    Raises:
        InvalidInputError: an element without a source, bad default values, both ``fps``
            and ``nframes``.
        UnsupportedFormatError, FetchError: a bare source whose kind cannot be read.
    """
    defaults = {
        "min_pixels": _number("min_pixels", min_pixels),
        "max_pixels": _number("max_pixels", max_pixels),
        "total_pixels": _number("total_pixels", total_pixels),
        "fps": _number("fps", fps),
        "nframes": _number("nframes", nframes),
    }
    if fps is not None and nframes is not None:
        raise InvalidInputError("give either fps or nframes, not both")
    found, ele = _element(source_or_element, kind, policy)
    keys = (
        ("min_pixels", "max_pixels")
        if found == "image"
        else ("min_pixels", "max_pixels", "total_pixels")
    )
    for key in keys:
        if defaults[key] is not None and ele.get(key) is None:
            ele[key] = defaults[key]
    if found == "video" and ele.get("fps") is None and ele.get("nframes") is None:
        for key in ("fps", "nframes"):
            if defaults[key] is not None:
                ele[key] = defaults[key]
    return ele


def inspect(
    source_or_element: object,
    preset: Preset | str = DEFAULT_PRESET,
    *,
    min_pixels: float | None = None,
    max_pixels: float | None = None,
    total_pixels: float | None = None,
    fps: float | None = None,
    nframes: float | None = None,
    kind: MediaKind | None = None,
    policy: FetchPolicy | None = None,
    image_options: ImageOptions | None = None,
    video_options: VideoOptions | None = None,
) -> MediaEstimate:
    """Estimate the resized size, patch grid and tokens of one image or video.

    Nothing is decoded: images are sized from their header (the first 64 KiB of a file or
    URL, more only when the header is longer), videos from their container metadata.

    Args:
        source_or_element: a message element (``{"type": "image", "image": ...,
            "max_pixels": ...}``, any keys :func:`vlprep.process_vision_info` accepts),
            or a bare source: a path, ``file://``/http(s)/``data:`` URL, bytes, a
            ``PIL.Image``, an array, or a list of frames.
        preset: the model family (``"qwen2-vl"``, ``"qwen2.5-vl"``, ``"qwen3-vl"`` or a
            :class:`Preset`). Images default to the preset's pixel bounds, exactly as
            :func:`vlprep.build_inputs` sizes them for that family's processor.
        min_pixels / max_pixels / total_pixels / fps / nframes: defaults for the element
            keys of the same name; a key set in the element wins. ``fps`` and ``nframes``
            are used only when the element sets neither; ``total_pixels``, ``fps`` and
            ``nframes`` apply to videos only.
        kind: ``"image"`` or ``"video"`` for a bare source; guessed when ``None``.
        policy: fetch rules for every source (the one guarded fetch path).
        image_options / video_options: decode rules and limits, as for the loaders.

    Returns:
        A :class:`MediaEstimate`.

    Raises:
        InvalidInputError, SourceNotAllowedError, FetchError, DecodeError,
        UnsupportedFormatError, ResourceLimitError, BackendUnavailableError: as the loader
        would for the same element (except pixel-data errors that only a decode finds,
        such as a file truncated after its header).
    """
    preset = get_preset(preset)
    ele = element_for(
        source_or_element,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        total_pixels=total_pixels,
        fps=fps,
        nframes=nframes,
        kind=kind,
        policy=policy,
    )
    image_options = image_options or _DEFAULT_IMAGE_OPTIONS
    if element_kind(ele) == "image":
        return _estimate_image(ele, preset, policy, image_options)
    refuse_video(preset)
    spec = parse_video_element(ele)
    options = video_options or _DEFAULT_VIDEO_OPTIONS
    if isinstance(spec.source, (list, tuple)) or hasattr(spec.source, "shape"):
        return _estimate_frames(spec, preset, policy, options, image_options)
    return _estimate_container(spec, preset, policy, options)
