"""Per-call limits: how many items, how many output pixels and how long one call may take.

The per-item limits (:class:`vlprep.FetchPolicy`, :class:`vlprep.ImageOptions`,
:class:`vlprep.VideoOptions`) bound each image, clip and frame; nothing in them bounds how
many items one call loads. :class:`CallLimits` does: a cap on items (counted before any
fetch, frame-list frames included), a cap on the output pixels of the whole call (summed
from each item's plan, refused before the item that crosses it is allocated) and a total
deadline shared by every fetch of the call. :class:`CallBudget` is the running account of
one call; :func:`vlprep.process_vision_info`, :func:`vlprep.build_inputs` and
:func:`vlprep.fetch_video` open one per call.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from vlprep._errors import FetchTimeoutError, InvalidInputError, ResourceLimitError
from vlprep._sources.policy import DEFAULT_POLICY, FetchPolicy
from vlprep._specs import element_kind

__all__ = ["CallBudget", "CallLimits", "count_items"]

_SETTING_ITEMS = "CallLimits.max_items"
_SETTING_PIXELS = "CallLimits.max_total_pixels"
_SETTING_DEADLINE = "CallLimits.deadline"


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Limits on one call as a whole (every item of every conversation it is given).

    Attributes:
        max_items: most vision items one call may hold, counted before anything is fetched:
            each image and each video counts one, a frame-list video counts one per frame
            (each frame is a source fetched and decoded like an image). ``None``: no cap.
            Default 1024: above ``VideoOptions.max_list_frames`` (768) with room for other
            items.
        max_total_pixels: most output pixels of the whole call: resized ``height * width``
            per image plus ``frames * height * width`` per video, summed from each item's
            plan as it becomes known; the item that would cross it is refused before its
            output is allocated. ``None``: no cap. Default ``2**30`` (1.07 G): four times
            the strict value, room for a batch of four videos at qwen-vl-utils' default
            per-video budget (at most ``2 * 128000 * 0.9 * 32**2`` = 236 M frame pixels)
            or 80 images at Qwen2.5-VL's largest default size.
        deadline: seconds for the whole call, on one monotonic clock started when the call
            starts. Each fetch gets ``min(its FetchPolicy deadline, time left)``; an item
            not yet started when it has passed is refused. It bounds fetching and the
            start of each item, not a decode already running (that is bounded by the
            per-item limits and ``VideoOptions.isolate_timeout``). ``None`` (default): no
            call deadline, each fetch keeps its own.
    """

    max_items: int | None = 1024
    max_total_pixels: int | None = 1 << 30
    deadline: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_items", "max_total_pixels"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(
                    f"CallLimits.{name} must be a positive int or None, got {value!r:.32}"
                )
        deadline = self.deadline
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
                raise InvalidInputError(
                    f"CallLimits.deadline must be a number of seconds or None, "
                    f"got {type(deadline).__name__}"
                )
            if not (math.isfinite(deadline) and deadline > 0):
                raise InvalidInputError(f"CallLimits.deadline must be > 0, got {deadline!r}")

    @classmethod
    def strict(cls) -> CallLimits:
        """Limits for servers that take requests from strangers.

        128 items (a 64-second frame list at 2 fps, or 128 images); ``2**28`` output pixels
        (268 M: one sequence's worth, since it is 262,144 image tokens on Qwen3-VL's 32-pixel
        grid, its whole 256K context, and holds one video at qwen-vl-utils' default budget);
        300 s for the call (the default :class:`FetchPolicy` lets one video fetch take 120 s
        and one image 30 s; a frame list of slow URLs stops after 5 minutes, not 48). The
        200-copy ``data:`` request of the red-team report is refused before any decode.
        """
        return cls(max_items=128, max_total_pixels=1 << 28, deadline=300.0)

    def replace(self, **changes: object) -> CallLimits:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_LIMITS = CallLimits()


def element_items(ele: object) -> int:
    """Items one vision element counts for: a frame-list video its frames, anything else 1."""
    if not isinstance(ele, Mapping) or element_kind(ele) != "video":
        return 1
    source = ele["video"] if ele.get("video") is not None else ele.get("video_url")
    return len(source) if isinstance(source, (list, tuple)) else 1


def count_items(elements: Sequence[Mapping[str, Any]]) -> int:
    """Items of a call's vision elements (see :attr:`CallLimits.max_items`)."""
    return sum(element_items(ele) for ele in elements)


class CallBudget:
    """The running account of one call under :class:`CallLimits`; safe to share between threads.

    Created when a call starts (the deadline's clock starts then) and handed to every item
    it loads.
    """

    def __init__(self, limits: CallLimits | None = None) -> None:
        if limits is not None and not isinstance(limits, CallLimits):
            raise InvalidInputError(
                f"limits must be a CallLimits or None, got {type(limits).__name__}"
            )
        self.limits = DEFAULT_LIMITS if limits is None else limits
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._pixels = 0

    @property
    def pixels(self) -> int:
        """Output pixels charged so far."""
        return self._pixels

    def check_items(self, count: int) -> None:
        """Refuse a call of ``count`` items above ``max_items`` (before anything is fetched).

        Raises:
            ResourceLimitError: naming the count, the limit and the setting.
        """
        limit = self.limits.max_items
        if limit is not None and count > limit:
            raise ResourceLimitError(
                f"the call has {count:,} vision items (images, videos and frame-list frames), "
                f"above the limit of {limit:,} ({_SETTING_ITEMS}); split it into several "
                "calls or raise the limit"
            )

    def counted(self, elements: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """``elements`` as a list, once their items are within ``max_items``.

        Raises:
            ResourceLimitError: see :meth:`check_items`.
        """
        self.check_items(count_items(elements))
        return list(elements)

    def charge(self, pixels: int, what: str) -> None:
        """Add an item's planned output pixels, refusing it when the call would cross the cap.

        Args:
            pixels: the item's output pixels from its plan (``frames * height * width``).
            what: how the item is named in the message (``"image"``, ``"video"``).

        Raises:
            ResourceLimitError: the call's total would exceed ``max_total_pixels``; nothing
                is added.
        """
        limit = self.limits.max_total_pixels
        with self._lock:
            total = self._pixels + pixels
            if limit is not None and total > limit:
                raise ResourceLimitError(
                    f"the {what} ({pixels:,} output pixels) would bring the call to "
                    f"{total:,} output pixels, above the limit of {limit:,} "
                    f"({_SETTING_PIXELS}, {self._pixels:,} already loaded); send fewer or "
                    "smaller items per call (max_pixels / fps / total_pixels) or raise the limit"
                )
            self._pixels = total

    def remaining(self) -> float | None:
        """Seconds left to the call deadline (negative once passed); ``None`` without one."""
        deadline = self.limits.deadline
        if deadline is None:
            return None
        return self._start + deadline - time.monotonic()

    def expired(self) -> bool:
        """Whether the call deadline has passed."""
        left = self.remaining()
        return left is not None and left <= 0

    def check_deadline(self, before: str) -> None:
        """Refuse to start more work (``before`` names it) once the call deadline has passed.

        For work that no fetch deadline covers, such as decoding bytes already fetched.

        Raises:
            FetchTimeoutError: the call deadline has passed.
        """
        left = self.remaining()
        if left is not None and left <= 0:
            raise self._expired(f"before {before} ({-left:.2f} s ago)")

    def policy(self, policy: FetchPolicy | None) -> FetchPolicy | None:
        """``policy`` with its deadlines cut to the time left, for an item starting now.

        Raises:
            FetchTimeoutError: the call deadline has already passed.
        """
        left = self.remaining()
        if left is None:
            return policy
        if left <= 0:
            raise self._expired(f"before the item started ({-left:.2f} s ago)")
        base = DEFAULT_POLICY if policy is None else policy
        names = ("image_deadline", "video_deadline")
        changes = {name: left for name in names if getattr(base, name) > left}
        return base.replace(**changes) if changes else base

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Name the call deadline in a fetch timeout that it caused (the cut deadline).

        Raises:
            FetchTimeoutError: raised inside, renamed when the call deadline has passed.
        """
        try:
            yield
        except FetchTimeoutError as exc:
            if not self.expired() or _SETTING_DEADLINE in str(exc):
                raise
            raise self._expired(f"while fetching: {exc}") from exc

    def _expired(self, when: str) -> FetchTimeoutError:
        elapsed = time.monotonic() - self._start
        return FetchTimeoutError(
            f"the call deadline of {self.limits.deadline:g} s ({_SETTING_DEADLINE}) passed "
            f"after {elapsed:.2f} s, {when}; raise {_SETTING_DEADLINE} or send fewer or "
            "faster sources per call"
        )
