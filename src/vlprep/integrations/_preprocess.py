"""The Ray preprocessor: build_inputs tensors or resized media, one row per conversation."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import InvalidInputError, VlprepError
from vlprep._inspect_batch import element_label
from vlprep._messages import extract_vision_info
from vlprep._presets import DEFAULT_FAMILY, Preset, family_of, get_preset, preset_from_processor
from vlprep._sources import FetchPolicy
from vlprep._version import __version__
from vlprep.integrations._arrow import append_columns, column_values, preprocess_schema, to_table
from vlprep.integrations._conversations import (
    bound_defaults,
    conversation_of,
    failure,
    with_defaults,
)

__all__ = ["PreprocessOutput", "Preprocessor"]

if TYPE_CHECKING:
    from vlprep._inputs import Qwen3VideoText

PreprocessOutput = Literal["inputs", "media"]
"""``"inputs"``: ``build_inputs`` tensors per row. ``"media"``: resized images and frames."""


def _load_processor(processor: object) -> Any:
    if isinstance(processor, (str, os.PathLike)):
        from vlprep.runner import transformers_module

        return transformers_module().AutoProcessor.from_pretrained(os.fspath(processor))
    if hasattr(processor, "tokenizer") or not callable(processor):
        return processor
    return processor()


class Preprocessor:
    """Per-conversation model inputs (or resized media) for ``map_batches``.

    ``output="inputs"``: the row's conversation through :func:`vlprep.build_inputs` (one
    conversation, so nothing is padded): ``input_ids`` and ``mm_token_type_ids``
    (list<int64>), ``num_tokens``, ``pixel_values`` / ``pixel_values_videos``
    (large_list<float32>, the ``(patches, patch_dim)`` tensor flattened row-major; reshape
    with ``vlprep_params.patch_dim``), ``image_grid_thw`` / ``video_grid_thw``
    (list<list<int64>>, ``(n, 3)``), ``second_per_grid_ts`` (list<float32>, Qwen2.5-VL
    videos). Columns without media are null.

    ``output="media"``: each image and video element loaded and resized exactly as
    ``build_inputs`` loads it (``fetch_image_for`` / ``fetch_video`` with the preset), in
    ``media``: a list of structs ``kind``, ``source``, ``height``, ``width``, ``frames``,
    ``sample_fps``, ``native_fps``, ``frame_indices``, ``encoding`` and ``data``: a
    lossless PNG for images (``"png"``), raw ``(frames, height, width, 3)`` uint8 RGB
    for videos (``"rgb24"``).

    Both add ``vlprep_params`` (preset, patch/merge/temporal sizes, the bound defaults
    applied, ``patch_dim``, the vlprep version), ``error_type`` and ``error``.

    Args:
        processor: a transformers Qwen-VL processor, a path or hub name for
            ``AutoProcessor.from_pretrained``, or a zero-argument callable returning one
            (called once per actor). Needed for ``output="inputs"``.
        preset: model family; read from the processor when ``None`` (``"qwen2.5-vl"``
            without a processor).
        output: ``"inputs"`` or ``"media"``.
        column, min_pixels, max_pixels, total_pixels, fps, nframes: as for :class:`Auditor`.
        add_generation_prompt, chat_template_kwargs, qwen3_video_text, max_length: passed
            to :func:`vlprep.build_inputs`.
        workers: media loaded at once within one row (default 1: Ray runs the rows in
            parallel).
        policy, image_options, video_options: fetch and decode rules.
    """

    def __init__(
        self,
        processor: object = None,
        preset: Preset | str | None = None,
        *,
        output: PreprocessOutput = "inputs",
        column: str = "messages",
        min_pixels: float | None = None,
        max_pixels: float | None = None,
        total_pixels: float | None = None,
        fps: float | None = None,
        nframes: float | None = None,
        add_generation_prompt: bool = True,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        qwen3_video_text: Qwen3VideoText = "auto",
        max_length: int | None = None,
        workers: int = 1,
        policy: FetchPolicy | None = None,
        image_options: ImageOptions | None = None,
        video_options: VideoOptions | None = None,
    ) -> None:
        if output not in ("inputs", "media"):
            raise InvalidInputError(f"output must be 'inputs' or 'media', got {output!r:.20}")
        if output == "inputs" and processor is None:
            raise InvalidInputError("output='inputs' needs a processor (or a path to one)")
        self.output = output
        self.column = column
        self.defaults = bound_defaults(min_pixels, max_pixels, total_pixels, fps, nframes)
        self.processor = None if processor is None else _load_processor(processor)
        if preset is None:
            preset = (
                DEFAULT_FAMILY if self.processor is None else preset_from_processor(self.processor)
            )
        self.preset = get_preset(preset)
        self.options: dict[str, Any] = {
            "policy": policy,
            "image_options": image_options,
            "video_options": video_options,
        }
        self.build_options: dict[str, Any] = {
            "add_generation_prompt": add_generation_prompt,
            "chat_template_kwargs": chat_template_kwargs,
            "qwen3_video_text": qwen3_video_text,
            "max_length": max_length,
            "workers": workers,
        }
        self.params = self._params()

    def _params(self) -> dict[str, Any]:
        p = self.preset
        return {
            "output": self.output,
            "preset": family_of(p),
            "patch_size": p.patch_size,
            "merge_size": p.merge_size,
            "temporal_patch_size": p.temporal_patch_size,
            "image_min_pixels": p.image_min_pixels,
            "image_max_pixels": p.image_max_pixels,
            **self.defaults,
            "patch_dim": 3 * p.temporal_patch_size * p.patch_size**2,
            "vlprep_version": __version__,
        }

    def _inputs(self, conversation: list[dict[str, Any]]) -> dict[str, Any]:
        from vlprep._inputs import build_inputs

        feature = build_inputs(
            conversation, self.processor, preset=self.preset, **self.build_options, **self.options
        )
        row: dict[str, Any] = {
            "input_ids": feature["input_ids"][0].tolist(),
            "mm_token_type_ids": feature["mm_token_type_ids"][0].tolist(),
        }
        row["num_tokens"] = len(row["input_ids"])
        for name in ("pixel_values", "pixel_values_videos", "second_per_grid_ts"):
            if name in feature:
                row[name] = feature[name].numpy()
        for name in ("image_grid_thw", "video_grid_thw"):
            if name in feature:
                row[name] = feature[name].tolist()
        return row

    def _media(self, conversation: list[dict[str, Any]]) -> dict[str, Any]:
        from PIL import Image

        from vlprep._inputs import load_element
        from vlprep._limits import CallBudget

        media = []
        budget = CallBudget()  # one row is one call, as build_inputs makes it
        elements = budget.counted(extract_vision_info(conversation))
        for number, ele in enumerate(elements, start=1):
            try:
                loaded = load_element(ele, self.preset, **self.options, budget=budget)
            except VlprepError as exc:
                exc.add_note(f"while loading vision item {number} of {len(elements)}")
                raise
            entry: dict[str, Any] = {"source": element_label(ele)}
            if isinstance(loaded, Image.Image):
                buffer = io.BytesIO()
                loaded.save(buffer, format="PNG", compress_level=1)
                entry |= {"kind": "image", "height": loaded.height, "width": loaded.width}
                entry |= {"encoding": "png", "data": buffer.getvalue()}
            else:
                video, metadata, sample_fps = loaded
                frames = video.round().clamp(0, 255).to(dtype=_uint8()).permute(0, 2, 3, 1)
                entry |= {"kind": "video", "height": video.shape[2], "width": video.shape[3]}
                entry |= {"frames": video.shape[0], "sample_fps": sample_fps}
                entry |= {"native_fps": metadata.get("fps")}
                entry |= {"frame_indices": list(metadata.get("frames_indices", []))}
                entry |= {"encoding": "rgb24", "data": frames.contiguous().numpy().tobytes()}
            media.append(entry)
        return {"media": media}

    def preprocess_cell(self, cell: object) -> dict[str, Any]:
        """The appended values for one cell (conversation), as plain Python/numpy values."""
        try:
            conversation = with_defaults(conversation_of(cell), self.defaults)
            row = (
                self._inputs(conversation) if self.output == "inputs" else self._media(conversation)
            )
        except Exception as exc:  # one bad row is that row's error, never the job's
            error_type, error = failure(exc)
            return {"vlprep_params": self.params, "error_type": error_type, "error": error}
        return {**row, "vlprep_params": self.params}

    def __call__(self, batch: Any) -> Any:
        """Preprocess one batch; returns it as a ``pyarrow.Table`` with the columns appended."""
        table = to_table(batch)
        rows = [self.preprocess_cell(cell) for cell in column_values(table, self.column)]
        return append_columns(table, preprocess_schema(self.output), rows)


def _uint8() -> Any:
    import torch

    return torch.uint8
