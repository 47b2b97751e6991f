""":class:`Loader`: the configuration of the loading calls held once, as ``httpx.Client`` does.

``vlprep.fetch_image(ele, policy=..., image_options=..., cache=...)`` and
``Loader(policy=..., image=..., cache=...).fetch_image(ele)`` run the same code: the Loader's
methods call the functions' implementations (:func:`vlprep._image.fetch_image_item`,
:func:`vlprep._video.load_clip`, :func:`vlprep._messages.load_vision_info`,
:func:`vlprep._inputs.build_inputs`, :func:`vlprep._estimates.inspect`,
:func:`vlprep._plans.plan`) with its fields. The
module-level drop-ins keep qwen-vl-utils' signatures; a Loader is how one configuration
(fetch policy, decode options, cache, worker count, model preset, call limits) is written once
and passed to every call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vlprep._cache import MediaCache
from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import InvalidInputError
from vlprep._estimates import MediaEstimate
from vlprep._estimates import inspect as estimate
from vlprep._fit import FitResult, fit
from vlprep._image import fetch_image_item
from vlprep._inputs import build_inputs
from vlprep._keywords import checked
from vlprep._limits import CallBudget, CallLimits
from vlprep._messages import Conversation, load_vision_info
from vlprep._plans import Plan, plan
from vlprep._presets import DEFAULT_PRESET, Preset, get_preset
from vlprep._sizing import check_patch_size
from vlprep._sources import FetchPolicy
from vlprep._video import fetch_video_result, load_clip

__all__ = ["Loader"]


@dataclass(frozen=True)
class Loader:
    """Fetch policy, decode options, cache, workers, preset and limits for every call.

    Like ``httpx.Client``: build one, share it (it is immutable and thread-safe as its
    fields are), derive variants with :meth:`replace`. Every method takes the arguments of
    the module function of the same name, minus this configuration.

    Attributes:
        policy: fetch rules for every source (``None``: ``FetchPolicy()``).
        image: image decode rules (also the frames of frame-list videos).
        video: video decode rules; ``video.backend`` is the one place the backend is
            chosen (no environment variable is read by a Loader).
        cache: a :class:`vlprep.MediaCache` shared by the calls (``None``: no caching).
        workers: items loaded at once by :meth:`process_vision_info` and
            :meth:`build_inputs` (``None``: ``min(4, CPU count)``).
        preset: the model configuration (a :class:`vlprep.Preset` or a family name).
            ``None``: the drop-ins' qwen-vl-utils sizing for ``image_patch_size``,
            :meth:`build_inputs` reads the processor's, :meth:`inspect` uses Qwen2.5-VL's.
            Set: every method sizes for it (``image_patch_size`` is then ignored).
        limits: :class:`vlprep.CallLimits` applied to each call (``None``: the defaults).
    """

    policy: FetchPolicy | None = None
    image: ImageOptions = field(default_factory=ImageOptions)
    video: VideoOptions = field(default_factory=VideoOptions)
    cache: MediaCache | None = None
    workers: int | None = None
    preset: Preset | str | None = None
    limits: CallLimits | None = None

    def __post_init__(self) -> None:
        """Check the field types now, not at the first call.

        Raises:
            InvalidInputError: a field of the wrong type, or an unknown preset name.
        """
        checked(self.policy, FetchPolicy, "Loader(policy=)")
        if checked(self.image, ImageOptions, "Loader(image=)") is None:
            raise InvalidInputError("Loader(image=) must be a vlprep.ImageOptions, got None")
        if checked(self.video, VideoOptions, "Loader(video=)") is None:
            raise InvalidInputError("Loader(video=) must be a vlprep.VideoOptions, got None")
        checked(self.cache, MediaCache, "Loader(cache=)")
        checked(self.limits, CallLimits, "Loader(limits=)")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int)
        ):
            raise InvalidInputError(
                f"Loader(workers=) must be an int or None, got {type(self.workers).__name__}"
            )
        if self.preset is not None:
            get_preset(self.preset)  # an unknown name fails here

    def replace(self, **changes: Any) -> Loader:
        """A copy with ``changes`` applied (``loader.replace(workers=1)``).

        Raises:
            TypeError: a name that is not a field; InvalidInputError as the constructor.
        """
        return dataclasses.replace(self, **changes)

    def _preset(self) -> Preset | None:
        return None if self.preset is None else get_preset(self.preset)

    def fetch_image(self, ele: Mapping[str, Any], image_patch_size: int = 14) -> Image.Image:
        """:func:`vlprep.fetch_image` with this configuration.

        With a preset, sized as :func:`vlprep._image.fetch_image_for` (its grid and image
        bounds); ``limits`` (when set) bound the output pixels and the fetch time.
        """
        preset = self._preset()
        return fetch_image_item(
            ele,
            check_patch_size(image_patch_size) * 2 if preset is None else preset,
            policy=self.policy,
            options=self.image,
            cache=self.cache,
            budget=None if self.limits is None else CallBudget(self.limits),
        )

    def fetch_video(
        self,
        ele: Mapping[str, Any],
        image_patch_size: int = 14,
        return_video_sample_fps: bool = False,
        return_video_metadata: bool = False,
    ) -> Any:
        """:func:`vlprep.fetch_video` with this configuration (no environment variable read)."""
        loaded = load_clip(
            ele,
            image_patch_size,
            policy=self.policy,
            video_options=self.video,
            image_options=self.image,
            cache=self.cache,
            limits=self.limits,
            preset=self._preset(),
        )
        return fetch_video_result(loaded, return_video_sample_fps, return_video_metadata)

    def process_vision_info(
        self,
        conversations: Conversation | Sequence[Conversation],
        return_video_kwargs: bool = False,
        return_video_metadata: bool = False,
        image_patch_size: int = 14,
        *,
        max_total_tokens: int | None = None,
        processor: Any = None,
    ) -> tuple[Any, ...]:
        """:func:`vlprep.process_vision_info` with this configuration (``max_total_tokens``
        and ``processor``: fit first, as there)."""
        return load_vision_info(
            conversations,
            return_video_kwargs,
            return_video_metadata,
            image_patch_size,
            policy=self.policy,
            image_options=self.image,
            video_options=self.video,
            workers=self.workers,
            cache=self.cache,
            limits=self.limits,
            preset=self._preset(),
            max_total_tokens=max_total_tokens,
            processor=processor,
        )

    def build_inputs(
        self,
        conversations: Conversation | Sequence[Conversation],
        processor: Any,
        **rest: Any,
    ) -> Any:
        """:func:`vlprep.build_inputs` with this configuration.

        ``rest``: the other keywords of :func:`vlprep.build_inputs` (``padding_side``,
        ``max_length``, ``device``, ``dtype``, ...); the Loader's own settings are not
        passed again (a ``TypeError`` names any that is).
        """
        return build_inputs(
            conversations,
            processor,
            preset=self.preset,
            policy=self.policy,
            image_options=self.image,
            video_options=self.video,
            workers=self.workers,
            cache=self.cache,
            limits=self.limits,
            **rest,
        )

    def fit(
        self,
        conversations: Conversation | Sequence[Conversation],
        max_tokens: int,
        processor: Any = None,
        **rest: Any,
    ) -> list[FitResult]:
        """:func:`vlprep.fit` with this configuration (its preset, else the processor's).

        ``rest``: ``reserve``, ``strategy`` and the text keywords of :func:`vlprep.fit`.
        """
        return fit(
            conversations,
            max_tokens,
            processor=processor,
            preset=self.preset,
            policy=self.policy,
            image_options=self.image,
            video_options=self.video,
            **rest,
        )

    def inspect(self, source_or_element: object, **rest: Any) -> MediaEstimate:
        """:func:`vlprep.inspect` with this configuration (``preset`` default: Qwen2.5-VL).

        ``rest``: ``min_pixels``, ``max_pixels``, ``total_pixels``, ``fps``, ``nframes``,
        ``kind``.
        """
        return estimate(
            source_or_element,
            DEFAULT_PRESET if self.preset is None else self.preset,
            policy=self.policy,
            image_options=self.image,
            video_options=self.video,
            **rest,
        )

    def plan(
        self, conversations: Conversation | Sequence[Conversation], processor: Any = None
    ) -> Plan:
        """:func:`vlprep.plan` with this configuration: what :meth:`build_inputs` will load.

        The preset is the Loader's, else the processor's (one of them is needed). Replay with
        ``loader.build_inputs(conversations, processor, plan=the_plan)``.

        Raises:
            InvalidInputError: neither a Loader preset nor ``processor``; malformed messages.
            FetchError, DecodeError, ...: from fetching or reading the media.
        """
        return plan(
            conversations,
            processor,
            preset=self.preset,
            policy=self.policy,
            image_options=self.image,
            video_options=self.video,
        )
