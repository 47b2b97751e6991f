"""Exact prompt token counts from each item's planned grid, without pixels.

The chat template is rendered by the processor and tokenised as :func:`vlprep.build_inputs`
does; each placeholder then counts its item's tokens (Qwen3-VL videos: their per-patch
``<t seconds>`` text too, from the planned frame times). ``/v1/tokenize`` answers from
:func:`vlprep.plan` (headers and container indices only); the gateway from the items it
loaded. Equal to ``len(input_ids)`` of ``build_inputs`` on the same conversation (tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlprep._errors import InvalidInputError
from vlprep._expansion import (
    SpecialTokens,
    expand_placeholders,
    qwen3_video_text,
    video_timestamps,
)
from vlprep._plans import ElementPlan
from vlprep._presets import Preset, family_of
from vlprep._processor_forms import qwen3_video_form
from vlprep._sizing import count_tokens

__all__ = ["PromptCount", "count_prompt", "render"]


@dataclass(frozen=True, slots=True)
class PromptCount:
    """Tokens of one rendered prompt.

    Attributes:
        total: every token of the prompt (``len(input_ids)``).
        image: ``<|image_pad|>`` tokens; video: ``<|video_pad|>`` tokens.
        text: the rest (template, text, vision start/end markers, Qwen3-VL timestamps).
    """

    total: int
    image: int
    video: int

    @property
    def text(self) -> int:
        return self.total - self.image - self.video


def render(conversation: Sequence[Mapping[str, Any]], processor: Any) -> str:
    """The chat template's text for ``conversation`` with the generation prompt."""
    apply = (
        getattr(processor, "apply_chat_template", None) or processor.tokenizer.apply_chat_template
    )
    text = apply(
        [dict(message) for message in conversation], tokenize=False, add_generation_prompt=True
    )
    if isinstance(text, list) and len(text) == 1:
        text = text[0]
    if not isinstance(text, str):
        raise InvalidInputError(f"the chat template rendered {type(text).__name__}, not text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            "the messages hold a lone surrogate, which is not valid Unicode text"
        ) from None
    return text


def count_prompt(
    conversation: Sequence[Mapping[str, Any]],
    processor: Any,
    preset: Preset,
    items: Sequence[ElementPlan],
) -> PromptCount:
    """Count the prompt of ``conversation`` given each vision element's plan (in
    ``extract_vision_info`` order; a video's ``indices``, ``fps`` and ``seconds`` are read
    for Qwen3-VL's timestamps).

    Raises:
        InvalidInputError: placeholders and items disagree (a literal placeholder in text).
    """
    tokens = SpecialTokens.from_processor(processor)
    text = render(conversation, processor)
    image_counts = [e.tokens for e in items if e.kind == "image"]
    videos = [e for e in items if e.kind == "video"]
    video_counts = [e.tokens for e in videos]
    video_pads = sum(video_counts)
    if videos and family_of(preset) == "qwen3-vl":
        text, video_counts = _qwen3_video_text(text, videos, tokens, preset, processor)
    encoded = processor.tokenizer([text], padding=False, return_attention_mask=False)
    (sequence,) = expand_placeholders(encoded["input_ids"], tokens, image_counts, video_counts)
    return PromptCount(total=int(sequence.shape[0]), image=sum(image_counts), video=video_pads)


def _qwen3_video_text(
    text: str,
    videos: Sequence[ElementPlan],
    tokens: SpecialTokens,
    preset: Preset,
    processor: Any,
) -> tuple[str, list[int]]:
    """Each video's per-temporal-patch blocks written in, as ``build_inputs`` writes them
    (``video_timestamps="pts"``, the processor's own wrapped/unwrapped form)."""
    pieces: list[str] = []
    counts: list[int] = []
    for video in videos:
        t, gh, gw = video.grid
        stamps = video_timestamps(
            list(video.indices or ()),
            float(video.fps or 0.0),
            preset.temporal_patch_size,
            frame_seconds=video.seconds,
        )
        pieces.append(qwen3_video_text(stamps[:t], tokens))
        counts.extend([count_tokens((1, gh, gw), preset.merge_size)] * t)
    wrapped = tokens.vision_start + tokens.video + tokens.vision_end
    if qwen3_video_form(processor) == "unwrapped":
        text = text.replace(wrapped, tokens.video)
    parts = text.split(tokens.video)
    if len(parts) - 1 != len(pieces):
        raise InvalidInputError(
            f"the rendered prompt has {len(parts) - 1} video placeholders for {len(pieces)} videos"
        )
    rebuilt = parts[0]
    for piece, part in zip(pieces, parts[1:], strict=True):
        rebuilt += piece + part
    return rebuilt, counts
