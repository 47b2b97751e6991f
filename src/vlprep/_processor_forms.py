"""What the transformers processor in hand does, where releases differ.

vlprep writes the prompt text itself (it never runs the processor's expansion), so where
transformers changed its output between releases, the form is read from the processor the
caller passed: by running it on a probe, never by a hard-coded default.

Qwen3-VL video text (measured with ``make compat``, see ``docs/compatibility.md``): every
release wraps each temporal patch as ``<t seconds><|vision_start|>pads<|vision_end|>``; what
differs is the chat template's own ``<|vision_start|><|video_pad|><|vision_end|>`` around the
whole video:

- ``"unwrapped"``: the template's pair is replaced together with the pad (transformers 4.57,
  5.0 through 5.x releases that expand inside ``Qwen3VLProcessor.__call__`` (5.3.0 measured),
  5.25.0 and later via ``get_text_with_replacements``, and vLLM);
- ``"wrapped"``: only the pad is replaced, the template's pair stays around the per-frame
  blocks (the releases that expand through ``ProcessorMixin.get_text_with_replacements``
  without the 5.25 collapse: 5.14.1 and 5.24.0 measured).
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any, Literal

from vlprep._errors import InvalidInputError

__all__ = ["Qwen3VideoForm", "qwen3_video_form"]

Qwen3VideoForm = Literal["wrapped", "unwrapped"]

_FORMS: dict[type, Qwen3VideoForm] = {}
_LOCK = threading.Lock()


def qwen3_video_form(processor: Any) -> Qwen3VideoForm:
    """The Qwen3-VL video text form ``processor`` produces, found by running it once.

    The probe is one ``processor(text=..., videos=...)`` call on a black clip of
    ``temporal_patch_size`` frames of ``patch*merge`` pixels a side (one token per frame,
    ``do_resize=False``): the outer ``<|vision_start|>`` count in its ``input_ids`` says
    whether the template's pair was kept. The answer is cached per processor class.

    Raises:
        InvalidInputError: the processor cannot be probed (not a transformers Qwen3-VL
            processor, or one that fails on a minimal video); pass
            ``qwen3_video_text="wrapped"`` or ``"unwrapped"`` explicitly.
    """
    key = type(processor)
    with _LOCK:
        cached = _FORMS.get(key)
    if cached is not None:
        return cached
    form = _probe(processor)
    with _LOCK:
        _FORMS[key] = form
    return form


def _probe(processor: Any) -> Qwen3VideoForm:
    try:
        import numpy as np
        from transformers.video_utils import VideoMetadata

        video_processor = processor.video_processor
        tokenizer = processor.tokenizer
        start = getattr(processor, "vision_start_token", "<|vision_start|>")
        end = getattr(processor, "vision_end_token", "<|vision_end|>")
        pad = getattr(processor, "video_token", "<|video_pad|>")
        start_id = tokenizer.convert_tokens_to_ids(start)
        frames = int(video_processor.temporal_patch_size)
        side = int(video_processor.patch_size) * int(video_processor.merge_size)
        clip = np.zeros((frames, side, side, 3), dtype=np.uint8)
        metadata = VideoMetadata(
            total_num_frames=frames, fps=1.0, frames_indices=list(range(frames))
        )
        quiet = logging.getLogger("transformers")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = processor(
                    text=[start + pad + end],
                    videos=[clip],
                    video_metadata=[metadata],
                    do_resize=False,
                    do_sample_frames=False,
                )
        finally:
            quiet.setLevel(level)
        ids = [int(i) for i in out["input_ids"][0]]
    except Exception as exc:
        raise InvalidInputError(
            f"cannot tell which Qwen3-VL video text form {type(processor).__name__} writes "
            f"({type(exc).__name__} while probing it); pass qwen3_video_text='wrapped' "
            "(template pair kept) or 'unwrapped' (collapsed, as vLLM)"
        ) from exc
    starts = ids.count(start_id)
    if starts == 2:
        return "wrapped"
    if starts == 1:
        return "unwrapped"
    raise InvalidInputError(
        f"{type(processor).__name__} wrote {starts} vision-start tokens for a one-patch video "
        "(expected 1 or 2); pass qwen3_video_text='wrapped' or 'unwrapped' explicitly"
    )
