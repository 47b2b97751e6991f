"""The model backend: requests answered by the bundled :class:`vlprep.runner.Runner`.

Inputs are built in a thread pool (fetch under the server's policy, decode, resize,
``build_inputs`` with the per-request limits), never on the event loop, then handed to the
engine: a :class:`vlprep.runner.BatchEngine` (concurrent requests decoded together, each
streamed on its own), or what ``ServeSettings.engine_factory`` builds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vlprep._inputs import build_inputs
from vlprep._serve._count import PromptCount
from vlprep._serve._engine import Engine
from vlprep._serve._settings import ServeSettings
from vlprep._tensors import PIXEL_DTYPES
from vlprep.runner import BatchEngine, Runner

__all__ = ["RunnerBackend"]


class RunnerBackend:
    """A loaded checkpoint and its engine."""

    def __init__(self, settings: ServeSettings, runner: Runner | None = None) -> None:
        if runner is None:
            runner = Runner.from_pretrained(
                str(settings.model),
                device=settings.device,
                dtype=settings.dtype,
                image_options=settings.image_options,
                video_options=settings.video_options,
            )
        self.settings = settings
        self.runner = runner
        self.processor = runner.processor
        self.preset = runner.preset
        self.name = settings.served_model_name or Path(str(settings.model)).name or "vlprep"
        factory = settings.engine_factory
        self.engine: Engine = (
            factory(runner)
            if factory is not None
            else BatchEngine(
                runner,
                max_batch=settings.max_batch,
                window_s=settings.batch_window,
                max_waiting=settings.max_queue,
            )
        )
        config = runner.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.context = getattr(text, "max_position_embeddings", None)
        self.created = int(time.time())

    def server_ceiling(self) -> int | None:
        """``max_total_tokens`` of the settings, else the model's context length."""
        if self.settings.max_total_tokens is not None:
            return self.settings.max_total_tokens
        return int(self.context) if isinstance(self.context, int) else None

    def prepare(
        self, conversation: list[dict[str, Any]], deadline: float
    ) -> tuple[Any, PromptCount]:
        """``build_inputs`` for one conversation (CPU tensors, pixels in the model's dtype)
        and its counts. Runs in the preprocessing pool.

        (``vlprep.fit`` plugs in before this call: see :mod:`vlprep._serve._budget`.)
        """
        settings = self.settings
        limits = settings.limits_until(deadline)
        dtype = self.runner.dtype if self.runner.dtype in PIXEL_DTYPES else None
        inputs = build_inputs(
            conversation,
            self.processor,
            preset=self.preset,
            policy=settings.policy,
            image_options=settings.image_options,
            video_options=settings.video_options,
            limits=limits,
            dtype=dtype,
            workers=1,
        )
        types = inputs["mm_token_type_ids"][0]
        count = PromptCount(
            total=int(inputs["input_ids"].shape[1]),
            image=int((types == 1).sum()),
            video=int((types == 2).sum()),
        )
        return inputs, count

    def close(self) -> None:
        self.engine.close()
