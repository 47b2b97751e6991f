"""Plans: what :func:`vlprep.build_inputs` will make of each image and video, frozen.

:func:`plan` computes, for every vision element of a batch, what the loaders would: the
content digest of the fetched bytes, the resized size, a video's sampled frame indices,
sample rate and frame times, the patch grid and the token count, with the preset and the
library versions. A :class:`Plan` is a value: :meth:`Plan.to_json` / :meth:`Plan.from_json`
carry it to another process or machine, and ``build_inputs(..., plan=plan)`` loads each
element at exactly the planned size and frames (:func:`load_planned`), so a training
run's preprocessing is reproduced at inference even where a later vlprep would size or
sample differently. The bytes are hashed again before anything is decoded: media that
changed since the plan was made is refused, never silently preprocessed differently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as _metadata
from typing import Any, Literal

import PIL
import torch
from PIL import Image

from vlprep._cache import digest_arrays, digest_bytes
from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import InvalidInputError
from vlprep._image import image_content, load_image_at, read_header
from vlprep._limits import CallBudget
from vlprep._messages import Conversation, as_conversations, extract_vision_info
from vlprep._numbers import shown
from vlprep._planning import image_size_for, plan_frame_list, upright_size, video_target_size
from vlprep._presets import Preset, get_preset, preset_from_processor, refuse_video
from vlprep._sampling import FramePlan
from vlprep._sizing import count_tokens
from vlprep._sources import FetchPolicy, fetch
from vlprep._specs import VideoSpec, element_kind, parse_image_element, parse_video_element
from vlprep._version import __version__
from vlprep._video import (
    FRAMES_SECONDS,
    LoadedVideo,
    load_planned_clip,
    load_planned_frames,
    probe_clip,
)
from vlprep._video_input import frames_from_array

__all__ = ["PLAN_FORMAT", "ElementPlan", "Plan", "check_replay", "load_planned", "plan"]

logger = logging.getLogger(__name__)

PLAN_FORMAT = "vlprep-plan/1"
"""The ``format`` field of a plan's JSON; another value is refused by :meth:`Plan.from_json`."""

_DECODERS = ("av", "torchcodec", "decord")
_IMAGE_KEYS = ("kind", "digest", "size", "grid", "tokens")
_VIDEO_KEYS = ("indices", "sample_fps", "clip_frames", "fps", "seconds", "backend")

Kind = Literal["image", "video"]


@dataclass(frozen=True, slots=True)
class ElementPlan:
    """One image or video as planned.

    Attributes:
        kind: ``"image"`` or ``"video"``.
        digest: SHA-256 (hex) of the fetched bytes (of a ``PIL.Image`` or array: of what
            decides its pixels, as :class:`vlprep.MediaCache` keys it).
        size: resized ``(height, width)`` (of each frame, for a video).
        grid: patch grid ``(t, h, w)``, as ``image_grid_thw`` / ``video_grid_thw``.
        tokens: vision tokens, ``t * h * w / merge_size**2``.
        indices: a video's sampled frame indices (``frames_indices``); ``None`` for images.
        sample_fps: frames per second of the sampled sequence (video).
        clip_frames: frames in the clip (``total_num_frames``; video; a frame list's may
            be fractional, ``total / sample_fps * raw_fps``).
        fps: the stream's frame rate as the container reports it (a frame list's
            ``raw_fps``; video).
        seconds: the sampled frames' times from the first frame, where the container's
            index gives them without decoding (video; ``None`` otherwise).
        backend: the video decoder that read the container; ``"frames"`` for a frame
            list or array (video).
    """

    kind: Kind
    digest: str
    size: tuple[int, int]
    grid: tuple[int, int, int]
    tokens: int
    indices: tuple[int, ...] | None = None
    sample_fps: float | None = None
    clip_frames: float | None = None
    fps: float | None = None
    seconds: tuple[float, ...] | None = None
    backend: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this element (video fields only for videos)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "digest": self.digest,
            "size": list(self.size),
            "grid": list(self.grid),
            "tokens": self.tokens,
        }
        if self.kind == "video":
            out.update(
                indices=list(self.indices or ()),
                sample_fps=self.sample_fps,
                clip_frames=self.clip_frames,
                fps=self.fps,
                seconds=None if self.seconds is None else list(self.seconds),
                backend=self.backend,
            )
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), allow_nan=False)


@dataclass(frozen=True, slots=True)
class Plan:
    """Every vision element of a batch as :func:`plan` planned it; replay with
    ``build_inputs(..., plan=...)``.

    Attributes:
        preset: the preset the sizes were computed for (``build_inputs`` must use an equal one).
        conversations: per conversation, its elements in prompt order.
        settings: the decode options that change pixels: ``image_decode``,
            ``exif_transpose``, ``video_resize``, ``video_seek`` (a replay must use the same).
        versions: ``vlprep``, ``pillow``, ``torch`` and the installed video decoders
            (``av``, ``torchcodec``, ``decord``) where the plan was made; a replay under
            other versions logs a warning naming them.
    """

    preset: Preset
    conversations: tuple[tuple[ElementPlan, ...], ...]
    settings: Mapping[str, str | bool] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def elements(self) -> tuple[ElementPlan, ...]:
        """Every element, conversation after conversation (``extract_vision_info`` order)."""
        return tuple(e for conversation in self.conversations for e in conversation)

    def to_json(self, indent: int | None = None) -> str:
        """The plan as JSON text (floats written exactly; :meth:`from_json` reads it back)."""
        return json.dumps(
            {
                "format": PLAN_FORMAT,
                "versions": dict(self.versions),
                "preset": _preset_dict(self.preset),
                "settings": dict(self.settings),
                "conversations": [[e.to_dict() for e in c] for c in self.conversations],
            },
            indent=indent,
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """Read a plan written by :meth:`to_json`, checking every field.

        Raises:
            InvalidInputError: not JSON, another ``format``, or a field missing or of the
                wrong type (the message names it, e.g. ``conversations[0][1].size``).
        """
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"a plan must be JSON text: {exc}") from None
        obj = _object(data, "plan")
        if obj.get("format") != PLAN_FORMAT:
            raise InvalidInputError(
                f"plan field 'format' must be {PLAN_FORMAT!r}, got {shown(obj.get('format'))}"
            )
        versions = _object(_key(obj, "versions", "plan"), "versions")
        for name, value in versions.items():
            _typed(value, str, f"versions.{name}")
        settings = _object(_key(obj, "settings", "plan"), "settings")
        for name, value in settings.items():
            if not isinstance(value, (str, bool)):
                raise InvalidInputError(f"plan field 'settings.{name}' must be a string or bool")
        conversations = _typed(_key(obj, "conversations", "plan"), list, "conversations")
        parsed = []
        for c, conversation in enumerate(conversations):
            items = _typed(conversation, list, f"conversations[{c}]")
            parsed.append(
                tuple(_element(item, f"conversations[{c}][{e}]") for e, item in enumerate(items))
            )
        return cls(
            preset=_preset(_object(_key(obj, "preset", "plan"), "preset")),
            conversations=tuple(parsed),
            settings=dict(settings),
            versions=dict(versions),
        )


# ---------------------------------------------------------------------------- JSON reading


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"plan field '{where}' must be an object, got {type(value).__name__}"
        )
    return value


def _key(obj: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        path = name if where == "plan" else f"{where}.{name}"
        raise InvalidInputError(f"plan field '{path}' is missing")
    return obj[name]


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidInputError(f"plan field '{where}' must be {name}, got {shown(value)}")
    return value


def _ints(value: Any, where: str, length: int | None = None) -> tuple[int, ...]:
    items = _typed(value, list, where)
    if length is not None and len(items) != length:
        raise InvalidInputError(f"plan field '{where}' must have {length} entries")
    out = tuple(_typed(v, int, f"{where}[{i}]") for i, v in enumerate(items))
    if any(v < 0 for v in out):
        raise InvalidInputError(f"plan field '{where}' must hold non-negative ints")
    return out


def _element(value: Any, where: str) -> ElementPlan:
    obj = _object(value, where)
    kind = _key(obj, "kind", where)
    if kind not in ("image", "video"):
        raise InvalidInputError(
            f"plan field '{where}.kind' must be 'image' or 'video', got {shown(kind)}"
        )
    digest = _typed(_key(obj, "digest", where), str, f"{where}.digest")
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise InvalidInputError(f"plan field '{where}.digest' must be 64 lowercase hex digits")
    size = _ints(_key(obj, "size", where), f"{where}.size", 2)
    grid = _ints(_key(obj, "grid", where), f"{where}.grid", 3)
    tokens = _typed(_key(obj, "tokens", where), int, f"{where}.tokens")
    allowed = set(_IMAGE_KEYS) | (set(_VIDEO_KEYS) if kind == "video" else set())
    extra = sorted(set(obj) - allowed)
    if extra:
        raise InvalidInputError(f"plan field '{where}.{extra[0]}' is not a {kind} plan field")
    if kind == "image":
        return ElementPlan("image", digest, (size[0], size[1]), (grid[0], grid[1], grid[2]), tokens)
    seconds_value = _key(obj, "seconds", where)
    seconds = None
    if seconds_value is not None:
        items = _typed(seconds_value, list, f"{where}.seconds")
        seconds = tuple(
            float(_typed(v, float, f"{where}.seconds[{i}]")) for i, v in enumerate(items)
        )
    return ElementPlan(
        "video",
        digest,
        (size[0], size[1]),
        (grid[0], grid[1], grid[2]),
        tokens,
        indices=_ints(_key(obj, "indices", where), f"{where}.indices"),
        sample_fps=float(_typed(_key(obj, "sample_fps", where), float, f"{where}.sample_fps")),
        clip_frames=_typed(_key(obj, "clip_frames", where), float, f"{where}.clip_frames"),
        fps=float(_typed(_key(obj, "fps", where), float, f"{where}.fps")),
        seconds=seconds,
        backend=_typed(_key(obj, "backend", where), str, f"{where}.backend"),
    )


def _preset_dict(preset: Preset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(preset):
        value = getattr(preset, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


_OPTIONAL_PRESET_FIELDS = ("image_size", "image_tokens")  # absent from older plans: None


def _preset(obj: dict[str, Any]) -> Preset:
    names = [f.name for f in dataclasses.fields(Preset)]
    obj = {**dict.fromkeys(_OPTIONAL_PRESET_FIELDS), **obj}
    missing = [name for name in names if name not in obj]
    if missing:
        raise InvalidInputError(f"plan field 'preset.{missing[0]}' is missing")
    extra = sorted(set(obj) - set(names))
    if extra:
        raise InvalidInputError(f"plan field 'preset.{extra[0]}' is not a Preset field")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Preset):
        value = obj[f.name]
        if f.name in _OPTIONAL_PRESET_FIELDS:
            values[f.name] = _optional_ints(value, f"preset.{f.name}")
            continue
        if isinstance(value, list):
            value = tuple(_typed(v, float, f"preset.{f.name}[{i}]") for i, v in enumerate(value))
        elif not isinstance(value, (str, int, float)):
            raise InvalidInputError(
                f"plan field 'preset.{f.name}' must be a number or string, got {shown(value)}"
            )
        values[f.name] = value
    try:
        return Preset(**values)
    except (InvalidInputError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"plan field 'preset' is not a valid Preset: {exc}") from None


def _optional_ints(value: object, where: str) -> object:
    """``None``, an int, or a list of ints as a tuple (Preset validates the rest)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    raise InvalidInputError(f"plan field {where!r} must be null, an int or a list of ints")


# ---------------------------------------------------------------------------- making


def current_versions() -> dict[str, str]:
    """``vlprep``, ``pillow``, ``torch`` and each installed video decoder's version."""
    versions = {"vlprep": __version__, "pillow": PIL.__version__, "torch": torch.__version__}
    for name in _DECODERS:
        try:
            versions[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            continue
    return versions


def _settings(
    image_options: ImageOptions | None, video_options: VideoOptions | None
) -> dict[str, str | bool]:
    image = image_options or ImageOptions()
    video = video_options or VideoOptions()
    return {
        "image_decode": image.decode,
        "exif_transpose": image.exif_transpose,
        "video_resize": video.resize,
        "video_seek": video.seek,
    }


def _is_frames(source: object) -> bool:
    """A frame list or array video (as :mod:`vlprep._video` dispatches), not a container."""
    return isinstance(source, (list, tuple)) or hasattr(source, "shape")


def _container_bytes(source: object, policy: FetchPolicy | None) -> bytes:
    if isinstance(source, (str, bytes, bytearray, memoryview)):
        return fetch(source, policy, "video").data
    raise InvalidInputError(
        f"a video given as {type(source).__name__} (a file object) cannot be planned: it "
        "would be read to hash it; pass its path, URL or bytes"
    )


def _frames_content(
    source: object, policy: FetchPolicy | None, options: ImageOptions | None
) -> tuple[object, str]:
    """``(frames to load, digest hex)`` of a frame list (each item fetched once, the digest
    over the items' digests) or an array (:func:`vlprep._cache.digest_arrays`)."""
    if isinstance(source, (list, tuple)):
        contents = [image_content(item, policy, options) for item in source]
        digest = hashlib.sha256(b"".join(d for _, d in contents)).hexdigest()
        return [item for item, _ in contents], digest
    return source, digest_arrays(frames_from_array(source)).hex()


def _plan_image(
    ele: Mapping[str, Any],
    preset: Preset,
    policy: FetchPolicy | None,
    options: ImageOptions | None,
) -> ElementPlan:
    spec = parse_image_element(ele)
    options = options or ImageOptions()
    source, digest = image_content(spec.source, policy, options)
    height, width = upright_size(
        read_header(source, policy=policy, options=options), options.exif_transpose
    )
    size = image_size_for(spec, height, width, preset, max_output_pixels=options.max_output_pixels)
    grid = (1, size[0] // preset.patch_size, size[1] // preset.patch_size)
    tokens = count_tokens(grid, preset.merge_size)
    if preset.image_tokens is not None:
        tokens = preset.image_tokens  # the first generation: fixed, whatever the grid
    return ElementPlan("image", digest.hex(), size, grid, tokens)


def _plan_frames(
    spec: VideoSpec,
    preset: Preset,
    policy: FetchPolicy | None,
    options: VideoOptions | None,
    image_options: ImageOptions | None,
) -> ElementPlan:
    """A frame list or array: :func:`vlprep._planning.plan_frame_list`, sized from the
    first frame as the loader does."""
    listed = plan_frame_list(
        spec,
        len(spec.source)
        if isinstance(spec.source, (list, tuple))
        else len(frames_from_array(spec.source)),
        options,
    )
    frames, digest = _frames_content(spec.source, policy, image_options)
    if isinstance(frames, list):
        exif = (image_options or ImageOptions()).exif_transpose
        header = read_header(frames[0], policy=policy, options=image_options)
        height, width = upright_size(header, exif)
    else:
        height, width = frames_from_array(frames)[0].shape[:2]
    size = video_target_size(
        spec, height, width, listed.total, preset.factor, options=options, preset=preset
    )
    t = -(-listed.total // preset.temporal_patch_size)
    grid = (t, size[0] // preset.patch_size, size[1] // preset.patch_size)
    return ElementPlan(
        "video",
        digest,
        size,
        grid,
        count_tokens(grid, preset.merge_size),
        indices=listed.indices,
        sample_fps=float(listed.sample_fps),
        clip_frames=listed.clip_frames,
        fps=float(listed.raw_fps),
        seconds=None,
        backend="frames",
    )


def _plan_video(
    ele: Mapping[str, Any],
    preset: Preset,
    policy: FetchPolicy | None,
    options: VideoOptions | None,
    image_options: ImageOptions | None,
) -> ElementPlan:
    refuse_video(preset)
    spec = parse_video_element(ele)
    if _is_frames(spec.source):
        return _plan_frames(spec, preset, policy, options, image_options)
    data = _container_bytes(spec.source, policy)
    meta, (frames, indices, size), seconds = probe_clip(
        dataclasses.replace(spec, source=data), preset, policy, options or VideoOptions()
    )
    t = -(-len(indices) // preset.temporal_patch_size)
    grid = (t, size[0] // preset.patch_size, size[1] // preset.patch_size)
    return ElementPlan(
        "video",
        digest_bytes(data).hex(),
        size,
        grid,
        count_tokens(grid, preset.merge_size),
        indices=tuple(indices),
        sample_fps=float(frames.sample_fps),
        clip_frames=int(frames.clip_frames),
        fps=float(meta.fps),
        seconds=seconds,
        backend=str(meta.backend),
    )


def plan(
    conversations: Conversation | Sequence[Conversation],
    processor: Any = None,
    *,
    preset: Preset | str | None = None,
    policy: FetchPolicy | None = None,
    image_options: ImageOptions | None = None,
    video_options: VideoOptions | None = None,
) -> Plan:
    """Plan every image and video of ``conversations`` as :func:`vlprep.build_inputs` would.

    Each element is fetched and hashed; an image's header and a video container's index
    are read (no pixel is decoded) and sized and sampled exactly as the loaders do.
    Replay with ``build_inputs(conversations, processor, plan=plan)``, in this process or
    another (:meth:`Plan.to_json`, :meth:`Plan.from_json`), with the same options.

    Args:
        conversations: one conversation or a batch, as for ``build_inputs``.
        processor: the transformers processor ``build_inputs`` will get; its preset is
            derived with :func:`vlprep.preset_from_processor`. Not needed with ``preset``.
        preset: the preset instead (a :class:`Preset` or a family name).
        policy, image_options, video_options: as for ``build_inputs``.

    Raises:
        InvalidInputError: neither ``processor`` nor ``preset``; malformed messages.
        FetchError, DecodeError, ...: from fetching or reading the media.
    """
    if preset is None:
        if processor is None:
            raise InvalidInputError("plan() needs the processor or a preset")
        preset = preset_from_processor(processor)
    preset = get_preset(preset)
    planned = []
    for conversation in as_conversations(conversations):
        items = []
        for ele in extract_vision_info([conversation]):
            if element_kind(ele) == "video":
                items.append(_plan_video(ele, preset, policy, video_options, image_options))
            else:
                items.append(_plan_image(ele, preset, policy, image_options))
        planned.append(tuple(items))
    return Plan(
        preset=preset,
        conversations=tuple(planned),
        settings=_settings(image_options, video_options),
        versions=current_versions(),
    )


# ---------------------------------------------------------------------------- replaying


def check_replay(
    given: Plan,
    batch: Sequence[Conversation],
    preset: Preset,
    image_options: ImageOptions | None,
    video_options: VideoOptions | None,
) -> list[ElementPlan]:
    """The plan's elements in ``extract_vision_info(batch)`` order, once the plan is known
    to fit this call: same preset, same elements (count and kind per conversation), same
    pixel-changing options. Other library versions than the plan's log a warning.

    Raises:
        InvalidInputError: naming what does not match.
    """
    if not isinstance(given, Plan):
        raise InvalidInputError(f"plan must be a vlprep Plan, got {type(given).__name__}")
    if given.preset != preset:
        ours, theirs = _preset_dict(preset), _preset_dict(given.preset)
        differ = [name for name in ours if ours[name] != theirs[name]]
        raise InvalidInputError(
            "the plan was made for another preset (differs in "
            f"{', '.join(differ)}); pass the processor or preset it was made with"
        )
    if len(given.conversations) != len(batch):
        raise InvalidInputError(
            f"the plan covers {len(given.conversations)} conversations, the call has {len(batch)}"
        )
    for c, (planned, conversation) in enumerate(zip(given.conversations, batch, strict=True)):
        kinds = [element_kind(e) for e in extract_vision_info([conversation])]
        if kinds != [e.kind for e in planned]:
            raise InvalidInputError(
                f"conversation {c} has vision elements {kinds}, the plan "
                f"{[e.kind for e in planned]}: the plan was made for other conversations"
            )
    settings = _settings(image_options, video_options)
    for name, value in settings.items():
        if name in given.settings and given.settings[name] != value:
            raise InvalidInputError(
                f"the plan was made with {name}={given.settings[name]!r}, this call has "
                f"{value!r}; pass the options the plan was made with"
            )
    here = current_versions()
    differ = sorted(
        f"{name} {given.versions.get(name, 'absent')} -> {here.get(name, 'absent')}"
        for name in set(here) | set(given.versions)
        if here.get(name) != given.versions.get(name)
    )
    if differ:
        logger.warning(
            "replaying a plan made under other versions (%s): sizes and frames are the "
            "plan's, pixels may differ where a decoder or resize changed",
            "; ".join(differ),
        )
    return list(given.elements)


def _changed(where: str) -> InvalidInputError:
    return InvalidInputError(
        f"the media changed since the plan was made: the {where} bytes' digest differs "
        "from the plan's; make a new plan"
    )


def load_planned(
    ele: Mapping[str, Any],
    planned: ElementPlan,
    preset: Preset,
    *,
    policy: FetchPolicy | None,
    image_options: ImageOptions | None,
    video_options: VideoOptions | None,
    budget: CallBudget,
) -> Image.Image | LoadedVideo:
    """Load one element at exactly ``planned``'s size (and frames), after checking that
    its content is the plan's. What ``build_inputs(..., plan=...)`` calls for each item.

    Raises:
        InvalidInputError: the content's digest is not the plan's (the media changed).
        VlprepError: fetching or decoding failed.
    """
    with budget.timing():
        policy = budget.policy(policy)
        if planned.kind == "image":
            spec = parse_image_element(ele)
            source, digest = image_content(spec.source, policy, image_options)
            if digest.hex() != planned.digest:
                raise _changed("image")
            budget.charge(planned.size[0] * planned.size[1], "image")
            return load_image_at(source, planned.size, policy=policy, options=image_options)
        video_spec = parse_video_element(ele)
        if _is_frames(video_spec.source):
            items, digest_hex = _frames_content(video_spec.source, policy, image_options)
            if digest_hex != planned.digest:
                raise _changed("video frames'")
            video, metadata, sample_fps = load_planned_frames(
                dataclasses.replace(video_spec, source=items),
                planned.size,
                preset,
                policy=policy,
                options=video_options,
                image_options=image_options,
                budget=budget,
            )
        else:
            data = _container_bytes(video_spec.source, policy)
            if digest_bytes(data).hex() != planned.digest:
                raise _changed("video")
            indices = list(planned.indices or ())
            frames = FramePlan(
                tuple(indices), float(planned.sample_fps or 0.0), int(planned.clip_frames or 0)
            )
            video, metadata, sample_fps = load_planned_clip(
                dataclasses.replace(video_spec, source=data),
                (frames, indices, planned.size),
                preset,
                policy=policy,
                options=video_options,
                budget=budget,
            )
    # What the text and second_per_grid_ts read: the plan's, whatever this decoder says.
    metadata = dict(metadata)
    if planned.fps is not None:
        metadata["fps"] = planned.fps
    if planned.clip_frames is not None:
        metadata["total_num_frames"] = planned.clip_frames
    if planned.seconds is not None:
        metadata[FRAMES_SECONDS] = planned.seconds
    if planned.sample_fps is not None:
        sample_fps = planned.sample_fps
    return LoadedVideo(video, metadata, float(sample_fps))
