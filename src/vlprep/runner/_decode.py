"""Prefill and token-by-token decoding with explicit M-RoPE positions.

The prompt's 3-D positions come from :func:`vlprep.rope_index`; every generated token ``i``
(0-based) of row ``b`` then sits at ``valid_b + i + delta_b`` on all three axes, where
``valid_b`` is the row's unpadded prompt length and ``delta_b`` the rope delta — the rule
transformers and vLLM use. Two caches: the model's dynamic cache (eager, any device), and a
static cache whose decode step has fixed shapes, which is what ``torch.compile(mode=
"reduce-overhead")`` needs to replay one CUDA graph per token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vlprep._errors import InvalidInputError
from vlprep._positions import RopeSemantics, rope_index

__all__ = [
    "DecodeResult",
    "Sampling",
    "cache_keyword",
    "cache_of",
    "decode",
    "prompt_positions",
    "sample_next",
]

logger = logging.getLogger(__name__)
_GRID_KEYS = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts", "attention_mask")


@dataclass(frozen=True, slots=True)
class Sampling:
    """How the next token is chosen.

    Attributes:
        max_new_tokens: tokens to generate at most (>= 1).
        do_sample: sample from the distribution; ``False`` = greedy (argmax).
        temperature: divides the logits before sampling (> 0).
        top_p: nucleus sampling mass in ``(0, 1]``.
        seed: seeds the sampler's generator, so a seeded run repeats exactly.
    """

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise InvalidInputError(f"max_new_tokens must be an int, got {self.max_new_tokens!r}")
        if self.max_new_tokens < 1:
            raise InvalidInputError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature > 0:
            raise InvalidInputError(f"temperature must be > 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise InvalidInputError(f"top_p must be in (0, 1], got {self.top_p!r}")


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """Generated ids and timings of one batch.

    Attributes:
        tokens: int64 ``(B, n)``; rows that stopped early are filled with the pad id.
        lengths: generated tokens per row, end-of-turn token included.
        prefill_s / decode_s: wall seconds of the prompt pass and of the token loop.
        mode: ``"eager"``, ``"static"`` or ``"compiled"``.
    """

    tokens: torch.Tensor
    lengths: list[int]
    prefill_s: float
    decode_s: float
    mode: str


def prompt_positions(
    inputs: Any, family: str, tokens_per_second: float, semantics: RopeSemantics
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(position_ids (3, B, L), deltas (B, 1))`` of a :func:`vlprep.build_inputs` batch."""
    extra = {k: inputs[k].cpu() for k in _GRID_KEYS if k in inputs}
    return rope_index(
        inputs["input_ids"].cpu(),
        inputs["mm_token_type_ids"].cpu(),
        family=family,
        tokens_per_second=tokens_per_second,
        semantics=semantics,
        **extra,
    )


def sample_next(
    logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None
) -> torch.Tensor:
    """int64 ``(B,)``: argmax, or a draw after temperature and top-p, from ``(B, V)`` logits."""
    if not sampling.do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass above each token
        sorted_probs[before >= sampling.top_p] = 0  # the top token always stays
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def cache_keyword(model: Any) -> str:
    """The name ``model.forward`` takes its KV cache under.

    transformers 5.24 renamed ``past_key_values`` to ``cache``; a model of an earlier
    release silently swallows ``cache=`` in its ``**kwargs`` and decodes every step without
    its history, so the name is read from the signature, never assumed.
    """
    import inspect

    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins / C callables
        return "cache"
    return "cache" if "cache" in parameters else "past_key_values"


def cache_of(output: Any) -> Any:
    """The KV cache a model call returned (``cache``, or ``past_key_values`` before 5.24)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def _stepper(model: Any, cache_box: list[Any], mode: str) -> Callable[..., Any]:
    """One decode step; under ``torch.compile`` (CUDA graphs) in ``"compiled"`` mode."""

    keyword = cache_keyword(model)

    def step(ids: torch.Tensor, attention: torch.Tensor, pos: torch.Tensor) -> Any:
        return model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=pos,
            use_cache=True,
            **{keyword: cache_box[0]},
        )

    if mode == "compiled":
        return torch.compile(step, mode="reduce-overhead", dynamic=False)
    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode(
    model: Any,
    inputs: Any,
    *,
    family: str,
    sampling: Sampling,
    stop_ids: list[int],
    pad_id: int,
    semantics: RopeSemantics = "reference",
    mode: str = "eager",
    on_token: Callable[[torch.Tensor], None] | None = None,
) -> DecodeResult:
    """Prefill ``inputs`` and generate until every row emits a stop id or the limit.

    Args:
        model: a transformers Qwen-VL ``...ForConditionalGeneration`` in eval mode.
        inputs: :func:`vlprep.build_inputs` output, already on the model's device.
        family: ``"qwen2-vl"``, ``"qwen2.5-vl"`` or ``"qwen3-vl"``.
        sampling: the sampler settings.
        stop_ids: end-of-turn ids (``<|im_end|>``, ``<|endoftext|>``).
        pad_id: written after a row has stopped.
        semantics: prompt M-RoPE rule (see :mod:`vlprep._positions`).
        mode: ``"eager"`` (dynamic cache), ``"static"`` (static cache, eager) or
            ``"compiled"`` (static cache, decode step under ``torch.compile``; falls back to
            ``"static"``, with a logged warning, when compilation fails).
        on_token: called with each step's ``(B,)`` ids, for streaming.
    """
    device = inputs["input_ids"].device
    tps = float(getattr(model.config.vision_config, "tokens_per_second", 2) or 2)
    positions, deltas = prompt_positions(inputs, family, tps, semantics)
    positions, deltas = positions.to(device), deltas.to(device)
    batch, length = inputs["input_ids"].shape
    total = length + sampling.max_new_tokens
    mask = torch.zeros((batch, total), dtype=inputs["attention_mask"].dtype, device=device)
    mask[:, :length] = inputs["attention_mask"]
    valid = inputs["attention_mask"].sum(dim=-1, keepdim=True).to(device)
    generator = None
    if sampling.do_sample and sampling.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)
    cache_box: list[Any] = [None]
    if mode in ("static", "compiled"):
        from transformers import StaticCache

        cache_box[0] = StaticCache(config=model.config.get_text_config(), max_cache_len=total)
    prompt = {k: v for k, v in inputs.items() if k != "attention_mask"}

    started = time.perf_counter()
    with torch.inference_mode():
        out = model(
            **prompt,
            attention_mask=mask[:, :length],
            position_ids=positions,
            use_cache=True,
            **{cache_keyword(model): cache_box[0]},
        )
        cache_box[0] = cache_of(out)
        logits = out.logits[:, -1]
        del out
        _sync(device)
        prefill_s = time.perf_counter() - started
        started = time.perf_counter()
        tokens, lengths, used = _token_loop(
            model,
            logits,
            _Loop(mask, length, valid, deltas, cache_box, mode),
            sampling=sampling,
            generator=generator,
            stops=torch.tensor(stop_ids, dtype=torch.int64, device=device),
            pad_id=pad_id,
            on_token=on_token,
        )
        _sync(device)
        decode_s = time.perf_counter() - started
    return DecodeResult(
        tokens=tokens.cpu(),
        lengths=[int(n) for n in lengths.cpu()],
        prefill_s=prefill_s,
        decode_s=decode_s,
        mode=used,
    )


@dataclass(slots=True)
class _Loop:
    mask: torch.Tensor  # (B, prompt + max_new) with 1 on valid positions so far
    length: int  # padded prompt length
    valid: torch.Tensor  # (B, 1) unpadded prompt lengths
    deltas: torch.Tensor  # (B, 1) rope deltas
    cache_box: list[Any]
    mode: str


def _token_loop(
    model: Any,
    logits: torch.Tensor,
    loop: _Loop,
    *,
    sampling: Sampling,
    generator: torch.Generator | None,
    stops: torch.Tensor,
    pad_id: int,
    on_token: Callable[[torch.Tensor], None] | None,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    batch = logits.shape[0]
    used = loop.mode
    stepper = _stepper(model, loop.cache_box, used)
    done = torch.zeros(batch, dtype=torch.bool, device=logits.device)
    lengths = torch.zeros(batch, dtype=torch.int64, device=logits.device)
    tokens: list[torch.Tensor] = []
    for i in range(sampling.max_new_tokens):
        chosen = sample_next(logits, sampling, generator)
        chosen = torch.where(done, torch.full_like(chosen, pad_id), chosen)
        lengths += (~done).long()
        done |= torch.isin(chosen, stops)
        tokens.append(chosen)
        if on_token is not None:
            on_token(chosen)
        if bool(done.all()) or i == sampling.max_new_tokens - 1:
            break
        loop.mask[:, loop.length + i] = 1
        pos = (loop.valid + i + loop.deltas).view(1, batch, 1).expand(3, batch, 1).contiguous()
        attention = loop.mask if used != "eager" else loop.mask[:, : loop.length + i + 1]
        try:
            out = stepper(chosen.view(batch, 1), attention, pos)
        except Exception as exc:
            if used != "compiled":
                raise
            logger.warning("torch.compile decode step failed (%s); using eager steps", exc)
            used, stepper = "static", _stepper(model, loop.cache_box, "static")
            out = stepper(chosen.view(batch, 1), attention, pos)
        if used == "eager":
            loop.cache_box[0] = cache_of(out)
        logits = out.logits[:, -1].clone()  # a CUDA graph reuses its output buffers
    return torch.stack(tokens, dim=1), lengths, used
