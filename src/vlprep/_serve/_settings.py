"""``ServeSettings``: everything one ``vlprep-serve`` process is configured with, frozen."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import InvalidInputError
from vlprep._limits import CallLimits
from vlprep._numbers import is_finite_number, shown
from vlprep._sources import FetchPolicy

__all__ = ["MIB", "ServeSettings", "UpstreamVideo"]

MIB = 1024 * 1024
UpstreamVideo = Literal["frames", "bytes"]
"""How the gateway forwards a video: ``"frames"``, the sampled frames at the planned size as
a frame list of PNG ``data:`` URIs; ``"bytes"``, the fetched container as a ``data:`` URI."""


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """The configuration of one server (one backend: a local model or an upstream).

    Attributes:
        model: a checkpoint directory (or hub id) answered by the bundled
            :class:`vlprep.runner.Runner`. Exactly one of ``model`` and ``upstream``.
        upstream: base URL of an OpenAI-compatible server (``http://host:8000/v1``): the
            gateway mode.
        processor: the gateway's processor (directory or hub id of the upstream's model):
            its chat template, tokenizer and sizing constants. Defaults to ``model``.
        served_model_name: the name ``/v1/models`` lists (default: the model directory's
            name; in the gateway, the upstream's names are listed).
        api_key: when set, every ``/v1`` request needs ``Authorization: Bearer <key>``.
        policy: fetch rules for every image and video (``FetchPolicy.strict()``).
        image_options / video_options: decode rules.
        limits: per-request :class:`vlprep.CallLimits` (``CallLimits.strict()``); its
            deadline is cut to ``deadline``.
        max_images / max_videos: items per request and modality (a frame-list video counts
            one video; its frames are bounded by ``VideoOptions.max_list_frames`` and
            ``limits.max_items``).
        max_body_bytes: the largest request body read (413 above it).
        deadline: seconds one request may take, fetching, waiting and generating (408).
        max_queue: requests admitted at once (preprocessing, waiting or generating); one
            more is answered 429 with ``Retry-After``.
        preprocess_workers: threads that fetch, decode and build inputs.
        default_max_tokens / max_tokens_limit: answer length when the request gives none,
            and the largest a request may ask for.
        max_total_tokens: prompt plus answer ceiling for every request (``None``: the
            model's ``max_position_embeddings`` in model mode, no ceiling in the gateway).
        device / dtype: where the runner runs (``Runner.from_pretrained``'s).
        max_batch / batch_window: the runner backend's :class:`vlprep.runner.BatchEngine`:
            requests decoded together at most, and the seconds an idle engine waits after
            a request for others to start with it.
        engine_factory: builds the generation engine from the runner (``None``: a
            ``BatchEngine`` with ``max_batch``, ``batch_window`` and ``max_queue``).
        upstream_model: the ``model`` field sent upstream (``None``: the client's).
        upstream_api_key: the key sent to the upstream as a Bearer token.
        upstream_timeout / upstream_connect_timeout: seconds for an upstream response
            (between bytes) and for connecting.
        upstream_video: see :data:`UpstreamVideo`.
    """

    model: str | None = None
    upstream: str | None = None
    processor: str | None = None
    served_model_name: str | None = None
    api_key: str | None = field(default=None, repr=False)
    policy: FetchPolicy = field(default_factory=FetchPolicy.strict)
    image_options: ImageOptions = field(default_factory=ImageOptions)
    video_options: VideoOptions = field(default_factory=VideoOptions)
    limits: CallLimits = field(default_factory=CallLimits.strict)
    max_images: int = 16
    max_videos: int = 2
    max_body_bytes: int = 48 * MIB
    deadline: float = 300.0
    max_queue: int = 64
    preprocess_workers: int = 4
    default_max_tokens: int = 256
    max_tokens_limit: int = 4096
    max_total_tokens: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_batch: int = 8
    batch_window: float = 0.02
    engine_factory: Callable[[Any], Any] | None = None
    upstream_model: str | None = None
    upstream_api_key: str | None = field(default=None, repr=False)
    upstream_timeout: float = 600.0
    upstream_connect_timeout: float = 10.0
    upstream_video: UpstreamVideo = "frames"

    def __post_init__(self) -> None:
        if (self.model is None) == (self.upstream is None):
            raise InvalidInputError(
                "give exactly one backend: model= (a checkpoint answered here) or upstream= "
                "(an OpenAI-compatible server behind this gateway)"
            )
        if self.upstream is not None and self.processor is None:
            raise InvalidInputError(
                "the gateway needs processor= (the upstream model's processor directory or "
                "hub id): its chat template, tokenizer and sizes decide every count"
            )
        if self.upstream is not None and not self.upstream.startswith(("http://", "https://")):
            raise InvalidInputError("upstream must be an http:// or https:// base URL")
        for name in (
            "max_images",
            "max_videos",
            "max_body_bytes",
            "max_queue",
            "preprocess_workers",
            "default_max_tokens",
            "max_tokens_limit",
            "max_batch",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInputError(
                    f"ServeSettings.{name} must be an int >= 0, got {shown(value)}"
                )
        for name in (
            "max_body_bytes",
            "max_queue",
            "preprocess_workers",
            "max_tokens_limit",
            "max_batch",
        ):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"ServeSettings.{name} must be >= 1")
        total = self.max_total_tokens
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int) or total < 2
        ):
            raise InvalidInputError(
                f"ServeSettings.max_total_tokens must be an int >= 2 or None, got {shown(total)}"
            )
        for name in ("deadline", "upstream_timeout", "upstream_connect_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not is_finite_number(value) or value <= 0:
                raise InvalidInputError(f"ServeSettings.{name} must be seconds > 0")
        window = self.batch_window
        if isinstance(window, bool) or not is_finite_number(window) or not 0 <= window <= 10:
            raise InvalidInputError("ServeSettings.batch_window must be seconds in [0, 10]")
        if self.upstream_video not in ("frames", "bytes"):
            raise InvalidInputError(
                f"upstream_video must be 'frames' or 'bytes', got {shown(self.upstream_video)}"
            )
        if self.default_max_tokens > self.max_tokens_limit or self.default_max_tokens < 1:
            raise InvalidInputError("default_max_tokens must be in [1, max_tokens_limit]")

    def limits_until(self, deadline: float) -> CallLimits:
        """:attr:`limits` with its deadline cut to the time left before ``deadline`` (a
        ``time.monotonic()`` instant: the request's), at least 1 ms."""
        left = max(0.001, deadline - time.monotonic())
        if self.limits.deadline is None or self.limits.deadline > left:
            return self.limits.replace(deadline=left)
        return self.limits

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)
