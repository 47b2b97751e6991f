"""The rows a :class:`~vlprep.runner.BatchEngine` decodes together: one KV cache, left-padded.

Each request is prefilled on its own (batch of one: exactly the prompt pass
:meth:`vlprep.runner.Runner.generate` runs for that conversation alone, images and videos
included, so no pixel tensors are ever concatenated). Its cache is then merged into the
running batch: the key/value tensors of every layer are left-padded with zeros to a common
length and concatenated along the batch axis, and the attention mask holds 0 on the padding.
A row that leaves is dropped from the tensors (``DynamicCache.batch_select_indices``), and
columns that only held padding for the remaining rows are cut off the left, so the cache
shrinks with the batch instead of being masked.

Positions follow :mod:`vlprep.runner._decode`: after a prompt whose positions end at
``valid + delta - 1`` (``valid`` unpadded tokens, ``delta`` the rope delta), each new token of
the row sits at the next integer on all three M-RoPE axes. Every row keeps its own counter,
so rows that joined at different steps each decode at their own positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlprep._errors import GenerationError
from vlprep._positions import RopeSemantics
from vlprep.runner._decode import Sampling, cache_keyword, cache_of, prompt_positions, sample_next

__all__ = ["Prefilled", "RowBatch", "choose_tokens", "prefill"]

_PIXELS = ("pixel_values", "pixel_values_videos")


@dataclass(slots=True)
class Prefilled:
    """One prompt after its prefill pass.

    Attributes:
        cache: the model's ``DynamicCache`` holding the prompt (batch of one).
        mask: ``(1, L)`` attention mask of the prompt (1 = token, 0 = padding).
        logits: ``(1, vocab)`` logits of the first generated token.
        next_pos: int64 ``(1, 1)``, the M-RoPE position of the first generated token.
    """

    cache: Any
    mask: torch.Tensor
    logits: torch.Tensor
    next_pos: torch.Tensor


def prefill(
    model: Any,
    inputs: Mapping[str, torch.Tensor],
    *,
    family: str,
    device: torch.device,
    dtype: torch.dtype,
    semantics: RopeSemantics,
) -> Prefilled:
    """The prompt pass of one :func:`vlprep.build_inputs` row, moved to ``device`` first.

    Pixel tensors are cast to ``dtype`` (as :meth:`~vlprep.runner.Runner.prepare` does: a
    no-op on its output); run under ``torch.inference_mode``.
    """
    moved = {
        key: value.to(device, dtype if key in _PIXELS else value.dtype)
        for key, value in inputs.items()
    }
    tps = float(getattr(model.config.vision_config, "tokens_per_second", 2) or 2)
    positions, deltas = prompt_positions(moved, family, tps, semantics)
    mask = moved["attention_mask"]
    prompt = {k: v for k, v in moved.items() if k != "attention_mask"}
    out = model(
        **prompt,
        attention_mask=mask,
        position_ids=positions.to(device),
        use_cache=True,
        **{cache_keyword(model): None},
    )
    cache = cache_of(out)
    _layers(cache)  # refuse a cache this module cannot merge before the row joins
    valid = mask.sum(dim=-1, keepdim=True)
    return Prefilled(cache, mask, out.logits[:, -1], valid + deltas.to(device))


def _layers(cache: Any) -> list[Any]:
    """The cache's layers, each a full-attention ``DynamicLayer`` (keys/values tensors)."""
    from transformers.cache_utils import DynamicLayer

    layers = list(getattr(cache, "layers", None) or [])
    if not layers or any(
        type(layer) is not DynamicLayer or getattr(layer, "is_sliding", False) for layer in layers
    ):
        kinds = sorted({type(layer).__name__ for layer in layers}) or ["none"]
        raise GenerationError(
            f"the batching engine merges full-attention DynamicCache layers; this model's "
            f"cache has {', '.join(kinds)} (a sliding-window or quantized cache): serve it "
            f"one request at a time with Runner.stream"
        )
    return layers


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    if width == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = width
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class RowBatch:
    """The decoding rows' cache, mask, positions and next-token logits, row ``b`` = request ``b``.

    Attributes:
        cache: one ``DynamicCache``, keys/values ``(B, kv_heads, C, head_dim)``.
        mask: ``(B, C)``, 1 where row ``b`` has a token in cache column ``c``.
        next_pos: int64 ``(B, 1)``, each row's position for its next token.
        logits: ``(B, vocab)``, each row's next-token logits.
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self._keyword = cache_keyword(model)
        self.cache: Any = None
        self.mask = torch.empty(0)
        self.next_pos = torch.empty(0)
        self.logits = torch.empty(0)

    @property
    def size(self) -> int:
        """Rows in the batch."""
        return 0 if self.cache is None else int(self.mask.shape[0])

    @property
    def columns(self) -> int:
        """Cache length ``C`` (padding included)."""
        return 0 if self.cache is None else int(self.mask.shape[1])

    def add(self, row: Prefilled) -> None:
        """Append ``row`` as the last row, left-padding whichever side is shorter."""
        if self.cache is None:
            self.cache, self.mask = row.cache, row.mask
            self.next_pos, self.logits = row.next_pos, row.logits
            return
        ours, theirs = _layers(self.cache), _layers(row.cache)
        length = max(self.columns, int(row.mask.shape[1]))
        grow, pad = length - self.columns, length - int(row.mask.shape[1])
        merged = [
            (
                torch.cat([_pad_left(mine.keys, grow, 2), _pad_left(other.keys, pad, 2)]),
                torch.cat([_pad_left(mine.values, grow, 2), _pad_left(other.values, pad, 2)]),
            )
            for mine, other in zip(ours, theirs, strict=True)
        ]
        mask = torch.cat([_pad_left(self.mask, grow, 1), _pad_left(row.mask, pad, 1)])
        next_pos = torch.cat([self.next_pos, row.next_pos])
        logits = torch.cat([self.logits, row.logits])
        # nothing is replaced until every tensor exists (an allocation failure leaves the
        # batch as it was)
        for layer, (keys, values) in zip(ours, merged, strict=True):
            layer.keys, layer.values = keys, values
        self.mask, self.next_pos, self.logits = mask, next_pos, logits

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order); drop the columns that are now padding only."""
        if not rows:
            self.cache = None
            return
        if list(rows) == list(range(self.size)):
            return
        index = torch.tensor(list(rows), dtype=torch.int64, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask.index_select(0, index)
        self.next_pos = self.next_pos.index_select(0, index)
        self.logits = self.logits.index_select(0, index)
        first = int(self.mask.any(dim=0).int().argmax())  # first column some row uses
        if first:
            for layer in _layers(self.cache):
                layer.keys = layer.keys[:, :, first:]
                layer.values = layer.values[:, :, first:]
            self.mask = self.mask[:, first:]

    def step(self, tokens: torch.Tensor) -> None:
        """Feed int64 ``(B,)`` ``tokens`` (one per row) and store the next logits."""
        batch = self.size
        attention = torch.cat([self.mask, self.mask.new_ones((batch, 1))], dim=1)
        positions = self.next_pos.view(1, batch, 1).expand(3, batch, 1).contiguous()
        out = self._model(
            input_ids=tokens.view(batch, 1),
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            **{self._keyword: self.cache},
        )
        self.cache = cache_of(out)
        self.mask = attention
        self.next_pos = self.next_pos + 1
        self.logits = out.logits[:, -1]


def choose_tokens(
    logits: torch.Tensor,
    samplings: Sequence[Sampling],
    generators: Sequence[torch.Generator | None],
) -> torch.Tensor:
    """int64 ``(B,)``: each row's next token under its own sampling and generator.

    Greedy rows take the argmax; a sampled row draws exactly as
    :func:`vlprep.runner._decode.sample_next` does for a batch of one with that generator.
    """
    chosen = logits.argmax(dim=-1)
    for b, (sampling, generator) in enumerate(zip(samplings, generators, strict=True)):
        if sampling.do_sample:
            chosen[b] = sample_next(logits[b : b + 1], sampling, generator)[0]
    return chosen
