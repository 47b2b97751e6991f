"""Exact token counts of a conversation's text around its images and videos, for the fit.

``len(input_ids)`` of :func:`vlprep.build_inputs` is the rendered template text tokenised,
with each ``<|image_pad|>`` / ``<|video_pad|>`` repeated to its item's token count. For
Qwen2-VL and Qwen2.5-VL the text does not depend on the sizes, so one tokenisation counts it.
Qwen3-VL writes each video as per-temporal-patch blocks ``<t seconds><|vision_start|>pad
<|vision_end|>``, whose number and seconds follow the frame count: :class:`TextCount` counts
them piece by piece. The tokenizer splits its text at added (special) tokens before anything
else, so a ``<t seconds>`` piece merges only with the text back to the previous special token;
:meth:`TextCount.exact` tokenises the whole final text once, and the fit checks its own count
against it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vlprep._errors import InvalidInputError
from vlprep._expansion import SpecialTokens, qwen3_video_text

__all__ = ["TextCount"]

Stamps = Callable[[int], Sequence[float]]


class TextCount:
    """Text tokens of one rendered conversation; Qwen3-VL video text as a function of frames.

    Args:
        text: the chat template's output for the conversation.
        processor: the processor (its ``tokenizer`` is called as ``build_inputs`` calls it).
        tokens: the placeholder tokens.
        images: number of images in the conversation.
        videos: ``frames -> timestamps`` per video (prompt order).
        temporal: frames per temporal patch.
        per_frame: the video text depends on the frames (Qwen3-VL); otherwise each video
            is one pad and ``videos`` only counts them.
        unwrapped: the Qwen3-VL ``"unwrapped"`` form (the template's wrapper is replaced).

    Raises:
        InvalidInputError: the rendered text has another number of video placeholders than
            there are videos.
    """

    def __init__(
        self,
        text: str,
        processor: Any,
        tokens: SpecialTokens,
        *,
        images: int,
        videos: Sequence[Stamps | None],
        temporal: int,
        per_frame: bool = False,
        unwrapped: bool = False,
    ) -> None:
        self._tokenizer = processor.tokenizer
        self._tokens = tokens
        self._images = images
        self._videos = list(videos)
        self._temporal = temporal
        self._memo: dict[str, int] = {}
        if not per_frame:
            self._parts: list[str] = []
            self.base = self.full_length(text)
            return
        if unwrapped:
            wrapped = tokens.vision_start + tokens.video + tokens.vision_end
            text = text.replace(wrapped, tokens.video)
        self._parts = text.split(tokens.video)
        if len(self._parts) - 1 != len(self._videos):
            raise InvalidInputError(
                f"the rendered prompt has {len(self._parts) - 1} video placeholders for "
                f"{len(self._videos)} videos; check the elements' 'type'"
            )
        added = self._added_tokens()
        self._left = [_after_last(part, added) for part in self._parts[:-1]]
        self.base = 0  # set by reference()

    @property
    def per_frame(self) -> bool:
        """Whether the videos' text depends on their frame counts (Qwen3-VL)."""
        return bool(self._parts)

    def _added_tokens(self) -> list[str]:
        vocab = getattr(self._tokenizer, "get_added_vocab", None)
        names = list(vocab()) if vocab is not None else []
        names += list(getattr(self._tokenizer, "all_special_tokens", []) or [])
        specials = [self._tokens.vision_start, self._tokens.vision_end, self._tokens.image]
        return sorted({n for n in [*names, *specials] if n}, key=len, reverse=True)

    def full_length(self, text: str) -> int:
        """``len(input_ids)`` of ``text`` tokenised as :func:`vlprep.build_inputs` does
        (before the placeholders are repeated)."""
        ids = self._tokenizer([text], padding=False, return_attention_mask=False)["input_ids"]
        return len(ids[0])

    def _piece(self, text: str) -> int:
        found = self._memo.get(text)
        if found is None:
            found = len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
            self._memo[text] = found
        return found

    def _stamps(self, video: int, frames: int) -> Sequence[float]:
        stamps = self._videos[video]
        if stamps is None:
            raise InvalidInputError(f"video {video} has no timestamps to write")
        return stamps(frames)

    def blocks(self, frames: int) -> int:
        """Temporal patches of ``frames`` frames."""
        return -(-frames // self._temporal)

    def video_text(self, video: int, frames: int) -> int:
        """Tokens of video ``video``'s block text at ``frames`` frames, pads once each, in
        its context (the first ``<t seconds>`` with the text before it)."""
        stamps = list(self._stamps(video, frames))[: self.blocks(frames)]
        left = self._left[video]
        count = self._piece(left + f"<{stamps[0]:.1f} seconds>") - (
            self._piece(left) if left else 0
        )
        count += sum(self._piece(f"<{t:.1f} seconds>") for t in stamps[1:])
        return count + 3 * len(stamps)

    def final_text(self, frames: Sequence[int]) -> str:
        """The text :func:`vlprep.build_inputs` tokenises when video ``v`` has
        ``frames[v]`` frames (Qwen3-VL)."""
        out = self._parts[0]
        for video, part in enumerate(self._parts[1:]):
            count = frames[video]
            stamps = list(self._stamps(video, count))[: self.blocks(count)]
            out += qwen3_video_text(stamps, self._tokens) + part
        return out

    def reference(self, frames: Sequence[int]) -> None:
        """Tokenise the final text once at ``frames`` (the unfitted counts): the base that
        :meth:`video_text` differences are added to."""
        length = self.full_length(self.final_text(frames))
        self.base = length - sum(self.video_text(v, n) for v, n in enumerate(frames))

    def fixed(self) -> int:
        """Tokens that do not depend on any item's state: the text without the videos'
        block text, minus one per image pad (each pad is counted with its image)."""
        if not self._parts:
            return self.base - self._images - len(self._videos)
        return self.base - self._images

    def video_extra(self, video: int, frames: int) -> int:
        """A video's text tokens besides its pads (Qwen3-VL; 0 otherwise)."""
        if not self._parts:
            return 0
        return self.video_text(video, frames) - self.blocks(frames)

    def exact(self, frames: Sequence[int]) -> int:
        """The text tokens (everything but pad repeats) tokenised whole at ``frames``:
        ``len(input_ids)`` minus the pads. What :meth:`fixed` + :meth:`video_extra` must add to."""
        if not self._parts:
            return self.base - self._images - len(self._videos)
        text = self.final_text(frames)
        return self.full_length(text) - self._images - sum(self.blocks(n) for n in frames)


def _after_last(text: str, added: Sequence[str]) -> str:
    """``text`` after the last added token in it (the tokenizer's split point)."""
    cut = 0
    for name in added:
        at = text.rfind(name)
        if at >= 0:
            cut = max(cut, at + len(name))
    return text[cut:]
