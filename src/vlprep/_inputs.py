"""``build_inputs``: conversations + a transformers processor -> the model's whole input.

The chat template is rendered by the processor, every image and video is loaded and sized
once by vlprep, patchified by :mod:`vlprep._tensors`, and each placeholder is expanded to its
token count in token-id space (:mod:`vlprep._expansion`). transformers is needed only for the
processor the caller passes and the ``BatchFeature`` returned.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from vlprep import _qwen_vl as qwen_vl
from vlprep._cache import MediaCache
from vlprep._chat import (
    Qwen3VideoText,
    VideoTimestamps,
    check_messages,
    check_text_options,
    qwen3_form,
    render,
)
from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._device_images import images_to_device, resolve_device
from vlprep._errors import (
    BackendUnavailableError,
    InvalidInputError,
    ResourceLimitError,
)
from vlprep._expansion import (
    SpecialTokens,
    expand_placeholders,
    mm_token_type_ids,
    pad_batch,
    qwen3_video_text,
)
from vlprep._expansion import video_timestamps as patch_timestamps
from vlprep._fit import Strategy, apply_fits, drop_media, fit
from vlprep._image import fetch_image_item
from vlprep._limits import CallBudget, CallLimits
from vlprep._messages import Conversation, as_conversations, extract_vision_info
from vlprep._numbers import shown
from vlprep._plans import ElementPlan, Plan, check_replay, load_planned
from vlprep._pool import ordered_map, resolve_workers
from vlprep._presets import Preset, family_of, get_preset, preset_from_processor
from vlprep._processor_forms import Qwen3VideoForm
from vlprep._sizing import count_tokens
from vlprep._sources import FetchPolicy
from vlprep._specs import element_kind
from vlprep._tensors import patchify_images, patchify_videos, pixel_dtype
from vlprep._video import FRAMES_SECONDS, LoadedVideo, fetch_video_item

__all__ = ["Qwen3VideoText", "VideoTimestamps", "build_inputs", "load_element"]


def _check_arguments(
    max_length: object,
    chat_template_kwargs: object,
    qwen3_video_text: str,
    timestamps: str,
    processor: Any,
    *,
    truncation: object = "refuse",
) -> None:
    """Refuse bad arguments before any loading: ``max_length`` an int >= 1 or None,
    ``chat_template_kwargs`` a mapping or None, a known ``qwen3_video_text`` and
    ``video_timestamps``.

    Raises:
        InvalidInputError: naming the argument (and the valid values).
    """
    check_text_options(qwen3_video_text, timestamps, processor)
    _check_truncation(truncation)
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise InvalidInputError(
            f"max_length must be an int >= 1 (or None for no limit), got {shown(max_length)}"
        )
    if chat_template_kwargs is not None and not isinstance(chat_template_kwargs, Mapping):
        raise InvalidInputError(
            "chat_template_kwargs must be a dict of template variables (or None), got "
            f"{type(chat_template_kwargs).__name__}"
        )


def _check_truncation(truncation: object) -> None:
    """Raises InvalidInputError: ``truncation`` is not one of the two modes."""
    if truncation not in ("refuse", "drop-media-first"):
        raise InvalidInputError(
            "truncation must be 'refuse' (a sequence above max_length is an error) or "
            "'drop-media-first' (whole media items of the oldest turns go), got "
            f"{shown(truncation)}"
        )


def load_element(
    ele: Mapping[str, Any],
    preset: Preset,
    policy: FetchPolicy | None,
    image_options: ImageOptions | None,
    video_options: VideoOptions | None,
    *,
    cache: MediaCache | None = None,
    budget: CallBudget | None = None,
) -> Image.Image | LoadedVideo:
    """Load one vision element as :func:`build_inputs` does: an image decoded and resized,
    or a video's planned frames decoded and resized, with its metadata and sample fps.
    ``budget``: the call's :class:`vlprep._limits.CallBudget` when this element is one of
    many (``None``: a budget of its own under the default limits).

    Raises:
        InvalidInputError: ``ele`` has no image or video source key.
        VlprepError: fetching or decoding failed, or a limit of ``policy`` or the options.
    """
    budget = budget if budget is not None else CallBudget()
    kind = element_kind(ele)
    if kind == "image":
        return fetch_image_item(
            ele,
            preset,
            policy=policy,
            options=image_options,
            cache=cache,
            budget=budget,
        )
    if kind == "video":
        video, metadata, sample_fps = fetch_video_item(
            ele,
            preset,  # its grid, video bounds and frame defaults
            policy=policy,
            options=video_options,
            image_options=image_options,
            cache=cache,
            budget=budget,
        )
        return LoadedVideo(video, dict(metadata), float(sample_fps))
    raise InvalidInputError(
        "a vision element needs an 'image', 'image_url', 'video' or 'video_url' "
        f"source, got keys {sorted(str(k) for k in ele)[:8]}"
    )


def _load(
    elements: Sequence[Mapping[str, Any]],
    preset: Preset,
    policy: FetchPolicy | None,
    image_options: ImageOptions | None,
    *,
    video_options: VideoOptions | None = None,
    workers: int = 1,
    cache: MediaCache | None = None,
    budget: CallBudget | None = None,
    planned: Sequence[ElementPlan] | None = None,
) -> tuple[list[Image.Image], list[LoadedVideo]]:
    """Load every element, ``workers`` at a time, keeping prompt order.

    The first failing item (in prompt order) raises, with a note naming it. ``budget``:
    the call's (``None``: a new one under the default :class:`vlprep.CallLimits`).
    ``planned``: each element's plan, replayed instead of computing one (no cache).
    """
    call = budget if budget is not None else CallBudget()
    loaded = list(
        ordered_map(
            lambda i: (
                load_planned(
                    elements[i],
                    planned[i],
                    preset,
                    policy=policy,
                    image_options=image_options,
                    video_options=video_options,
                    budget=call,
                )
                if planned is not None
                else load_element(
                    elements[i],
                    preset,
                    policy,
                    image_options,
                    video_options,
                    cache=cache,
                    budget=call,
                )
            ),
            len(elements),
            workers,
        )
    )
    images = [item for item in loaded if isinstance(item, Image.Image)]
    videos = [item for item in loaded if not isinstance(item, Image.Image)]
    return images, videos


def _by_device(
    elements: list[Mapping[str, Any]], device: str | torch.device | None, *, cpu_only: bool
) -> tuple[torch.device | None, list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """``(target device, images loaded there, elements loaded on CPU)``; ``cpu_only``: a
    plan's replay, loaded exactly on CPU and moved to the device at the end."""
    if device is None:
        return None, [], elements
    target = resolve_device(device)
    if cpu_only:
        return target, [], elements
    on_device = [e for e in elements if element_kind(e) == "image"]
    return target, on_device, [e for e in elements if element_kind(e) != "image"]


def _qwen3_texts(
    texts: list[str],
    videos: Sequence[LoadedVideo],
    grids: torch.Tensor,
    tokens: SpecialTokens,
    *,
    preset: Preset,
    form: Qwen3VideoForm,
    timestamps: VideoTimestamps = "pts",
) -> tuple[list[str], list[int]]:
    """Write each video's per-frame blocks into the text; return the per-block token counts.

    ``"unwrapped"`` first collapses every template wrapper to a bare pad (as transformers
    5.25's ``get_text_with_replacements``), then both forms replace the pads in order.
    ``timestamps`` as in :data:`VideoTimestamps`.
    """
    pieces: list[str] = []
    counts: list[int] = []
    for video, grid in zip(videos, grids.tolist(), strict=True):
        metadata = video[1]
        seconds = metadata.get(FRAMES_SECONDS) if timestamps == "pts" else None
        stamps = patch_timestamps(
            metadata["frames_indices"],
            float(metadata["fps"]),
            preset.temporal_patch_size,
            frame_seconds=seconds,
        )
        t, gh, gw = grid
        pieces.append(qwen3_video_text(stamps[:t], tokens))
        counts.extend([count_tokens((1, gh, gw), preset.merge_size)] * t)
    wrapped = tokens.vision_start + tokens.video + tokens.vision_end
    replacements = iter(pieces)
    out = []
    for rendered in texts:
        text = rendered.replace(wrapped, tokens.video) if form == "unwrapped" else rendered
        parts = text.split(tokens.video)
        rebuilt = parts[0]
        for part in parts[1:]:
            rebuilt += next(replacements, tokens.video) + part
        out.append(rebuilt)
    return out, counts


def _check_later_family(
    processor: Any, family: str, image_dir: str | os.PathLike[str] | None
) -> None:
    """Refuse the first generation's tokenizer or ``image_dir`` with a later family.

    Raises:
        InvalidInputError: naming the mismatch.
    """
    if hasattr(processor, "IMAGE_ST"):
        raise InvalidInputError(
            f"a Qwen-VL tokenizer with a {family!r} preset: the first generation's tokenizer "
            "goes with preset=QWEN_VL (or no preset); a later family needs its processor"
        )
    if image_dir is not None:
        raise InvalidInputError(
            "image_dir is for the first generation (Qwen-VL) only, whose remote-code model "
            f"reads image paths from its prompt; family {family!r} takes pixel values"
        )


def _first_generation(
    batch: Sequence[Conversation],
    tokenizer: Any,
    preset: Preset,
    *,
    add_generation_prompt: bool,
    padding_side: Literal["left", "right"],
    max_length: int | None,
    template_kwargs: Mapping[str, Any],
    loading: dict[str, Any],
    device: str | torch.device | None,
    dtype: torch.dtype,
    plan: Plan | None,
    image_dir: str | os.PathLike[str] | None,
) -> Any:
    """:func:`build_inputs` for ``family == "qwen-vl"`` (see its docstring)."""
    unknown = sorted(set(template_kwargs) - {"system", "picture_numbering"})
    system = template_kwargs.get("system", qwen_vl.DEFAULT_SYSTEM)
    numbering = template_kwargs.get("picture_numbering", "conversation")
    if unknown or not (system is None or isinstance(system, str)):
        raise InvalidInputError(
            "chat_template_kwargs for Qwen-VL take 'system' (a string, or None for no system "
            f"turn) and 'picture_numbering'; got {unknown[:4] or 'a non-string system'}"
        )
    if numbering not in ("conversation", "message"):
        raise InvalidInputError(
            f"picture_numbering must be 'conversation' or 'message', got {str(numbering)[:32]!r}"
        )
    tokens = qwen_vl.QwenVLTokens.from_tokenizer(tokenizer)
    check_messages(batch)
    turns: list[list[qwen_vl.Turn]] = []
    elements: list[Mapping[str, Any]] = []
    for c, conversation in enumerate(batch):
        found, images = qwen_vl.turns_of(conversation, preset, len(elements), f"conversation {c}")
        turns.append(found)
        elements += images
    budget: CallBudget = loading.pop("budget")
    budget.counted(elements)
    options = loading["image_options"]
    planned = None if plan is None else check_replay(plan, batch, preset, options, None)
    loaded, _ = _load(elements, preset, planned=planned, **loading, budget=budget)
    if image_dir is not None:
        spans = [qwen_vl.path_span(p, tokens) for p in qwen_vl.write_images(loaded, image_dir)]
    else:
        spans = [qwen_vl.pads_span(tokens)] * len(loaded)
    sequences: list[np.ndarray] = []
    first = 0
    for found in turns:
        count = sum(isinstance(piece, int) for _, pieces in found for piece in pieces)
        messages = qwen_vl.render_turns(found, tokens, system=system, numbering=numbering)
        ids = qwen_vl.encode_turns(
            messages,
            tokenizer,
            tokens,
            add_generation_prompt=add_generation_prompt,
            spans=spans[first : first + count],
        )
        sequences.append(np.asarray(ids, dtype=np.int64))
        first += count
    _check_length(sequences, max_length)
    input_ids, attention_mask = pad_batch(sequences, tokens.pad, padding_side)
    data: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if image_dir is None and loaded:
        data["pixel_values"] = qwen_vl.pixel_values(loaded, preset, dtype)
    if device is not None:
        target = resolve_device(device)
        data = {key: value.to(target) for key, value in data.items()}
    return _batch_feature(data)


def _first_generation_limit(
    max_length: int | None, max_total_tokens: int | None, truncation: str
) -> int | None:
    """The length limit of a first-generation call: its images have a fixed 256 tokens, so
    ``max_total_tokens`` is a length check there, as ``max_length``.

    Raises:
        InvalidInputError: ``truncation="drop-media-first"`` (not available for qwen-vl).
    """
    if truncation != "refuse":
        raise InvalidInputError(
            "truncation='drop-media-first' is not available for the first generation "
            "(qwen-vl); give max_length alone"
        )
    if max_total_tokens is None:
        return max_length
    return min(max_total_tokens, max_length or max_total_tokens)


def _check_length(sequences: Sequence[np.ndarray], max_length: int | None) -> None:
    """Raise when a sequence is longer than ``max_length`` (never truncate).

    Raises:
        ResourceLimitError: naming the length and the limit.
    """
    if max_length is None:
        return
    longest = max(len(s) for s in sequences)
    if longest > max_length:
        raise ResourceLimitError(
            f"a conversation needs {longest} tokens, above max_length={max_length}; "
            "lower max_pixels / fps / total_pixels or raise the limit (vlprep never "
            "truncates: a cut vision span breaks the model)"
        )


def _batch_feature(data: dict[str, Any]) -> Any:
    try:
        from transformers import BatchFeature
    except ImportError as exc:  # pragma: no cover - a processor object implies transformers
        raise BackendUnavailableError(
            "build_inputs returns a transformers.BatchFeature; pip install 'vlprep[runner]'"
        ) from exc
    return BatchFeature(data)


def _prepared(
    batch: list[Conversation],
    processor: Any,
    preset: Preset,
    *,
    max_total_tokens: int | None,
    max_length: int | None,
    truncation: str,
    fit_strategy: Strategy,
    plan: Plan | None,
    load_args: dict[str, Any],
    text_args: dict[str, Any],
) -> list[Conversation]:
    """``batch`` once its messages are checked: fitted into ``max_total_tokens``, or with
    media dropped to ``max_length`` (``truncation="drop-media-first"``), or as it is.

    Raises:
        InvalidInputError: malformed messages; a fit or drop with ``plan`` (a plan fixes
            every size and element).
        BudgetError, ResourceLimitError: nothing fits.
    """
    check_messages(batch)
    if max_total_tokens is None and (max_length is None or truncation == "refuse"):
        return batch
    if plan is not None:
        raise InvalidInputError(
            "a plan fixes every size and element: give plan= or max_total_tokens= / "
            "truncation='drop-media-first', not both"
        )
    if max_total_tokens is not None:
        fitted = fit(
            batch,
            max_total_tokens,
            processor=processor,
            preset=preset,
            strategy=fit_strategy,
            **load_args,
            **text_args,
        )
        return list(apply_fits(batch, fitted))
    if max_length is None or truncation == "refuse":
        return batch
    return drop_media(
        batch, max_length, processor=processor, preset=preset, **load_args, **text_args
    )


def build_inputs(
    conversations: Conversation | Sequence[Conversation],
    processor: Any,
    *,
    preset: Preset | str | None = None,
    add_generation_prompt: bool = True,
    padding_side: Literal["left", "right"] = "left",
    max_length: int | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    qwen3_video_text: Qwen3VideoText = "auto",
    video_timestamps: VideoTimestamps = "pts",
    policy: FetchPolicy | None = None,
    image_options: ImageOptions | None = None,
    video_options: VideoOptions | None = None,
    workers: int | None = None,
    device: str | torch.device | None = None,
    cache: MediaCache | None = None,
    dtype: torch.dtype | str | None = None,
    limits: CallLimits | None = None,
    plan: Plan | None = None,
    max_total_tokens: int | None = None,
    fit_strategy: Strategy = "uniform",
    truncation: Literal["refuse", "drop-media-first"] = "refuse",
    image_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Build a Qwen-VL model's inputs for one conversation or a batch.

    Equivalent to rendering the chat template, loading the media with qwen-vl-utils and
    calling the transformers processor with ``do_resize=False`` and the videos' metadata,
    but each image and video is decoded and resized once, normalised in one pass, and
    placeholders are expanded without re-tokenising long strings.

    Args:
        conversations: a list of messages (``{"role", "content"}``) or a list of such lists.
            Image and video elements take the same keys as :func:`vlprep.process_vision_info`.
        processor: a transformers Qwen2-VL, Qwen2.5-VL or Qwen3-VL processor (its chat
            template, tokenizer and configuration are used; its image and video processors
            are not run); for the first generation (Qwen-VL, Qwen-VL-Chat) its
            ``QWenTokenizer`` (``AutoTokenizer.from_pretrained(..., trust_remote_code=True)``),
            see "The first generation" below.
        preset: model constants and default image bounds; read from ``processor`` when
            ``None``. Element ``min_pixels``/``max_pixels`` override the bounds.
        add_generation_prompt: end with the assistant turn's opening.
        padding_side: where a batch is padded (``"left"`` for generation).
        max_length: refuse (never truncate) a sequence longer than this many tokens;
            truncating would cut vision tokens and break the model's count check. With
            ``truncation="drop-media-first"``, whole images and videos are removed instead,
            oldest turn first, until the sequence fits (each one logged); never part of one.
        chat_template_kwargs: extra template variables (``add_vision_id=True``, ...).
        qwen3_video_text: see :data:`Qwen3VideoText`.
        video_timestamps: the seconds in Qwen3-VL's ``<t seconds>`` text: ``"pts"``
            (default), the frames' presentation times (equal to transformers' text on
            constant-rate video, the real times on variable-rate files), or
            ``"transformers"``, ``index / fps`` as the processor computes it; see
            :data:`VideoTimestamps`.
        policy, image_options, video_options: fetch and decode rules for every item.
        workers: items loaded at once (default ``min(4, CPU count)``; 1 = one after the
            other). Order is kept; each item keeps its own fetch deadline.
        device: ``None`` (default): everything on CPU, as above. A torch device
            (``"cuda"``, ``"cuda:1"``, ``"cpu"``, ...): images go through
            :func:`vlprep._device_images.images_to_device` (JPEGs decoded on the GPU with
            nvJPEG, resize/normalise/patchify there; same sizes and token counts, pixels
            within the deviation in ``docs/inputs.md``; needs ``vlprep[gpu]``), videos are
            loaded on CPU as usual, and every returned tensor is moved to ``device``.
        cache: a :class:`vlprep.MediaCache` shared across calls: an image or video
            resent in a later turn (same content, same parameters) is fetched and hashed
            but not decoded or resized again; within one call, repeats of an item that
            fits the cache are loaded once. ``None``: no caching.
        dtype: the dtype of ``pixel_values`` / ``pixel_values_videos``: ``None`` or
            ``torch.float32`` (default), ``torch.bfloat16`` or ``torch.float16`` (or their
            names). Written directly in that dtype, equal bit for bit to casting the float32
            result (the arithmetic stays float32 on a one-item scratch), so a bf16 model's
            input never exists in float32 as a whole. Other tensors keep their dtypes.
        limits: :class:`vlprep.CallLimits` for the whole call (default ``CallLimits()``;
            ``CallLimits.strict()`` for servers): items (frame-list frames included) counted
            before anything is fetched, output pixels summed over every image and video of
            the batch, one deadline shared by every fetch.
        plan: a :class:`vlprep.Plan` from :func:`vlprep.plan` (or ``Plan.from_json``):
            every element is loaded at the plan's size and frames, after its bytes are
            checked against the plan's digest, so the output is what it was where the plan
            was made. ``cache`` is not used and images are loaded on CPU (moved to
            ``device`` at the end). ``None``: plan as usual.
        max_total_tokens: fit each conversation into this many tokens before loading
            (:func:`vlprep.fit` with this call's processor, options and text arguments):
            images and videos are shrunk, from their headers, so that ``len(input_ids)``
            of every row is at most it (``BudgetError`` when no sizes can). ``None``: no fit.
            The first generation (``"qwen-vl"``) has a fixed 256 tokens per image: there
            it is a length check, as ``max_length``.
        fit_strategy: the fit's strategy, ``"uniform"`` or ``"recent"`` (see
            :data:`vlprep._fit.Strategy` and ``docs/budget.md``).
        truncation: what ``max_length`` does to a longer sequence: ``"refuse"`` (default,
            ``ResourceLimitError``) or ``"drop-media-first"`` (see ``max_length``).
        image_dir: the first generation only: write each checked image as a PNG into this
            existing directory (the caller owns it and deletes the files once the model has
            read them) and put its local path in the ``<img>`` span, for the remote-code
            model; no ``pixel_values`` then. ``None``: the pixels form.

    The first generation (``preset.family == "qwen-vl"``, read from a ``QWenTokenizer``):
    ChatML as the model's ``make_context`` (a conversation without a system message gets
    ``"You are a helpful assistant."``; ``chat_template_kwargs={"system": None}`` drops it,
    ``{"picture_numbering": "message"}`` restarts ``Picture n`` in every message), each
    image written ``Picture n: <img></img>\n`` where it stands and its span expanded to
    ``<img>`` + 256 ``<imgpad>`` + ``</img>`` (vLLM's form); ``pixel_values`` float32
    ``(N, 3, 448, 448)`` (``dtype`` if given), the images of the whole batch in prompt
    order, squashed with Pillow's bicubic filter and CLIP-normalised (torchvision's
    ``Resize((448, 448), BICUBIC)`` + ``ToTensor`` + ``Normalize`` on the decoded image).
    Returns ``input_ids``, ``attention_mask`` and, without ``image_dir``, ``pixel_values``;
    no ``mm_token_type_ids`` (the model does not take them). Video elements and text that
    holds ``<img>``/``</img>``/``<imgpad>`` are refused; ``qwen3_video_text`` and
    ``video_timestamps`` do not apply; ``device`` moves the tensors built on CPU. See
    ``docs/qwen-vl.md``.

    Returns:
        ``transformers.BatchFeature`` with ``input_ids`` and ``attention_mask`` (int64
        ``(B, L)``), ``mm_token_type_ids`` (int64 ``(B, L)``: 0 text, 1 image, 2 video);
        with images ``pixel_values`` (``dtype``, float32 by default, ``(sum gh*gw, 3*2*P*P)``) and
        ``image_grid_thw`` (int64 ``(n, 3)``); with videos ``pixel_values_videos``,
        ``video_grid_thw`` and, for Qwen2.5-VL, ``second_per_grid_ts`` (float32 ``(n,)``,
        ``temporal_patch_size / sample_fps`` with the real sample fps).

    Raises:
        InvalidInputError: malformed messages, a processor that is not Qwen-VL, a placeholder
            count that does not match the media; a ``plan`` for another preset, other
            elements or options, or media that changed since it was made.
        ResourceLimitError: a sequence longer than ``max_length``, more items or output
            pixels than ``limits`` allow.
        BudgetError: ``max_total_tokens`` cannot be met (a ``ResourceLimitError``).
        FetchTimeoutError: the call deadline passed (the message names
            ``CallLimits.deadline``).
        FetchError, DecodeError, ...: from loading the media, typed as everywhere in vlprep.
    """
    _check_arguments(
        max_length,
        chat_template_kwargs,
        qwen3_video_text,
        video_timestamps,
        processor,
        truncation=truncation,
    )
    budget = CallBudget(limits)
    pixels_dtype = pixel_dtype(dtype)
    batch = as_conversations(conversations)
    if not batch:
        raise InvalidInputError("build_inputs needs at least one conversation")
    if preset is None:
        preset = preset_from_processor(processor)
    preset = get_preset(preset)
    family = family_of(preset)
    if family == "qwen-vl":
        return _first_generation(
            batch,
            processor,
            preset,
            add_generation_prompt=add_generation_prompt,
            padding_side=padding_side,
            max_length=_first_generation_limit(max_length, max_total_tokens, truncation),
            template_kwargs=chat_template_kwargs or {},
            loading={
                "policy": policy,
                "image_options": image_options,
                "workers": resolve_workers(workers),
                "cache": cache,
                "budget": budget,
            },
            device=device,
            dtype=pixels_dtype,
            plan=plan,
            image_dir=image_dir,
        )
    _check_later_family(processor, family, image_dir)
    tokens = SpecialTokens.from_processor(processor)

    batch = _prepared(
        batch,
        processor,
        preset,
        max_total_tokens=max_total_tokens,
        max_length=max_length,
        truncation=truncation,
        fit_strategy=fit_strategy,
        plan=plan,
        load_args={
            "policy": policy,
            "image_options": image_options,
            "video_options": video_options,
        },
        text_args={
            "add_generation_prompt": add_generation_prompt,
            "chat_template_kwargs": chat_template_kwargs,
            "qwen3_video_text": qwen3_video_text,
            "video_timestamps": video_timestamps,
        },
    )
    texts = render(batch, processor, add_generation_prompt, chat_template_kwargs or {})
    workers = resolve_workers(workers)
    elements = budget.counted(extract_vision_info(batch))
    planned = (
        None if plan is None else check_replay(plan, batch, preset, image_options, video_options)
    )
    target, on_device, on_cpu = _by_device(elements, device, cpu_only=planned is not None)
    images, videos = _load(
        on_cpu,
        preset,
        policy,
        image_options,
        video_options=video_options,
        workers=workers,
        cache=cache,
        budget=budget,
        planned=planned,
    )
    data: dict[str, Any] = {}
    image_counts: list[int] = []
    video_counts: list[int] = []
    if images or on_device:
        pixel_values, image_grid = (
            images_to_device(
                on_device,
                preset,
                target,
                policy=policy,
                options=image_options,
                workers=workers,
                dtype=pixels_dtype,
                budget=budget,
            )
            if on_device and target is not None
            else patchify_images(images, preset, dtype=pixels_dtype)
        )
        data["pixel_values"], data["image_grid_thw"] = pixel_values, image_grid
        image_counts = [count_tokens(tuple(g), preset.merge_size) for g in image_grid.tolist()]
    if videos:
        pixel_values_videos, video_grid = patchify_videos(
            [v[0] for v in videos], preset, dtype=pixels_dtype
        )
        data["pixel_values_videos"], data["video_grid_thw"] = pixel_values_videos, video_grid
        if family == "qwen3-vl":
            placeholders = sum(text.count(tokens.video) for text in texts)
            if placeholders != len(videos):
                raise InvalidInputError(
                    f"the rendered prompt has {placeholders} video placeholders for "
                    f"{len(videos)} videos; check the elements' 'type'"
                )
            form = qwen3_form(qwen3_video_text, processor)
            texts, video_counts = _qwen3_texts(
                texts,
                videos,
                video_grid,
                tokens,
                preset=preset,
                form=form,
                timestamps=video_timestamps,
            )
        else:
            video_counts = [count_tokens(tuple(g), preset.merge_size) for g in video_grid.tolist()]
        if family == "qwen2.5-vl":
            data["second_per_grid_ts"] = torch.tensor(
                [preset.temporal_patch_size / v[2] for v in videos], dtype=torch.float32
            )

    encoded = processor.tokenizer(texts, padding=False, return_attention_mask=False)["input_ids"]
    sequences = expand_placeholders(encoded, tokens, image_counts, video_counts)
    _check_length(sequences, max_length)
    input_ids, attention_mask = pad_batch(sequences, tokens.pad_id, padding_side)
    text_data = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "mm_token_type_ids": mm_token_type_ids(input_ids, tokens),
    }
    merged = {**text_data, **data}
    if target is not None:  # one move at the end: the images are already there
        merged = {key: value.to(target) for key, value in merged.items()}
    return _batch_feature(merged)
