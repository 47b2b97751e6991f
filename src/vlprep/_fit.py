"""``vlprep.fit``: fit whole conversations into a token budget, from headers alone.

Every image and video of a conversation is read only as far as its header (or container
index) and becomes a ladder of sizes (:mod:`vlprep._fit_items`); the text is counted with the
processor's chat template and tokenizer (:mod:`vlprep._fit_text`). The solver picks one rung
per item so that the conversation's ``len(input_ids)`` is at most ``max_tokens - reserve``:

1. **Shrink order.** Items are grouped and the groups shrink one after the other: first by
   ``priority`` (an element key, default 0; lower shrinks first), then, for
   ``strategy="recent"``, by turn (older messages first). ``"uniform"`` puts every item
   of one priority in one group.
2. **Main solve.** The first groups go to their floors until the budget can be met; the
   group where it can is shrunk by one common scale on every item's area (videos: on
   frames x area), the largest scale that fits (a bisection; the total is monotone in it).
3. **Maximality.** Items are then raised one rung at a time while the budget allows, group
   by group from the one that shrank last, round-robin within a group, until no item can
   be raised by one rung: one grid step (an image side grows by ``factor`` pixels) or, for a
   video at its frame floor, one frame-pair.

The result per conversation (:class:`FitResult`) gives each item's size, frames, tokens and
the element keys that produce them (:meth:`FitResult.apply` writes them into the messages);
``build_inputs(..., max_total_tokens=N)`` fits and builds in one call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vlprep._chat import (
    Conversation,
    as_conversations,
    check_messages,
    check_text_options,
    qwen3_form,
    render,
    vision_parts,
)
from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import BudgetError, InvalidInputError, ResourceLimitError
from vlprep._expansion import SpecialTokens
from vlprep._fit_items import Item, State, VideoItem, make_item
from vlprep._fit_text import TextCount
from vlprep._numbers import shown
from vlprep._presets import Preset, get_preset, preset_from_processor
from vlprep._sources import FetchPolicy
from vlprep._specs import element_kind

__all__ = ["STRATEGIES", "FitResult", "ItemFit", "Strategy", "apply_fits", "drop_media", "fit"]

logger = logging.getLogger(__name__)

Strategy = Literal["uniform", "recent"]
"""How the items of a conversation share the shrinking.

``"uniform"``: one common scale on every item's area (within each ``priority``), so no item
is singled out. ``"recent"``: the media of later turns keep their size longest; older turns
shrink first (each turn's items together, by one scale), to their floors, before a newer
turn shrinks at all, as chat clients that trim history do.
"""

STRATEGIES: tuple[Strategy, ...] = ("uniform", "recent")

_BISECTIONS = 40


@dataclass(frozen=True, slots=True)
class ItemFit:
    """One image or video as fitted.

    Sizes are ``(height, width)`` in pixels (a video's per frame), multiples of the factor.

    Attributes:
        kind: ``"image"`` or ``"video"``.
        message: index of the message (turn) that holds it.
        element: its index among the conversation's vision elements (prompt order).
        source: the source as given (paths, URLs; ``data:`` and bytes shortened).
        original: upright source size.
        before / size: resized size unfitted / fitted.
        before_frames / frames: sampled frames unfitted / fitted (``None`` for images).
        before_tokens / tokens: placeholder tokens unfitted / fitted.
        floor_tokens: the fewest tokens it may take (its ``min_pixels``, ``min_frames``,
            ``min_tokens`` floors).
        keys: element keys that give the fitted size (``{}``: unchanged), e.g.
            ``{"max_pixels": 401408}`` or ``{"max_pixels": 100352, "nframes": 8}``.
    """

    kind: Literal["image", "video"]
    message: int
    element: int
    source: str
    original: tuple[int, int]
    before: tuple[int, int]
    size: tuple[int, int]
    before_frames: int | None
    frames: int | None
    before_tokens: int
    tokens: int
    floor_tokens: int
    keys: Mapping[str, int]

    @property
    def shrunk(self) -> bool:
        """Whether the fit gave it fewer tokens than it gets unfitted."""
        return self.tokens < self.before_tokens

    @property
    def scale(self) -> float:
        """``tokens / before_tokens`` (1.0: unchanged)."""
        return self.tokens / self.before_tokens if self.before_tokens else 1.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists)."""
        return {
            "kind": self.kind,
            "message": self.message,
            "element": self.element,
            "source": self.source,
            "original": list(self.original),
            "before": list(self.before),
            "size": list(self.size),
            "before_frames": self.before_frames,
            "frames": self.frames,
            "before_tokens": self.before_tokens,
            "tokens": self.tokens,
            "floor_tokens": self.floor_tokens,
            "keys": dict(self.keys),
        }


@dataclass(frozen=True, slots=True)
class FitResult:
    """One conversation fitted into ``max_tokens - reserve``.

    Attributes:
        items: every image and video, in prompt order.
        text_tokens: tokens that are not image/video pads (template, text, Qwen3-VL video
            timestamps and per-frame start/end tokens) after the fit; ``None`` when the fit
            had no processor (then only placeholder tokens are counted).
        total_before: ``len(input_ids)`` unfitted (placeholders only without a processor).
        total: ``len(input_ids)`` with the fit applied (<= ``budget``).
        max_tokens / reserve: as passed; ``budget = max_tokens - reserve``.
        strategy: the strategy used.
    """

    items: tuple[ItemFit, ...]
    text_tokens: int | None
    total_before: int
    total: int
    max_tokens: int
    reserve: int
    strategy: Strategy

    @property
    def budget(self) -> int:
        """``max_tokens - reserve``: what ``total`` may reach."""
        return self.max_tokens - self.reserve

    @property
    def fits(self) -> bool:
        """Whether the conversation fits without shrinking anything."""
        return self.total_before <= self.budget

    @property
    def shrunk(self) -> tuple[ItemFit, ...]:
        """The items the fit shrank."""
        return tuple(item for item in self.items if item.shrunk)

    def apply(self, conversation: Conversation) -> list[dict[str, Any]]:
        """A copy of ``conversation`` with each fitted element's keys set.

        Messages and content lists are copied (the input is not changed); a video whose
        frame count is fitted gets ``nframes`` in place of ``fps``. Loading the result
        (:func:`vlprep.build_inputs`, :func:`vlprep.process_vision_info`) gives the
        fitted sizes and frames.

        Raises:
            InvalidInputError: ``conversation`` has other vision elements than the fit.
        """
        return _apply(conversation, self)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with ``budget``, ``fits`` and each item's fields."""
        return {
            "fits": self.fits,
            "max_tokens": self.max_tokens,
            "reserve": self.reserve,
            "budget": self.budget,
            "total_before": self.total_before,
            "total": self.total,
            "text_tokens": self.text_tokens,
            "strategy": self.strategy,
            "items": [item.as_dict() for item in self.items],
        }


# ---------------------------------------------------------------------------- the solver


class _Problem:
    """Items, their cost (pads + Qwen3-VL video text) and the budget of one conversation."""

    def __init__(self, items: list[Item], text: TextCount | None, budget: int) -> None:
        self.items = items
        self.text = text
        self.budget = budget
        self.videos = {id(it): v for v, it in enumerate(i for i in items if i.kind == "video")}
        if text is not None and text.per_frame:
            text.reference([it.top()[0] for it in items if it.kind == "video"])
        self.fixed = 0 if text is None else text.fixed()

    def cost(self, item: Item, state: State) -> int:
        tokens = item.tokens(state)
        if self.text is not None and item.kind == "video":
            tokens += self.text.video_extra(self.videos[id(item)], state[0])
        return tokens

    def total(self, states: Sequence[State]) -> int:
        return self.fixed + sum(self.cost(it, s) for it, s in zip(self.items, states, strict=True))

    def text_tokens(self, states: Sequence[State]) -> int:
        return self.total(states) - sum(
            it.tokens(s) for it, s in zip(self.items, states, strict=True)
        )


def _groups(items: Sequence[Item], strategy: Strategy) -> list[list[int]]:
    """Indices of items per group, in shrink order (first group shrinks first)."""
    keys: dict[tuple[float, int], list[int]] = {}
    for i, item in enumerate(items):
        key = (item.priority, item.message if strategy == "recent" else 0)
        keys.setdefault(key, []).append(i)
    return [keys[key] for key in sorted(keys)]


def _solve(problem: _Problem, strategy: Strategy, conversation: int) -> list[State]:
    items = problem.items
    tops = [it.top() for it in items]
    if problem.total(tops) <= problem.budget:
        return tops
    floors = [it.floor() for it in items]
    _check_floors(problem, floors, conversation)
    states = list(tops)
    groups = _groups(items, strategy)
    shrunk = 0  # groups touched
    for group in groups:
        shrunk += 1
        trial = list(states)
        for i in group:
            trial[i] = floors[i]
        if problem.total(trial) <= problem.budget:
            states = _bisect(problem, states, group, floors)
            break
        states = trial
    for group in reversed(groups[:shrunk]):
        states = _raise(problem, states, group)
    return states


def _scaled(item: Item, scale: float, floor: State) -> State:
    state = item.at_scale(scale)
    return floor if item.tokens(state) < item.tokens(floor) else state


def _bisect(
    problem: _Problem, states: list[State], group: list[int], floors: list[State]
) -> list[State]:
    """The largest common scale of ``group`` whose total fits (floors fit, the top does not)."""

    def at(scale: float) -> list[State]:
        out = list(states)
        for i in group:
            out[i] = _scaled(problem.items[i], scale, floors[i])
        return out

    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        mid = (low + high) / 2
        if problem.total(at(mid)) <= problem.budget:
            low = mid
        else:
            high = mid
    return at(low)


def _raise(problem: _Problem, states: list[State], group: list[int]) -> list[State]:
    """Raise the group's items one rung at a time, round-robin, while the budget allows."""
    total = problem.total(states)
    changed = True
    while changed:
        changed = False
        for i in group:
            item = problem.items[i]
            nxt = item.step_up(states[i])
            if nxt is None:
                continue
            grown = total - problem.cost(item, states[i]) + problem.cost(item, nxt)
            if grown <= problem.budget:
                states[i], total, changed = nxt, grown, True
    return states


def _check_floors(problem: _Problem, floors: list[State], conversation: int) -> None:
    needed = problem.total(floors)
    budget = problem.budget
    if needed <= budget:
        return
    text = problem.text_tokens(floors) if problem.text is not None else 0
    fixed = sum(
        it.tokens(it.top())
        for it in problem.items
        if it.tokens(it.at_scale(0.0)) == it.tokens(it.top())
    )
    where = f"conversation {conversation}"
    if problem.text is not None and text > budget:
        binding, what = "text", f"its text alone needs {text:,} tokens"
    elif text + fixed > budget:
        binding = "fixed"
        what = (
            f"its text ({text:,}) and the items that cannot shrink ({fixed:,} tokens: "
            "resized_height/resized_width, sizes already at their minimum) need "
            f"{text + fixed:,}"
        )
    else:
        binding = "floors"
        what = (
            f"with every image and video at its floor (min_pixels, min_frames, "
            f"min_tokens) it needs {needed:,} tokens"
        )
    raise BudgetError(
        f"{where} cannot fit in {budget:,} tokens (max_tokens - reserve): {what}, "
        f"{needed - budget:,} over; raise max_tokens, lower reserve, shorten the text, "
        "lower the floors or drop media",
        deficit=needed - budget,
        binding=binding,
        needed=needed,
        budget=budget,
        conversation=conversation,
    )


# ---------------------------------------------------------------------------- public API


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{name} must be an int >= {low}, got {shown(value)}")
    return value


def _elements(
    conversation: Conversation,
) -> list[tuple[int, Mapping[str, Any], Literal["image", "video"]]]:
    """``(message index, element, kind)`` of each vision element, in prompt order (the
    elements :func:`vlprep.extract_vision_info` finds).

    Raises:
        InvalidInputError: a message that is not a dict; a vision element without a source.
    """
    found: list[tuple[int, Mapping[str, Any], Literal["image", "video"]]] = []
    for m, part in vision_parts(conversation):
        kind = element_kind(part)
        if kind is None:
            raise InvalidInputError(
                "a vision element needs an 'image', 'image_url', 'video' or 'video_url' "
                f"source, got keys {sorted(str(k) for k in part)[:8]}"
            )
        found.append((m, part, kind))
    return found


def _item_fit(item: Item, state: State, floor_tokens: int) -> ItemFit:
    top = item.top()
    return ItemFit(
        kind=item.kind,
        message=item.message,
        element=item.element,
        source=item.source,
        original=item.original,
        before=item.size(top),
        size=item.size(state),
        before_frames=item.frames(top),
        frames=item.frames(state),
        before_tokens=item.tokens(top),
        tokens=item.tokens(state),
        floor_tokens=floor_tokens,
        keys={k: int(v) for k, v in item.keys(state).items()},
    )


def fit(
    conversations: Conversation | Sequence[Conversation],
    max_tokens: int,
    *,
    processor: Any = None,
    preset: Preset | str | None = None,
    reserve: int = 0,
    strategy: Strategy = "uniform",
    policy: FetchPolicy | None = None,
    image_options: ImageOptions | None = None,
    video_options: VideoOptions | None = None,
    add_generation_prompt: bool = True,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    qwen3_video_text: str = "auto",
    video_timestamps: str = "pts",
) -> list[FitResult]:
    """Fit each conversation into ``max_tokens - reserve`` tokens, from headers alone.

    Every image's header and every video's container index is read (no pixel decoded); the
    solver then chooses, per item, the largest size its strategy allows (see
    :data:`Strategy` and ``docs/budget.md``). The fitted total equals ``len(input_ids)`` of
    :func:`vlprep.build_inputs` on ``result.apply(conversation)`` (same processor, options
    and text arguments), is at most the budget, and is maximal: no item can be raised by
    one grid step (image), nor a video at its frame floor by one frame-pair, without
    breaking the budget or its own bounds. Items never grow beyond their unfitted size.

    Element keys read here (and ignored by the loaders): ``"min_tokens"`` (an int, the
    item's floor in placeholder tokens; capped at its unfitted count) and ``"priority"``
    (a number, default 0: lower priorities shrink to their floors before a higher one
    shrinks at all).

    Args:
        conversations: one conversation or a batch (a result per conversation).
        max_tokens: the context length to fit in (an int >= 1).
        processor: the transformers Qwen-VL processor whose chat template and tokenizer
            count the text (exact). Without one, pass ``preset``: then only the image and
            video placeholder tokens are counted (``text_tokens`` is ``None``); keep room
            for the text with ``reserve``.
        preset: the model preset (default: read from ``processor``).
        reserve: tokens kept free (the answer's ``max_new_tokens``).
        strategy: ``"uniform"`` or ``"recent"`` (:data:`Strategy`).
        policy, image_options, video_options: as for :func:`vlprep.build_inputs`; the
            headers are read through ``policy``.
        add_generation_prompt, chat_template_kwargs, qwen3_video_text, video_timestamps:
            the text arguments of :func:`vlprep.build_inputs` (they change the count).

    Returns:
        A :class:`FitResult` per conversation, in order.

    Raises:
        BudgetError: a conversation whose text alone, or whose items at their floors, need
            more than the budget (``.deficit`` tokens over; ``.binding`` says which floor).
        InvalidInputError: bad arguments or messages; neither processor nor preset.
        FetchError, DecodeError, ResourceLimitError, ...: reading a header, as the loaders.
    """
    _check_int("max_tokens", max_tokens, 1)
    _check_int("reserve", reserve, 0)
    if strategy not in STRATEGIES:
        raise InvalidInputError(
            f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {shown(strategy)}"
        )
    if reserve >= max_tokens:
        raise InvalidInputError(
            f"reserve ({reserve}) must be below max_tokens ({max_tokens}): nothing would be "
            "left for the prompt"
        )
    if chat_template_kwargs is not None and not isinstance(chat_template_kwargs, Mapping):
        raise InvalidInputError(
            "chat_template_kwargs must be a dict of template variables (or None), got "
            f"{type(chat_template_kwargs).__name__}"
        )
    if preset is None:
        if processor is None:
            raise InvalidInputError("fit() needs the processor (exact text counts) or a preset")
        preset = preset_from_processor(processor)
    preset = get_preset(preset)
    if preset.family == "qwen-vl":
        raise InvalidInputError(
            "the first generation (qwen-vl) gives every image a fixed 256 tokens: there is "
            "nothing to fit; check the length with build_inputs(..., max_length=N)"
        )
    batch = as_conversations(conversations)
    if processor is not None:
        check_text_options(qwen3_video_text, video_timestamps, processor)
        check_messages(batch)
    image_options = image_options or ImageOptions()
    video_options = video_options or VideoOptions()
    results = []
    for c, conversation in enumerate(batch):
        items = [
            make_item(
                ele,
                kind,
                (message, e),
                preset,
                policy=policy,
                image_options=image_options,
                video_options=video_options,
                timestamps=video_timestamps,
            )
            for e, (message, ele, kind) in enumerate(_elements(conversation))
        ]
        text = None
        if processor is not None:
            text = _text_count(
                conversation,
                processor,
                preset,
                items,
                add_generation_prompt=add_generation_prompt,
                template_kwargs=chat_template_kwargs or {},
                qwen3_video_text=qwen3_video_text,
            )
        problem = _Problem(items, text, max_tokens - reserve)
        results.append(_result(problem, strategy, c, max_tokens, reserve))
    return results


def _text_count(
    conversation: Conversation,
    processor: Any,
    preset: Preset,
    items: list[Item],
    *,
    add_generation_prompt: bool,
    template_kwargs: Mapping[str, Any],
    qwen3_video_text: str,
) -> TextCount:
    (rendered,) = render([conversation], processor, add_generation_prompt, template_kwargs)
    tokens = SpecialTokens.from_processor(processor)
    videos = [it for it in items if isinstance(it, VideoItem)]
    images = len(items) - len(videos)
    stamps = [v.stamps_of for v in videos]
    if preset.family != "qwen3-vl" or not videos:
        return TextCount(
            rendered,
            processor,
            tokens,
            images=images,
            videos=stamps,
            temporal=preset.temporal_patch_size,
        )
    form = qwen3_form(qwen3_video_text, processor)
    return TextCount(
        rendered,
        processor,
        tokens,
        images=images,
        videos=stamps,
        temporal=preset.temporal_patch_size,
        per_frame=True,
        unwrapped=form == "unwrapped",
    )


def _result(
    problem: _Problem, strategy: Strategy, conversation: int, max_tokens: int, reserve: int
) -> FitResult:
    items = problem.items
    tops = [it.top() for it in items]
    total_before = problem.total(tops)
    states = _solve(problem, strategy, conversation)
    total = problem.total(states)
    text_tokens = None
    if problem.text is not None:
        frames = [s[0] for it, s in zip(items, states, strict=True) if it.kind == "video"]
        text_tokens = problem.text.exact(frames)
        exact = text_tokens + sum(it.tokens(s) for it, s in zip(items, states, strict=True))
        if exact != total:  # the piecewise count disagrees with one whole tokenisation
            logger.warning(
                "fit: the text count of conversation %d is %d tokens off its whole "
                "tokenisation; refitting against the whole count",
                conversation,
                exact - total,
            )
            problem.budget -= max(0, exact - total)
            states = _solve(problem, strategy, conversation)
            frames = [s[0] for it, s in zip(items, states, strict=True) if it.kind == "video"]
            text_tokens = problem.text.exact(frames)
            total = text_tokens + sum(it.tokens(s) for it, s in zip(items, states, strict=True))
            problem.budget = max_tokens - reserve
    fitted = tuple(
        _item_fit(it, s, it.tokens(it.floor())) for it, s in zip(items, states, strict=True)
    )
    return FitResult(
        items=fitted,
        text_tokens=text_tokens,
        total_before=total_before,
        total=total,
        max_tokens=max_tokens,
        reserve=reserve,
        strategy=strategy,
    )


def _apply(conversation: Conversation, result: FitResult) -> list[dict[str, Any]]:
    found = _elements(conversation)
    if len(found) != len(result.items) or any(
        kind != item.kind for (_, _, kind), item in zip(found, result.items, strict=False)
    ):
        raise InvalidInputError(
            f"the conversation has {len(found)} vision elements, the fit {len(result.items)}: "
            "apply a fit to the conversation it was made for"
        )
    keys = {id(ele): item.keys for (_, ele, _), item in zip(found, result.items, strict=True)}
    out: list[dict[str, Any]] = []
    for message in conversation:
        copied = dict(message)
        content = copied.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                change = keys.get(id(part)) if isinstance(part, Mapping) else None
                if not change:
                    parts.append(part)
                    continue
                rewritten = dict(part)
                if "nframes" in change:
                    rewritten.pop("fps", None)
                rewritten.update(change)
                parts.append(rewritten)
            copied["content"] = parts
        out.append(copied)
    return out


def apply_fits(
    conversations: Conversation | Sequence[Conversation], results: Sequence[FitResult]
) -> list[Conversation]:
    """Each conversation with its :class:`FitResult` applied (:meth:`FitResult.apply`).

    Raises:
        InvalidInputError: a different number of conversations and results.
    """
    batch = as_conversations(conversations)
    if len(batch) != len(results):
        raise InvalidInputError(
            f"{len(batch)} conversations and {len(results)} fit results: fit the same batch"
        )
    return [r.apply(c) for c, r in zip(batch, results, strict=True)]


def _without(conversation: Conversation, drop: set[int]) -> list[dict[str, Any]]:
    """``conversation`` without the elements whose ``id`` is in ``drop`` (copied)."""
    out: list[dict[str, Any]] = []
    for message in conversation:
        copied = dict(message)
        content = copied.get("content")
        if isinstance(content, list):
            copied["content"] = [part for part in content if id(part) not in drop]
        out.append(copied)
    return out


def drop_media(
    conversations: Conversation | Sequence[Conversation],
    max_tokens: int,
    *,
    processor: Any,
    preset: Preset | str | None = None,
    **rest: Any,
) -> list[Conversation]:
    """Each conversation with whole images and videos removed, oldest first, until its
    ``len(input_ids)`` is at most ``max_tokens`` (``build_inputs(truncation=
    "drop-media-first")``). Never part of an item; each removal is logged (a warning on
    ``vlprep._fit`` naming the message, element and source). Counted from headers, as
    :func:`fit` counts (``rest``: its loading and text keywords).

    Raises:
        ResourceLimitError: the text alone, with every item dropped, is still longer.
    """
    out: list[Conversation] = []
    for c, conversation in enumerate(as_conversations(conversations)):
        (whole,) = fit(conversation, 10**12, processor=processor, preset=preset, **rest)
        if whole.total <= max_tokens:
            out.append(conversation)
            continue
        elements = [ele for _, ele, _ in _elements(conversation)]

        def total(
            k: int,
            conversation: Conversation = conversation,
            elements: list[Mapping[str, Any]] = elements,
        ) -> int:
            cut = _without(conversation, {id(e) for e in elements[:k]})
            (counted,) = fit(cut, 10**12, processor=processor, preset=preset, **rest)
            return counted.total

        if total(len(elements)) > max_tokens:
            raise ResourceLimitError(
                f"conversation {c} needs {total(len(elements)):,} tokens without any image "
                f"or video, above max_length={max_tokens:,}; shorten the text or raise the "
                "limit (vlprep never cuts a vision span)"
            )
        low, high = 1, len(elements)  # fewest oldest items whose removal fits
        while low < high:
            mid = (low + high) // 2
            if total(mid) <= max_tokens:
                high = mid
            else:
                low = mid + 1
        for item in whole.items[:low]:
            logger.warning(
                "max_length=%d: dropped the %s of conversation %d, message %d (element %d, "
                "%s) to fit; truncation='drop-media-first'",
                max_tokens,
                item.kind,
                c,
                item.message,
                item.element,
                item.source,
            )
        out.append(_without(conversation, {id(e) for e in elements[:low]}))
    return out
