"""``vlprep-inspect --fit N`` and the Ray auditor's ``fit=N``: :func:`vlprep.fit` per
dataset conversation, its outcome as one row.

Each conversation (its vision elements with the run's bound defaults filled in, as the
estimates use them) is fitted into ``max_tokens - reserve`` from headers alone. The
outcome is a :class:`FitRow`: ``"fits"`` (nothing to shrink), ``"shrunk"`` (the fit
shrank some items; their fitted sizes and frames are in ``items``), ``"cannot_fit"`` (a
:class:`~vlprep.BudgetError`: its deficit and binding floor; ``items`` then holds the
unfitted sizes) or ``"error"`` (a media or template failure, as a typed error). Nothing
here parses arguments or prints: ``vlprep.cli`` and ``vlprep.integrations`` format rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import BudgetError, VlprepError
from vlprep._estimates import element_for
from vlprep._fit import FitResult, ItemFit, Strategy, fit
from vlprep._inspect_batch import UNEXPECTED
from vlprep._pool import ordered_map
from vlprep._presets import Preset
from vlprep._sources import FetchPolicy

__all__ = ["FIT_STATUSES", "FitRow", "FitSettings", "fit_rows", "fit_summary", "fit_one"]

FitStatus = Literal["fits", "shrunk", "cannot_fit", "error"]
FIT_STATUSES: tuple[FitStatus, ...] = ("fits", "shrunk", "cannot_fit", "error")

_UNLIMITED = 10**12
_VISION_KEYS = ("image", "image_url", "video", "video_url")


@dataclass(frozen=True, slots=True)
class FitSettings:
    """What a fit of each conversation needs.

    Attributes:
        max_tokens: the context length (an int >= 1).
        preset: the model preset (``qwen-vl`` cannot be fitted: :func:`vlprep.fit` refuses).
        reserve: tokens kept for the answer (``0 <= reserve < max_tokens``).
        strategy: ``"uniform"`` or ``"recent"``.
        processor: counts the text tokens (chat template and tokenizer) when given; without
            one only image and video placeholder tokens are counted.
        defaults: the bound defaults (``min_pixels``, ..., ``nframes``) filled into elements
            that do not set them, as the estimates do.
    """

    max_tokens: int
    preset: Preset
    reserve: int = 0
    strategy: Strategy = "uniform"
    processor: Any = None
    defaults: Mapping[str, Any] | None = None
    policy: FetchPolicy | None = None
    image_options: ImageOptions | None = None
    video_options: VideoOptions | None = None

    @property
    def budget(self) -> int:
        """``max_tokens - reserve``."""
        return self.max_tokens - self.reserve

    @property
    def counts_text(self) -> bool:
        """Whether text tokens are counted (a processor was given)."""
        return self.processor is not None


@dataclass(frozen=True, slots=True)
class FitRow:
    """One conversation's fit.

    Attributes:
        conversation: its id (``file:line``, ``file#index``, a row key).
        status: ``"fits"``, ``"shrunk"``, ``"cannot_fit"`` or ``"error"``.
        budget: ``max_tokens - reserve``.
        total_before: tokens unfitted (``len(input_ids)`` with a processor, else the
            placeholder tokens); ``None`` on error.
        total: tokens with the fit applied (<= budget); ``None`` when it cannot fit or
            on error.
        text_tokens: the non-placeholder tokens after the fit (``None`` without a processor,
            when it cannot fit, or on error).
        deficit / binding / needed: the :class:`~vlprep.BudgetError`'s fields when it
            cannot fit (tokens over the budget at the floors; ``"text"``, ``"fixed"`` or
            ``"floors"``; tokens needed at the floors), else ``None``.
        items: per image and video (prompt order), its fitted bounds; when it cannot fit,
            the unfitted bounds (``size == before``); empty on error.
        error_type / error: the typed error of a failed fit (class name, vlprep's message).
    """

    conversation: str
    status: FitStatus
    budget: int
    total_before: int | None = None
    total: int | None = None
    text_tokens: int | None = None
    deficit: int | None = None
    binding: str | None = None
    needed: int | None = None
    items: tuple[ItemFit, ...] = ()
    error_type: str | None = None
    error: str | None = None

    @property
    def fits(self) -> bool | None:
        """Fits as it is (``True``), needs shrinking or cannot fit (``False``); ``None`` on
        error."""
        return None if self.status == "error" else self.status == "fits"

    @property
    def shrunk_items(self) -> int:
        """How many items the fit shrank."""
        return sum(item.shrunk for item in self.items) if self.status == "shrunk" else 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (each item as :meth:`vlprep.ItemFit.as_dict`)."""
        return {
            "status": self.status,
            "fits": self.fits,
            "budget": self.budget,
            "total_before": self.total_before,
            "total": self.total,
            "text_tokens": self.text_tokens,
            "deficit": self.deficit,
            "binding": self.binding,
            "needed": self.needed,
            "shrunk_items": self.shrunk_items,
            "error_type": self.error_type,
            "error": self.error,
            "items": [item.as_dict() for item in self.items],
        }


def _is_vision(ele: Mapping[str, Any]) -> bool:
    return any(k in ele for k in _VISION_KEYS) or ele.get("type", "text") in _VISION_KEYS


def _with_defaults(
    conversation: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """A copy whose vision elements have the bound defaults filled in (a key set in the
    element wins), through :func:`vlprep._estimates.element_for` as the estimates do."""
    out: list[dict[str, Any]] = []
    for message in conversation:
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            out.append(message)  # type: ignore[arg-type]  # fit() reports a bad message
            continue
        parts = [
            element_for(part, **defaults)
            if isinstance(part, Mapping) and _is_vision(part)
            else part
            for part in content
        ]
        out.append({**message, "content": parts})
    return out


def _fit(conversation: list[dict[str, Any]], max_tokens: int, settings: FitSettings) -> FitResult:
    (result,) = fit(
        [conversation],
        max_tokens,
        processor=settings.processor,
        preset=settings.preset,
        reserve=settings.reserve if max_tokens != _UNLIMITED else 0,
        strategy=settings.strategy,
        policy=settings.policy,
        image_options=settings.image_options,
        video_options=settings.video_options,
    )
    return result


def fit_one(
    conversation_id: str, messages: Sequence[Mapping[str, Any]], settings: FitSettings
) -> FitRow:
    """Fit one conversation; a failure is the row's typed error, never an exception."""
    budget = settings.budget
    try:
        conversation = _with_defaults(messages, settings.defaults or {})
        try:
            result = _fit(conversation, settings.max_tokens, settings)
        except BudgetError as exc:
            whole = _fit(conversation, _UNLIMITED, settings)  # the unfitted sizes and total
            return FitRow(
                conversation_id,
                "cannot_fit",
                budget,
                total_before=whole.total_before,
                deficit=exc.deficit,
                binding=exc.binding,
                needed=exc.needed,
                items=whole.items,
            )
    except VlprepError as exc:
        return FitRow(
            conversation_id, "error", budget, error_type=type(exc).__name__, error=str(exc)
        )
    except Exception as exc:  # a bug: this conversation's error, not a crashed run
        return FitRow(
            conversation_id, "error", budget, error_type=type(exc).__name__, error=UNEXPECTED
        )
    return FitRow(
        conversation_id,
        "fits" if result.fits else "shrunk",
        budget,
        total_before=result.total_before,
        total=result.total,
        text_tokens=result.text_tokens,
        items=result.items,
    )


def fit_rows(
    conversations: Sequence[tuple[str, Sequence[Mapping[str, Any]] | None]],
    settings: FitSettings,
    workers: int,
    failure: Callable[[str], tuple[str, str]] | None = None,
) -> list[FitRow]:
    """A :class:`FitRow` per ``(id, messages)``, in order; ``messages`` ``None`` is a record
    that could not be read (``failure(id)`` gives its ``(error_type, error)``).

    Headers are read on ``workers`` threads; with a processor the fits run one at a time
    (a transformers tokenizer is not safe to share between threads).
    """

    def one(k: int) -> FitRow:
        cid, messages = conversations[k]
        if messages is None:
            error_type, error = failure(cid) if failure else ("InvalidInputError", "unreadable")
            return FitRow(cid, "error", settings.budget, error_type=error_type, error=error)
        return fit_one(cid, messages, settings)

    threads = 1 if settings.counts_text else workers
    return list(ordered_map(one, len(conversations), threads, what="conversation"))


def fit_summary(rows: Sequence[FitRow], settings: FitSettings) -> dict[str, Any]:
    """Counts per status, the worst deficit, and the fit settings."""
    over = [r for r in rows if r.status == "cannot_fit"]
    return {
        "max_tokens": settings.max_tokens,
        "reserve": settings.reserve,
        "budget": settings.budget,
        "strategy": settings.strategy,
        "text_counted": settings.counts_text,
        "count": len(rows),
        "fit": sum(r.status == "fits" for r in rows),
        "shrunk": sum(r.status == "shrunk" for r in rows),
        "cannot_fit": len(over),
        "failures": sum(r.status == "error" for r in rows),
        "max_deficit": max((r.deficit or 0 for r in over), default=None),
    }
