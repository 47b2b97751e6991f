"""``Runner``: a loaded Qwen-VL checkpoint that answers conversations."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import InvalidInputError
from vlprep._inputs import build_inputs
from vlprep._messages import Conversation, as_conversations
from vlprep._positions import RopeSemantics
from vlprep._presets import Preset, resolve_family
from vlprep._tensors import PIXEL_DTYPES
from vlprep.runner._decode import DecodeResult, Sampling, decode
from vlprep.runner._loading import load_checkpoint, pick_device, pick_dtype

__all__ = ["GenerationResult", "Runner"]

DecodeMode = Literal["auto", "eager", "static", "compiled"]


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """Answers of one batch with counts and timings (seconds).

    Attributes:
        texts: one answer per conversation, special tokens removed.
        token_ids: the generated ids per conversation (end-of-turn id included).
        raw_texts: the answers with special tokens kept (end-of-turn removed): what
            :func:`vlprep.grounding.parse` needs for Qwen2-VL's ``<|box_start|>`` form.
        prompt_tokens: prompt length per conversation (padding excluded).
        generated_tokens: tokens generated per conversation (end-of-turn included).
        vision_tokens: image + video placeholder tokens per conversation.
        image_sizes: ``(height, width)`` of each image as fed to the model (resized), in
            prompt order across the batch; grounding boxes of Qwen2.5-VL refer to these.
        timings: ``preprocess``, ``prefill``, ``decode`` seconds and ``decode_tokens_per_s``.
        decode_mode: ``"eager"``, ``"static"`` or ``"compiled"``.
    """

    texts: list[str]
    token_ids: list[list[int]]
    raw_texts: list[str]
    prompt_tokens: list[int]
    generated_tokens: list[int]
    vision_tokens: list[int]
    image_sizes: list[tuple[int, int]]
    timings: dict[str, float] = field(default_factory=dict)
    decode_mode: str = "eager"


class Runner:
    """A Qwen2-VL / Qwen2.5-VL / Qwen3-VL (incl. MoE) checkpoint, ready to answer.

    Build it with :meth:`from_pretrained`. Every call goes through
    :func:`vlprep.build_inputs`; the runner adds no preprocessing of its own. The family
    is ``preset.family``; the older ``family=`` keyword must agree with it.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        preset: Preset,
        family: str | None = None,
        device: torch.device,
        dtype: torch.dtype,
        decode_mode: DecodeMode = "auto",
        rope: RopeSemantics = "reference",
        load_seconds: float = 0.0,
        image_options: ImageOptions | None = None,
        video_options: VideoOptions | None = None,
        max_total_tokens: int | None = None,
    ) -> None:
        if max_total_tokens is not None and (
            isinstance(max_total_tokens, bool)
            or not isinstance(max_total_tokens, int)
            or max_total_tokens < 1
        ):
            raise InvalidInputError(
                f"max_total_tokens must be an int >= 1 or None, got {max_total_tokens!r:.40}"
            )
        self.max_total_tokens = max_total_tokens
        if decode_mode not in ("auto", "eager", "static", "compiled"):
            raise InvalidInputError(
                f"decode_mode must be 'auto', 'eager', 'static' or 'compiled', got {decode_mode!r}"
            )
        self.model, self.processor = model, processor
        self.family, self.preset = resolve_family(preset, family), preset
        self.device, self.dtype = device, dtype
        self.rope: RopeSemantics = rope
        self.load_seconds = load_seconds
        self.image_options, self.video_options = image_options, video_options
        if decode_mode == "auto":
            decode_mode = "compiled" if device.type == "cuda" else "eager"
        self.decode_mode = decode_mode
        tokenizer = processor.tokenizer
        stops = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
        eos = getattr(model.generation_config, "eos_token_id", None)
        stops |= set(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])
        self.stop_ids = sorted(i for i in stops if isinstance(i, int) and i >= 0)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.stop_ids[0])

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        attn_implementation: str | None = None,
        decode_mode: DecodeMode = "auto",
        rope: RopeSemantics = "reference",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        image_options: ImageOptions | None = None,
        video_options: VideoOptions | None = None,
        max_total_tokens: int | None = None,
    ) -> Runner:
        """Load a checkpoint from a local directory or a hub id.

        Args:
            model: a directory written by ``save_pretrained`` (model + processor), or a hub
                id such as ``"Qwen/Qwen2-VL-2B-Instruct"`` (needs network access).
            device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:1"``, ...
            dtype: ``"auto"`` (bfloat16 on GPUs that support it, float32 on CPU) or a name.
            attn_implementation: passed to transformers (``"sdpa"``, ``"flash_attention_2"``).
            decode_mode: ``"auto"`` = ``"compiled"`` on CUDA (static cache + CUDA graphs),
                else ``"eager"``.
            rope: M-RoPE rule for the prompt (see :mod:`vlprep._positions`).
            min_pixels / max_pixels: image pixel bounds overriding the processor's (an
                element's own bounds still win).
            image_options / video_options: decode rules for every call, e.g.
                ``ImageOptions(decode="fast")`` (see docs/throughput.md).
            max_total_tokens: the context to fit every prompt and its answer into: each
                conversation's images and videos are shrunk (:func:`vlprep.fit`) so that
                the prompt is at most ``max_total_tokens - max_new_tokens`` tokens
                (``BudgetError`` when no sizes can). ``None``: no fit.

        Raises:
            BackendUnavailableError: transformers missing (``pip install 'vlprep[runner]'``).
            SourceNotFoundError: no checkpoint at ``model``.
            InvalidInputError: not a Qwen-VL checkpoint, or bad bounds; a first-generation
                Qwen-VL checkpoint (``model_type`` ``"qwen"``), whose model is remote code
                the runner does not execute (see ``docs/qwen-vl.md``).
        """
        chosen = pick_device(device)
        precision = pick_dtype(dtype, chosen)
        started = time.perf_counter()
        network, processor, family = load_checkpoint(
            model, device=chosen, dtype=precision, attn_implementation=attn_implementation
        )
        preset = Preset.from_pretrained(processor)
        if preset.family != family:
            raise InvalidInputError(
                f"{str(model)[:120]!r}: config.json says {family!r} but the processor is "
                f"{type(processor).__name__} ({preset.family!r}); the checkpoint is inconsistent"
            )
        if min_pixels is not None or max_pixels is not None:
            preset = preset.replace(
                image_min_pixels=preset.image_min_pixels if min_pixels is None else min_pixels,
                image_max_pixels=preset.image_max_pixels if max_pixels is None else max_pixels,
            )
        return cls(
            network,
            processor,
            preset=preset,
            device=chosen,
            dtype=precision,
            decode_mode=decode_mode,
            rope=rope,
            load_seconds=time.perf_counter() - started,
            image_options=image_options,
            video_options=video_options,
            max_total_tokens=max_total_tokens,
        )

    def prepare(
        self, conversations: Conversation | Sequence[Conversation], *, reserve: int = 0
    ) -> Any:
        """:func:`vlprep.build_inputs` output on the runner's device and dtype.

        Pixel values are written in the model's dtype directly (``build_inputs(dtype=...)``,
        equal to a cast of the float32 values) when it is float32, bfloat16 or float16.
        With ``max_total_tokens`` set, each prompt is fitted into ``max_total_tokens -
        reserve`` tokens (the answer's ``max_new_tokens`` is the reserve of a generation).

        Raises:
            InvalidInputError: ``reserve`` leaves no room under ``max_total_tokens``.
            BudgetError: no sizes fit a prompt into it.
        """
        dtype = self.dtype if self.dtype in PIXEL_DTYPES else None
        budget = None
        if self.max_total_tokens is not None:
            budget = self.max_total_tokens - reserve
            if budget < 1:
                raise InvalidInputError(
                    f"max_new_tokens ({reserve}) leaves no room for the prompt under "
                    f"max_total_tokens={self.max_total_tokens}"
                )
        inputs = build_inputs(
            conversations,
            self.processor,
            preset=self.preset,
            image_options=self.image_options,
            video_options=self.video_options,
            dtype=dtype,
            max_total_tokens=budget,
        )
        pixels = ("pixel_values", "pixel_values_videos")
        moved = {
            key: value.to(self.device, self.dtype if key in pixels else value.dtype)
            for key, value in inputs.items()
        }
        return type(inputs)(moved)

    def logits(self, conversations: Conversation | Sequence[Conversation]) -> torch.Tensor:
        """Prompt logits ``(B, L, vocab)`` (float32, CPU) from one forward pass."""
        inputs = self.prepare(conversations)
        with torch.inference_mode():
            out = self.model(**inputs, use_cache=False)
        logits: torch.Tensor = out.logits.float().cpu()
        return logits

    def _decode(self, inputs: Any, sampling: Sampling, on_token: Any = None) -> DecodeResult:
        return decode(
            self.model,
            inputs,
            family=self.family,
            sampling=sampling,
            stop_ids=self.stop_ids,
            pad_id=self.pad_id,
            semantics=self.rope,
            mode=self.decode_mode,
            on_token=on_token,
        )

    def _texts(self, rows: list[list[int]], *, keep_special: bool = False) -> list[str]:
        decode = self.processor.tokenizer.decode
        if not keep_special:
            return [decode(row, skip_special_tokens=True) for row in rows]
        stops = set(self.stop_ids)
        return [decode([t for t in row if t not in stops]) for row in rows]

    def run(
        self,
        conversations: Conversation | Sequence[Conversation],
        sampling: Sampling | None = None,
    ) -> GenerationResult:
        """Answer a batch and report counts and timings."""
        sampling = sampling or Sampling()
        started = time.perf_counter()
        inputs = self.prepare(conversations, reserve=sampling.max_new_tokens)
        preprocess = time.perf_counter() - started
        result = self._decode(inputs, sampling)
        mask = inputs["attention_mask"].cpu()
        types = inputs["mm_token_type_ids"].cpu()
        grids = inputs["image_grid_thw"].tolist() if "image_grid_thw" in inputs else []
        patch = self.preset.patch_size
        generated = sum(result.lengths)
        rows = [result.tokens[b, :n].tolist() for b, n in enumerate(result.lengths)]
        return GenerationResult(
            texts=self._texts(rows),
            token_ids=rows,
            raw_texts=self._texts(rows, keep_special=True),
            prompt_tokens=[int(n) for n in mask.sum(dim=-1)],
            generated_tokens=result.lengths,
            vision_tokens=[int(n) for n in (types > 0).sum(dim=-1)],
            image_sizes=[(h * patch, w * patch) for _, h, w in grids],
            timings={
                "load": self.load_seconds,
                "preprocess": preprocess,
                "prefill": result.prefill_s,
                "decode": result.decode_s,
                "decode_tokens_per_s": generated / result.decode_s if result.decode_s else 0.0,
            },
            decode_mode=result.mode,
        )

    def generate(
        self,
        conversations: Conversation | Sequence[Conversation],
        *,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        do_sample: bool = False,
        seed: int | None = None,
    ) -> str | list[str]:
        """Answer one conversation (returns a ``str``) or a batch (a ``list[str]``).

        Batches are left-padded. Greedy by default; ``do_sample=True`` with ``seed`` repeats.
        """
        sampling = Sampling(max_new_tokens, do_sample, temperature, top_p, seed)
        texts = self.run(conversations, sampling).texts
        return texts[0] if _is_single(conversations) else texts

    def stream(
        self,
        conversation: Conversation,
        *,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        do_sample: bool = False,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Yield the answer to one conversation piece by piece as tokens are produced.

        The pieces join to exactly what :meth:`generate` returns. Decoding runs in a
        background thread; text is held back while it ends inside a multi-byte character.
        """
        if not _is_single(conversation):
            raise InvalidInputError("stream takes one conversation (a list of messages)")
        sampling = Sampling(max_new_tokens, do_sample, temperature, top_p, seed)
        inputs = self.prepare(conversation, reserve=sampling.max_new_tokens)
        yield from _stream_text(self, inputs, sampling)


def _is_single(conversations: object) -> bool:
    batch = as_conversations(conversations)  # type: ignore[arg-type]
    return len(batch) == 1 and (
        not isinstance(conversations, Sequence)
        or not conversations
        or isinstance(conversations[0], Mapping)
    )


def _stream_text(runner: Runner, inputs: Any, sampling: Sampling) -> Iterator[str]:
    import queue
    import threading

    pending: queue.Queue[int | BaseException | None] = queue.Queue()

    def work() -> None:
        try:
            runner._decode(inputs, sampling, lambda ids: pending.put(int(ids[0])))
            pending.put(None)
        except BaseException as exc:  # re-raised in the caller's thread
            pending.put(exc)

    thread = threading.Thread(target=work, name="vlprep-stream", daemon=True)
    thread.start()
    tokenizer = runner.processor.tokenizer
    ids: list[int] = []
    sent = ""
    stop = set(runner.stop_ids)
    while True:
        item = pending.get()
        if isinstance(item, BaseException):
            thread.join()
            raise item
        if item is None:
            break
        if item in stop:
            continue
        ids.append(item)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            continue
        if len(text) > len(sent):
            yield text[len(sent) :]
            sent = text
    thread.join()
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if len(text) > len(sent):
        yield text[len(sent) :]
