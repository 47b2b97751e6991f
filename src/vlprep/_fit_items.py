"""The items of a token-budget fit: every image and video as a ladder of sizes, from headers.

Each vision element becomes an :class:`ImageItem` or :class:`VideoItem` that knows, from its
header (or container index) alone, every size it may take without leaving its own bounds,
ordered by token count: its *ladder*. A state on the ladder is an element-key rewrite
(``max_pixels`` for an image; ``max_pixels`` and ``nframes`` for a video), and every size
is computed by :mod:`vlprep.planning` from the rewritten element, so loading the rewritten
element gives exactly the size the fit counted.

Ladders:

- **image**: the sizes ``image_target_size`` gives as the element's ``max_pixels`` runs
  (integers) from its lower bound (``min_pixels`` or the preset's) up to what it gets
  unfitted; the top rung is the unfitted size, and no rung has as many tokens as it. One
  step up is the next distinct size (one side grows by one grid unit, ``factor`` pixels).
- **video** (a container): resolution first, then frames. Going down, the frame size
  shrinks along the image ladder (per-frame ``max_pixels``) to the per-frame minimum
  (``min_pixels`` or the preset's ``video_min_pixels``), then the frame count drops by
  one frame-pair (``nframes``, two frames: one temporal patch) at a time to the minimum
  frame count (``min_frames`` or the preset's, at least 2; never below it). A video
  whose element sets ``nframes``, a frame list or array, and a clip padded because it is
  too short keep their frame count; an element with ``resized_height``/``resized_width``
  keeps its size (a fixed item when both hold).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoMetadata, VideoOptions, probe_video
from vlprep._errors import InvalidInputError
from vlprep._estimates import shown_source
from vlprep._expansion import video_timestamps
from vlprep._image import HEADER_PREFIX, read_header
from vlprep._numbers import shown
from vlprep._planning import (
    image_target_size,
    plan_clip,
    plan_frame_list,
    refuse_stream_key,
    stream_options,
    upright_size,
    video_target_size,
)
from vlprep._presets import Preset
from vlprep._sampling import FRAME_FACTOR, video_frame_pixels
from vlprep._sizing import ceil_by_factor, tokens_for_size
from vlprep._sources import FetchPolicy
from vlprep._specs import VideoSpec, parse_image_element, parse_video_element
from vlprep._video_input import frames_from_array, opened_container, video_backend

__all__ = ["ImageItem", "Item", "State", "VideoItem", "fit_keys", "make_item"]

State = tuple[int, float]
"""A ladder position: ``(frames, max_pixels)``; images have ``frames`` 0."""


def fit_keys(ele: Mapping[str, Any]) -> tuple[int, float]:
    """``(min_tokens, priority)`` of an element (``0`` and ``0.0`` when absent).

    Raises:
        InvalidInputError: ``min_tokens`` not an int >= 0, ``priority`` not a finite number.
    """
    floor = ele.get("min_tokens", 0)
    if floor is None:
        floor = 0
    if isinstance(floor, bool) or not isinstance(floor, int) or floor < 0:
        raise InvalidInputError(f"'min_tokens' must be an int >= 0, got {shown(floor)}")
    priority = ele.get("priority", 0)
    if priority is None:
        priority = 0
    if (
        isinstance(priority, bool)
        or not isinstance(priority, (int, float))
        or not math.isfinite(priority)
    ):
        raise InvalidInputError(f"'priority' must be a finite number, got {shown(priority)}")
    return floor, float(priority)


@dataclass
class _Ladder:
    """The sizes ``size_at(m)`` takes for integer ``m`` in ``[low, high]``, capped at
    ``top`` (the unfitted size, reached at ``high``)."""

    height: float  # upright source size, as planning receives it
    width: float
    factor: int
    low: int
    high: float
    top: tuple[int, int]
    sizer: Callable[[float], tuple[int, int]]  # m -> (h, w): planning on the rewritten element
    memo: dict[float, tuple[int, int]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.top_tokens = tokens_for_size(*self.top, self.factor)

    def size(self, m: float) -> tuple[int, int]:
        if m >= self.high:
            return self.top
        found = self.memo.get(m)
        if found is None:
            found = self.sizer(m)
            if tokens_for_size(found[0], found[1], self.factor) >= self.top_tokens:
                found = self.top  # never more tokens than unfitted; the top rung stands in
            self.memo[m] = found
        return found

    @property
    def fixed(self) -> bool:
        return self.low >= self.high or self.size(self.low) == self.top

    def at_or_below(self, m: float) -> float:
        """The state for a target ``max_pixels`` of ``m`` (clamped to the ladder)."""
        if m >= self.high:
            return self.high
        return float(max(self.low, math.floor(m)))

    def step_up(self, m: float) -> float | None:
        """The smallest ``max_pixels`` above ``m`` whose size differs: one rung up."""
        if m >= self.high:
            return None
        h, w = self.size(m)
        if (h, w) == self.top:
            return self.high
        f = self.factor
        # where one side reaches the next multiple of the factor (smart_resize's floor)
        ratio = self.width / self.height
        bound = min((h + f) ** 2 * ratio, (w + f) ** 2 / ratio)
        nxt = max(int(m) + 1, math.ceil(bound))
        for _ in range(4):  # float rounding at the threshold: at most a unit or two off
            if nxt >= self.high:
                return self.high
            if self.size(nxt) != (h, w):
                return float(nxt)
            nxt += 1
        lo, hi = int(m) + 1, math.floor(self.high)  # not reached on any size we know of
        while lo < hi:
            mid = (lo + hi) // 2
            if self.size(mid) != (h, w):
                hi = mid
            else:
                lo = mid + 1
        return float(lo) if lo < self.high and self.size(lo) != (h, w) else self.high


@dataclass
class Item:
    """One image or video of a conversation, with what the solver needs.

    Attributes:
        kind: ``"image"`` or ``"video"``.
        message: index of the message (turn) that holds it.
        element: its index among the conversation's vision elements.
        source: the source as shown in reports (paths and URLs as given).
        original: upright source size ``(h, w)`` (a video's frame size).
        min_tokens / priority: the element's fit keys.
    """

    kind: Literal["image", "video"]
    message: int
    element: int
    source: str
    original: tuple[int, int]
    min_tokens: int
    priority: float

    def top(self) -> State:
        raise NotImplementedError

    def tokens(self, state: State) -> int:
        raise NotImplementedError

    def size(self, state: State) -> tuple[int, int]:
        raise NotImplementedError

    def frames(self, state: State) -> int | None:
        return None

    def at_scale(self, scale: float) -> State:
        raise NotImplementedError

    def step_up(self, state: State) -> State | None:
        raise NotImplementedError

    def keys(self, state: State) -> dict[str, float | int]:
        raise NotImplementedError

    def floor(self) -> State:
        """The lowest state, raised to ``min_tokens`` where that is set (at most the top)."""
        state = self.at_scale(0.0)
        if self.min_tokens and self.tokens(state) < self.min_tokens:
            nxt: State | None = state
            while nxt is not None and self.tokens(nxt) < self.min_tokens:
                state = nxt
                nxt = self.step_up(state)
            state = nxt if nxt is not None else self.top()
        return state


@dataclass
class ImageItem(Item):
    """An image: one ladder of ``max_pixels``."""

    ladder: _Ladder | None = None  # None: a fixed size (resized_height/resized_width)
    fixed_size: tuple[int, int] = (0, 0)
    factor: int = 28

    def top(self) -> State:
        return (0, self.ladder.high if self.ladder else 0.0)

    def size(self, state: State) -> tuple[int, int]:
        return self.ladder.size(state[1]) if self.ladder else self.fixed_size

    def tokens(self, state: State) -> int:
        return tokens_for_size(*self.size(state), self.factor)

    def at_scale(self, scale: float) -> State:
        if self.ladder is None or scale >= 1.0:
            return self.top()
        top = self.ladder.top
        return (0, self.ladder.at_or_below(scale * top[0] * top[1]))

    def step_up(self, state: State) -> State | None:
        if self.ladder is None:
            return None
        nxt = self.ladder.step_up(state[1])
        return None if nxt is None else (0, nxt)

    def keys(self, state: State) -> dict[str, float | int]:
        if self.ladder is None or state[1] >= self.ladder.high:
            return {}
        return {"max_pixels": int(state[1])}


@dataclass
class VideoItem(Item):
    """A video: frame size on a ``max_pixels`` ladder, then frame pairs (``nframes``)."""

    ladder: _Ladder | None = None  # None: the frame size is fixed
    fixed_size: tuple[int, int] = (0, 0)
    most_frames: int = 2
    least_frames: int = 2
    temporal: int = 2
    factor: int = 28
    stamps_of: Any = None  # frames -> the Qwen3-VL timestamps of that many frames

    def top(self) -> State:
        return (self.most_frames, self.ladder.high if self.ladder else 0.0)

    def size(self, state: State) -> tuple[int, int]:
        return self.ladder.size(state[1]) if self.ladder else self.fixed_size

    def frames(self, state: State) -> int | None:
        return state[0]

    def tokens(self, state: State) -> int:
        return -(-state[0] // self.temporal) * tokens_for_size(*self.size(state), self.factor)

    def _lowest_m(self) -> float:
        return float(self.ladder.low) if self.ladder else 0.0

    def at_scale(self, scale: float) -> State:
        if scale >= 1.0:
            return self.top()
        if self.ladder is not None:
            top = self.ladder.top
            area = top[0] * top[1]
            m = self.ladder.at_or_below(scale * area)
            if m > self.ladder.low or self.most_frames == self.least_frames:
                return (self.most_frames, m)
            floor_size = self.ladder.size(self.ladder.low)
            per_frame = floor_size[0] * floor_size[1]
            volume = scale * area * self.most_frames
        else:
            per_frame = self.fixed_size[0] * self.fixed_size[1]
            volume = scale * per_frame * self.most_frames
        frames = int(volume // per_frame) // FRAME_FACTOR * FRAME_FACTOR
        frames = min(self.most_frames, max(self.least_frames, frames))
        return (frames, self._lowest_m())

    def step_up(self, state: State) -> State | None:
        frames, m = state
        if frames < self.most_frames:
            return (frames + FRAME_FACTOR, m)
        if self.ladder is None:
            return None
        nxt = self.ladder.step_up(m)
        return None if nxt is None else (frames, nxt)

    def keys(self, state: State) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        if self.ladder is not None and state[1] < self.ladder.high:
            out["max_pixels"] = int(state[1])
        if state[0] != self.most_frames:
            out["nframes"] = state[0]
        return out


# ---------------------------------------------------------------------------- building


def _image_item(
    ele: Mapping[str, Any],
    where: tuple[int, int],
    preset: Preset,
    policy: FetchPolicy | None,
    options: ImageOptions,
) -> ImageItem:
    spec = parse_image_element(ele)
    found = read_header(spec.source, policy=policy, options=options, prefix=HEADER_PREFIX)
    height, width = upright_size(found, options.exif_transpose)
    bounds = (preset.image_min_pixels, preset.image_max_pixels)
    limit = options.max_output_pixels
    top = image_target_size(spec, height, width, preset.factor, bounds, max_output_pixels=limit)
    floor, priority = fit_keys(ele)
    common = {
        "kind": "image",
        "message": where[0],
        "element": where[1],
        "source": shown_source(spec.source),
        "original": (int(height), int(width)),
        "min_tokens": floor,
        "priority": priority,
        "factor": preset.factor,
    }
    if spec.resized_height is not None and spec.resized_width is not None:
        return ImageItem(**common, fixed_size=top)  # type: ignore[arg-type]
    # image_target_size's bounds for this element (an element bound wins over a default)
    low = spec.min_pixels if spec.min_pixels is not None else bounds[0]
    high = spec.max_pixels if spec.max_pixels is not None else bounds[1]
    if spec.min_pixels is None:
        low = min(low, high)
    if spec.max_pixels is None:
        high = max(high, low)

    def sizer(m: float) -> tuple[int, int]:
        rewritten = dataclasses.replace(spec, max_pixels=m)
        return image_target_size(
            rewritten, height, width, preset.factor, bounds, max_output_pixels=limit
        )

    ladder = _Ladder(height, width, preset.factor, math.ceil(low), high, top, sizer)
    return ImageItem(**common, ladder=None if ladder.fixed else ladder, fixed_size=top)  # type: ignore[arg-type]


def _probe(spec: VideoSpec, policy: FetchPolicy | None, options: VideoOptions) -> VideoMetadata:
    options = stream_options(spec, options)  # the element's video_stream, as the loader
    with opened_container(spec.source, policy) as container:
        return probe_video(container, options, backend=video_backend(options))


def _video_item(
    ele: Mapping[str, Any],
    where: tuple[int, int],
    preset: Preset,
    *,
    policy: FetchPolicy | None,
    options: VideoOptions,
    image_options: ImageOptions,
    timestamps: str,
) -> VideoItem:
    spec = parse_video_element(ele)
    options = stream_options(spec, options)
    floor, priority = fit_keys(ele)
    source = spec.source
    stamps_of = None
    if isinstance(source, (list, tuple)) or hasattr(source, "shape"):
        refuse_stream_key(spec)
        if isinstance(source, (list, tuple)):
            listed = plan_frame_list(spec, len(source), options)
            found = read_header(source[0], policy=policy, options=image_options)
            height, width = upright_size(found, image_options.exif_transpose)
        else:
            arrays = frames_from_array(source)
            listed = plan_frame_list(spec, len(arrays), options)
            height, width = arrays[0].shape[:2]
        frames = listed.total
        frames_fixed = True
        fixed_stamps = video_timestamps(
            listed.indices, float(listed.raw_fps), preset.temporal_patch_size
        )
        stamps_of = lambda n: fixed_stamps  # noqa: E731 - the count never changes
    else:
        meta = _probe(spec, policy, options)
        height, width = meta.height, meta.width
        plan, indices, _ = plan_clip(
            spec, meta, preset.factor, options.seek, options=options, preset=preset
        )
        frames = len(indices)
        padded = plan.clip_frames < frames or len(set(indices)) < len(indices)
        frames_fixed = spec.nframes is not None or padded
        stamps_of = _stamps_for(spec, meta, preset, options, timestamps)
    top = video_target_size(
        spec, height, width, frames, preset.factor, options=options, preset=preset
    )
    min_frames = spec.min_frames if spec.min_frames is not None else preset.min_frames
    least = max(FRAME_FACTOR, ceil_by_factor(min_frames, FRAME_FACTOR))
    least = frames if frames_fixed else min(frames, least)
    common = {
        "kind": "video",
        "message": where[0],
        "element": where[1],
        "source": shown_source(source),
        "original": (int(height), int(width)),
        "min_tokens": floor,
        "priority": priority,
        "factor": preset.factor,
        "most_frames": frames,
        "least_frames": least,
        "temporal": preset.temporal_patch_size,
        "stamps_of": stamps_of,
        "fixed_size": top,
    }
    if spec.resized_height is not None and spec.resized_width is not None:
        return VideoItem(**common)  # type: ignore[arg-type]
    defaults = (preset.video_min_pixels, preset.video_max_pixels, preset.video_total_pixels)
    low, high = video_frame_pixels(
        frames,
        preset.factor,
        spec.min_pixels,
        spec.max_pixels,
        spec.total_pixels,
        defaults=defaults,
    )

    def sizer(m: float) -> tuple[int, int]:
        rewritten = dataclasses.replace(spec, max_pixels=m)
        return video_target_size(
            rewritten, height, width, frames, preset.factor, options=options, preset=preset
        )

    ladder = _Ladder(height, width, preset.factor, math.ceil(low), high, top, sizer)
    return VideoItem(**common, ladder=None if ladder.fixed else ladder)  # type: ignore[arg-type]


def _stamps_for(
    spec: VideoSpec, meta: VideoMetadata, preset: Preset, options: VideoOptions, timestamps: str
) -> Any:
    """``frames -> timestamps`` of the clip sampled at that many frames (``nframes``), as
    :func:`vlprep.build_inputs` writes them for Qwen3-VL (memoised)."""
    memo: dict[int, list[float]] = {}
    times = meta.frame_times

    def stamps(frames: int) -> list[float]:
        if frames not in memo:
            rewritten = dataclasses.replace(spec, nframes=frames, fps=None)
            _, indices, _ = plan_clip(
                rewritten, meta, preset.factor, options.seek, options=options, preset=preset
            )
            seconds = None
            if timestamps == "pts" and times:
                seconds = [times[i] - times[0] for i in indices]
            memo[frames] = video_timestamps(
                indices, float(meta.fps), preset.temporal_patch_size, frame_seconds=seconds
            )
        return memo[frames]

    return stamps


def make_item(
    ele: Mapping[str, Any],
    kind: Literal["image", "video"],
    where: tuple[int, int],
    preset: Preset,
    *,
    policy: FetchPolicy | None,
    image_options: ImageOptions,
    video_options: VideoOptions,
    timestamps: str = "pts",
) -> Item:
    """The fit item of one element (``where``: ``(message index, element index)``).

    Reads the image header or the container index (no pixel decoded), through ``policy``.

    Raises:
        InvalidInputError, FetchError, DecodeError, ResourceLimitError, ...: what the
            loader would raise for the element before its decode.
    """
    if kind == "image":
        return _image_item(ele, where, preset, policy, image_options)
    return _video_item(
        ele,
        where,
        preset,
        policy=policy,
        options=video_options,
        image_options=image_options,
        timestamps=timestamps,
    )
