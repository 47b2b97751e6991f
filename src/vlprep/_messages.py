"""``extract_vision_info`` and ``process_vision_info``: orchestration only, no math or I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from vlprep._cache import MediaCache
from vlprep._chat import Conversation, as_conversations, is_vision_element, vision_parts
from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import InvalidInputError
from vlprep._fit import apply_fits, fit
from vlprep._image import fetch_image_item
from vlprep._keywords import checked, renamed
from vlprep._limits import CallBudget, CallLimits
from vlprep._planning import qwen_vl_utils_preset
from vlprep._pool import ordered_map, resolve_workers
from vlprep._presets import Preset
from vlprep._sizing import check_patch_size, image_pixel_bounds
from vlprep._sources import FetchPolicy
from vlprep._specs import element_kind
from vlprep._video import fetch_video_item

__all__ = [
    "Conversation",
    "as_conversations",
    "extract_vision_info",
    "is_vision_element",
    "load_vision_info",
    "process_vision_info",
]


def extract_vision_info(
    conversations: Conversation | Sequence[Conversation],
) -> list[Mapping[str, Any]]:
    """The image and video elements of one conversation or a batch, in order of appearance.

    An element counts when it has an ``image``, ``image_url``, ``video`` or ``video_url``
    key, or such a ``type``. Messages whose ``content`` is a string are skipped.

    Raises:
        InvalidInputError: the input is not a list of messages (or of conversations), or a
            message is not a dict.
    """
    found: list[Mapping[str, Any]] = []
    for conversation in as_conversations(conversations):
        found.extend(ele for _, ele in vision_parts(conversation))
    return found


def process_vision_info(
    conversations: Conversation | Sequence[Conversation],
    return_video_kwargs: bool = False,
    return_video_metadata: bool = False,
    image_patch_size: int = 14,
    *,
    policy: FetchPolicy | None = None,
    image_options: ImageOptions | None = None,
    video_options: VideoOptions | None = None,
    workers: int | None = None,
    cache: MediaCache | None = None,
    limits: CallLimits | None = None,
    options: ImageOptions | None = None,
    max_total_tokens: int | None = None,
    processor: Any = None,
) -> tuple[Any, ...]:
    """Load every image and video of the conversation(s), like qwen-vl-utils.

    Args:
        conversations: one conversation (list of message dicts) or a batch of them.
        return_video_kwargs: also return ``{"do_sample_frames": False, "fps": [...]}``
            (``"fps"`` omitted when ``return_video_metadata`` is set, as upstream).
        return_video_metadata: return each video as ``(tensor, metadata)``; see
            :func:`vlprep._video.fetch_video`.
        image_patch_size: 14 for Qwen2/2.5-VL, 16 for Qwen3-VL.
        policy: fetch rules for every source.
        image_options: image decode rules (also for frame-list videos).
        video_options: video backend, limits and resize mode.
        workers: items loaded at once on a thread pool (default ``min(4, CPU count)``;
            ``1`` loads them one after the other in the caller's thread). Results keep
            the order of the messages; each fetch keeps its own deadline; the first
            failing item (in order) raises, with a note naming it.
        cache: a :class:`vlprep.MediaCache` of resized images and videos shared across
            calls (``None``: no caching).
        limits: :class:`vlprep.CallLimits` for the whole call (default ``CallLimits()``;
            ``CallLimits.strict()`` for servers): items (frame-list frames included)
            counted before anything is fetched, output pixels summed over every item, and
            one deadline shared by every fetch.
        options: deprecated name of ``image_options`` (``DeprecationWarning``).
        max_total_tokens: fit each conversation into this many tokens first
            (:func:`vlprep.fit`): images and videos are shrunk from their headers so the
            model input is at most this long. With ``processor`` the text is counted
            exactly (its chat template and tokenizer, ``add_generation_prompt=True``);
            without one only the image and video placeholder tokens are counted.
        processor: the transformers processor whose text the fit counts (optional).

    Returns:
        ``(images, videos)`` or ``(images, videos, video_kwargs)``; ``images`` is a list of
        RGB ``PIL.Image`` (or ``None`` when there are none); ``videos`` a list of float32
        ``(T, 3, H, W)`` tensors (or ``(tensor, metadata)`` pairs), or ``None``.

    Raises:
        InvalidInputError: an element without a source; see :func:`fetch_image` and
            :func:`fetch_video` for the rest.
        ResourceLimitError: more items or output pixels than ``limits`` allow.
        FetchTimeoutError: the call deadline passed (the message names
            ``CallLimits.deadline``).
    """
    image_options = renamed(
        "process_vision_info",
        "image_options",
        image_options,
        "options",
        options,
        expected=ImageOptions,
    )
    return load_vision_info(
        conversations,
        return_video_kwargs,
        return_video_metadata,
        image_patch_size,
        policy=policy,
        image_options=image_options,
        video_options=checked(video_options, VideoOptions, "process_vision_info(video_options=)"),
        workers=workers,
        cache=cache,
        limits=limits,
        read_env=True,  # qwen-vl-utils' FORCE_QWENVL_VIDEO_READER, the drop-ins' only
        max_total_tokens=max_total_tokens,
        processor=processor,
    )


def _drop_in_preset(image_patch_size: int) -> Preset:
    """The sizes the drop-ins give without a preset: qwen-vl-utils' image bounds
    (``4·f²`` .. ``16384·f²``) and video numbers for ``image_patch_size``."""
    low, high = image_pixel_bounds(check_patch_size(image_patch_size) * 2)
    preset = qwen_vl_utils_preset(image_patch_size)
    return preset.replace(image_min_pixels=low, image_max_pixels=high)


def load_vision_info(
    conversations: Conversation | Sequence[Conversation],
    return_video_kwargs: bool,
    return_video_metadata: bool,
    image_patch_size: int,
    *,
    policy: FetchPolicy | None,
    image_options: ImageOptions | None,
    video_options: VideoOptions | None,
    workers: int | None,
    cache: MediaCache | None,
    limits: CallLimits | None,
    preset: Preset | None = None,
    read_env: bool = False,
    max_total_tokens: int | None = None,
    processor: Any = None,
) -> tuple[Any, ...]:
    """What :func:`process_vision_info` runs once its keywords are resolved.

    ``read_env``: let qwen-vl-utils' ``FORCE_QWENVL_VIDEO_READER`` pick the video backend
    where ``video_options`` leave it ``"auto"`` (the drop-in sets it; a Loader does not).

    ``preset`` (what :class:`vlprep.Loader` passes when it holds one): size images and
    videos for that model configuration (its grid, image bounds and video defaults, as
    :func:`vlprep._image.fetch_image_for` and ``fetch_video(preset=)``) instead of
    qwen-vl-utils' defaults for ``image_patch_size``.

    ``max_total_tokens`` / ``processor``: fit first (:func:`vlprep.fit`), sizing for
    ``preset`` or, without one, qwen-vl-utils' numbers for ``image_patch_size``.

    Raises:
        As :func:`process_vision_info`; BudgetError when the fit finds no sizes.
    """
    if max_total_tokens is not None:
        conversations = apply_fits(
            conversations,
            fit(
                conversations,
                max_total_tokens,
                processor=processor,
                preset=preset if preset is not None else _drop_in_preset(image_patch_size),
                policy=policy,
                image_options=image_options,
                video_options=video_options,
            ),
        )
    budget = CallBudget(limits)
    elements = budget.counted(extract_vision_info(conversations))
    sizing: Preset | int  # a grid factor: qwen-vl-utils' defaults (the drop-in's)
    if preset is not None:
        sizing = preset
    else:
        sizing = check_patch_size(image_patch_size) * 2 if elements else 0

    def load(index: int) -> tuple[bool, Any, float]:
        ele = elements[index]
        kind = element_kind(ele)
        if kind == "image":
            image = fetch_image_item(
                ele,
                sizing,
                policy=policy,
                options=image_options,
                cache=cache,
                budget=budget,
            )
            return True, image, 0.0
        if kind == "video":
            video, metadata, fps = fetch_video_item(
                ele,
                sizing,
                policy=policy,
                options=video_options,
                image_options=image_options,
                cache=cache,
                budget=budget,
                read_env=read_env,
            )
            return False, (video, metadata) if return_video_metadata else video, float(fps)
        raise InvalidInputError(
            "a vision element needs an 'image', 'image_url' or 'video' source, "
            f"got keys {sorted(str(k) for k in ele)[:8]}"
        )

    images: list[Image.Image] = []
    videos: list[Any] = []
    sample_fps: list[float] = []
    for is_image, item, fps in ordered_map(load, len(elements), resolve_workers(workers)):
        if is_image:
            images.append(item)
        else:
            videos.append(item)
            sample_fps.append(fps)
    video_kwargs: dict[str, Any] = {"do_sample_frames": False}
    if not return_video_metadata:
        video_kwargs["fps"] = sample_fps
    result = (images or None, videos or None)
    if return_video_kwargs:
        return (*result, video_kwargs)
    return result
