"""The gateway backend: vlprep prepares the media, an OpenAI-compatible server answers.

Every image and video is fetched here under the server's policy, decoded with its EXIF
orientation applied, and sized by the upstream model's processor with each part's own
knobs (``min_pixels``, ``max_pixels``, ...). Images are forwarded re-encoded losslessly
(PNG) at exactly that size as ``data:`` URIs, so the upstream's own resize (the same
``smart_resize`` on a size already on its grid and within its bounds) is the identity.
Videos, with ``upstream_video="frames"``: the sampled frames at the planned size as a
frame-list ``video`` part (``sample_fps`` set); ``"bytes"``: the fetched container as a
``data:`` URI (the upstream samples and sizes it; only the fetch is vlprep's).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlprep._inputs import load_element
from vlprep._limits import CallBudget
from vlprep._plans import ElementPlan, plan
from vlprep._presets import preset_from_processor
from vlprep._serve._settings import ServeSettings
from vlprep._serve._translate import Translated
from vlprep._sizing import count_tokens
from vlprep._sources import fetch
from vlprep._video import FRAMES_SECONDS

__all__ = ["Gateway", "png_data_uri"]


def png_data_uri(image: Image.Image) -> str:
    """``image`` as a lossless PNG ``data:`` URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _frames_uris(frames: torch.Tensor) -> list[str]:
    """float32 ``(T, 3, H, W)`` frames in 0..255 (whole numbers) -> PNG ``data:`` URIs."""
    array = frames.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [png_data_uri(Image.fromarray(np.ascontiguousarray(frame))) for frame in array]


class Gateway:
    """The upstream's processor (for sizes and counts) and the preparation of requests."""

    def __init__(self, settings: ServeSettings, processor: Any = None) -> None:
        if processor is None:
            from vlprep.runner import transformers_module

            processor = transformers_module().AutoProcessor.from_pretrained(str(settings.processor))
        self.settings = settings
        self.processor = processor
        self.preset = preset_from_processor(processor)
        self.base = str(settings.upstream).rstrip("/")
        self.created = int(time.time())

    def load(
        self, translated: Translated, deadline: float
    ) -> tuple[list[dict[str, Any]], list[ElementPlan]]:
        """Load every vision element and build the OpenAI parts to forward in its place,
        with each element's planned grid (for the count). Runs in the preprocessing pool.

        (``vlprep.fit`` plugs in before this call: see :mod:`vlprep._serve._budget`.)
        """
        settings = self.settings
        limits = settings.limits_until(deadline)
        budget = CallBudget(limits)
        elements = [
            part
            for message in translated.conversation
            if isinstance(message["content"], list)
            for part in message["content"]
            if part["type"] in ("image", "video")
        ]
        budget.counted(elements)
        forwarded: list[dict[str, Any]] = []
        plans: list[ElementPlan] = []
        for element in elements:
            if element["type"] == "video" and settings.upstream_video == "bytes":
                part, planned = self._video_bytes(element, budget)
                forwarded.append(part)
                plans.append(planned)
                continue
            loaded = load_element(
                element,
                self.preset,
                budget.policy(settings.policy),
                settings.image_options,
                settings.video_options,
                budget=budget,
            )
            if isinstance(loaded, Image.Image):
                plans.append(self._image_plan(loaded))
                forwarded.append({"type": "image_url", "image_url": {"url": png_data_uri(loaded)}})
                continue
            frames, metadata, sample_fps = loaded
            plan = self._video_plan(frames, metadata, sample_fps)
            plans.append(plan)
            if settings.upstream_video == "frames":
                forwarded.append(
                    {
                        "type": "video",
                        "video": _frames_uris(frames),
                        "sample_fps": sample_fps,
                        "raw_fps": sample_fps,
                        "resized_height": plan.size[0],
                        "resized_width": plan.size[1],
                    }
                )
        return forwarded, plans

    def _video_bytes(
        self, element: dict[str, Any], budget: CallBudget
    ) -> tuple[dict[str, Any], ElementPlan]:
        """The fetched container as a ``data:`` URI part, and its plan for the count: from
        the container's index alone (the upstream decodes; vlprep decodes no frame)."""
        source = element["video"]
        if isinstance(source, list):
            from vlprep._errors import InvalidInputError

            raise InvalidInputError(
                "this gateway forwards videos as their container bytes "
                "(upstream_video='bytes'); a frame list cannot be forwarded that way"
            )
        payload = fetch(source, budget.policy(self.settings.policy), "video")
        media = payload.media_type if (payload.media_type or "").startswith("video/") else None
        encoded = base64.b64encode(payload.data).decode("ascii")
        planned = plan(
            [{"role": "user", "content": [{**element, "video": payload.data}]}],
            preset=self.preset,
            image_options=self.settings.image_options,
            video_options=self.settings.video_options,
        ).elements[0]
        part = {
            "type": "video_url",
            "video_url": {"url": f"data:{media or 'video/mp4'};base64,{encoded}"},
        }
        return part, planned

    def _image_plan(self, image: Image.Image) -> ElementPlan:
        patch = self.preset.patch_size
        grid = (1, image.height // patch, image.width // patch)
        tokens = count_tokens(grid, self.preset.merge_size)
        return ElementPlan("image", "", (image.height, image.width), grid, tokens)

    def _video_plan(
        self, frames: torch.Tensor, metadata: dict[str, Any], sample_fps: float
    ) -> ElementPlan:
        preset = self.preset
        count, _, height, width = frames.shape
        grid = (
            -(-count // preset.temporal_patch_size),
            height // preset.patch_size,
            width // preset.patch_size,
        )
        seconds: Sequence[float] | None = metadata.get(FRAMES_SECONDS)
        return ElementPlan(
            "video",
            "",
            (height, width),
            grid,
            count_tokens(grid, preset.merge_size),
            indices=tuple(int(i) for i in metadata["frames_indices"]),
            sample_fps=float(sample_fps),
            fps=float(metadata["fps"]),
            seconds=None if seconds is None else tuple(float(s) for s in seconds),
        )

    def rebuild(
        self, messages: list[Any], translated: Translated, forwarded: list[dict[str, Any]]
    ) -> list[Any]:
        """The client's messages with each vision part replaced by its forwarded form (the
        other parts and fields unchanged)."""
        out = [dict(m) if isinstance(m, dict) else m for m in messages]
        for where, part in zip(translated.parts, forwarded, strict=True):
            message = out[where.message]
            content = list(message["content"])
            content[where.part] = part
            message["content"] = content
        return out
