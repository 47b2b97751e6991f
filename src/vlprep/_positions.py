"""3-D M-RoPE position ids for Qwen-VL prompts (``get_rope_index``), computed without a model.

Two semantics, named by who uses them:

``"reference"`` (default): the Qwen team's original rule, also vLLM's and SGLang's. After
each run (text or vision item), the next position is ``max(all positions so far) + 1``.

``"transformers"``: transformers 5.x, which advances by ``max(h, w) / merge`` after a vision
item. Equal to the reference for images and for Qwen3-VL (whose videos are split into
one-frame items), but after a Qwen2-VL / Qwen2.5-VL video whose temporal extent exceeds
its spatial one, the following text starts inside the video's temporal range.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch

from vlprep._errors import InvalidInputError
from vlprep._presets import Preset, resolve_family

__all__ = ["RopeSemantics", "rope_index"]

RopeSemantics = Literal["reference", "transformers"]


def _runs(types: list[int]) -> list[tuple[int, int, int]]:
    runs: list[tuple[int, int, int]] = []
    start = 0
    for i in range(1, len(types) + 1):
        if i == len(types) or types[i] != types[start]:
            runs.append((types[start], start, i))
            start = i
    return runs


def _vision_items(
    family: str,
    image_grid_thw: torch.Tensor | None,
    video_grid_thw: torch.Tensor | None,
    second_per_grid_ts: torch.Tensor | None,
) -> dict[int, Iterator[tuple[tuple[int, int, int], torch.Tensor | None]]]:
    images = [] if image_grid_thw is None else [tuple(g) for g in image_grid_thw.tolist()]
    videos: list[tuple[int, int, int]] = []
    seconds: list[torch.Tensor | None] = []
    for k, grid in enumerate([] if video_grid_thw is None else video_grid_thw.tolist()):
        t, h, w = grid
        if family == "qwen3-vl":  # one item per temporal patch: time lives in the text
            videos.extend([(1, h, w)] * t)
            seconds.extend([None] * t)
        else:
            videos.append((t, h, w))
            if family == "qwen2.5-vl":
                seconds.append(
                    second_per_grid_ts[k].to(torch.float32)
                    if second_per_grid_ts is not None
                    else torch.tensor(1.0)
                )
            else:
                seconds.append(None)
    return {
        1: iter([(g, None) for g in images]),
        2: iter(zip(videos, seconds, strict=True)),
    }


def rope_index(
    input_ids: torch.Tensor,
    mm_token_type_ids: torch.Tensor,
    *,
    preset: Preset | None = None,
    family: str | None = None,
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    second_per_grid_ts: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    merge_size: int | None = None,
    tokens_per_second: float = 2,
    semantics: RopeSemantics = "reference",
) -> tuple[torch.Tensor, torch.Tensor]:
    """M-RoPE positions of a batch built by :func:`vlprep.build_inputs`.

    Args:
        input_ids: int64 ``(B, L)``.
        mm_token_type_ids: ``(B, L)``: 0 text, 1 image, 2 video.
        preset: the :class:`~vlprep._presets.Preset` the batch was built with; gives the
            family and the merge size.
        family: ``"qwen2-vl"``, ``"qwen2.5-vl"`` or ``"qwen3-vl"`` (or an alias), for
            callers without a preset; must agree with ``preset.family`` when both are given.
        image_grid_thw / video_grid_thw: int64 ``(n, 3)`` in prompt order.
        second_per_grid_ts: Qwen2.5-VL, float ``(n_videos,)``.
        attention_mask: ``(B, L)``; padded positions get 0 and are skipped.
        merge_size: the vision tower's ``spatial_merge_size``; default ``preset.merge_size``,
            else 2. Must agree with the preset when both are given.
        tokens_per_second: Qwen2.5-VL ``vision_config.tokens_per_second`` (2 in the
            released checkpoints).
        semantics: see the module docstring.

    Returns:
        ``(position_ids, deltas)``: int64 ``(3, B, L)`` (temporal, height, width) and int64
        ``(B, 1)`` with ``max(position) + 1 - valid_length`` per row, the offset decoding
        adds to every axis.

    Raises:
        InvalidInputError: no or unknown family, ``"qwen-vl"`` (1-D positions), a family
            or merge size that disagrees
            with the preset, unknown semantics, or a vision run whose length does not match
            its grid.
    """
    family = resolve_family(preset, family)
    if family == "qwen-vl":
        raise InvalidInputError(
            "Qwen-VL (the first generation) uses 1-D rotary positions, which its model "
            "computes itself, not M-RoPE; rope_index is for 'qwen2-vl', 'qwen2.5-vl' and "
            "'qwen3-vl'"
        )
    if preset is not None and merge_size is not None and merge_size != preset.merge_size:
        raise InvalidInputError(
            f"merge_size={merge_size} disagrees with the preset's ({preset.merge_size})"
        )
    if merge_size is None:
        merge_size = 2 if preset is None else preset.merge_size
    if semantics not in ("reference", "transformers"):
        raise InvalidInputError(
            f"semantics must be 'reference' or 'transformers', got {semantics!r}"
        )
    batch, length = input_ids.shape
    positions = torch.zeros((3, batch, length), dtype=torch.int64)
    deltas = []
    items = _vision_items(family, image_grid_thw, video_grid_thw, second_per_grid_ts)
    for row in range(batch):
        keep = (
            attention_mask[row].bool()
            if attention_mask is not None
            else torch.ones(length, dtype=torch.bool)
        )
        types = mm_token_type_ids[row][keep].tolist()
        chunks: list[torch.Tensor] = []
        next_pos = 0
        for kind, start, end in _runs(types):
            if kind == 0:
                chunks.append(
                    torch.arange(start=next_pos, end=next_pos + end - start)
                    .view(1, -1)
                    .expand(3, -1)
                )
                next_pos += end - start
                continue
            try:
                (t, h, w), seconds = next(items[kind])
            except (KeyError, StopIteration):
                raise InvalidInputError(
                    f"row {row} has more vision runs of type {kind} than grids were given"
                ) from None
            hh, ww = h // merge_size, w // merge_size
            if end - start != t * hh * ww:
                raise InvalidInputError(
                    f"a vision run of {end - start} tokens does not match grid ({t}, {h}, {w}) "
                    f"({t * hh * ww} tokens at merge size {merge_size})"
                )
            temporal = torch.arange(t)
            if seconds is not None:  # Qwen2.5-VL video: time scaled, floored (float32)
                temporal = (temporal * (tokens_per_second * seconds)).long()
            grid_t, grid_h, grid_w = torch.meshgrid(
                temporal, torch.arange(hh), torch.arange(ww), indexing="ij"
            )
            block = torch.stack([grid_t, grid_h, grid_w]).reshape(3, -1) + next_pos
            chunks.append(block)
            if semantics == "reference":
                next_pos = int(block.max()) + 1
            else:
                next_pos += max(hh, ww)
        flat = torch.cat(chunks, dim=1) if chunks else torch.zeros((3, 0), dtype=torch.int64)
        positions[:, row, keep] = flat
        top = int(flat.max()) + 1 if flat.numel() else 0
        deltas.append(top - len(types))
    return positions, torch.tensor(deltas, dtype=torch.int64).view(-1, 1)
