"""The prompt-plus-answer ceiling (``max_total_tokens``) of a request, and its fit.

A request's ceiling is the tighter of its own ``max_total_tokens`` and the server's
(``--max-total-tokens``, else the model's context length in model mode). Before anything
is loaded, :func:`fit_conversation` fits the conversation into ``ceiling - max_tokens`` with
:func:`vlprep.fit` (from headers and container indices, exact text counts from the
processor), so every image and video is loaded at the largest size that keeps the prompt
and the answer inside the ceiling; where no sizes fit (the text alone, or the items at
their floors, are too long), the ``BudgetError`` is answered as 400
``context_length_exceeded`` with the deficit. :func:`check` stays as the last word on the
count of what was actually loaded.
"""

from __future__ import annotations

from typing import Any

from vlprep._errors import BudgetError
from vlprep._fit import fit
from vlprep._limits import CallBudget
from vlprep._serve._count import PromptCount
from vlprep._serve._http_errors import ApiError
from vlprep._serve._settings import ServeSettings

__all__ = ["ceiling", "check", "fit_conversation"]

_BINDING = {
    "text": "the text alone",
    "fixed": "the text and the items that cannot shrink",
    "floors": "every image and video at its floor",
}


def ceiling(request: int | None, server: int | None) -> int | None:
    """The tighter of the request's and the server's ``max_total_tokens``."""
    given = [v for v in (request, server) if v is not None]
    return min(given) if given else None


def fit_conversation(
    conversation: list[dict[str, Any]],
    limit: int | None,
    max_new_tokens: int,
    *,
    processor: Any,
    preset: Any,
    settings: ServeSettings,
    deadline: float,
) -> list[dict[str, Any]]:
    """``conversation`` with every vision element at its fitted size (``limit`` ``None``:
    unchanged). Runs in the preprocessing pool; its fetches share the request's deadline.

    Raises:
        ApiError: 400 ``context_length_exceeded`` when no sizes fit (the deficit, what
            binds and the fix in the message).
        VlprepError: reading a header (answered as the loaders' errors are).
    """
    if limit is None:
        return conversation
    limits = settings.limits_until(deadline)
    if max_new_tokens >= limit:
        raise ApiError(
            400,
            f"max_tokens is {max_new_tokens}, which leaves no room for the prompt under "
            f"max_total_tokens={limit}; lower max_tokens",
            code="context_length_exceeded",
            param="max_tokens",
        )
    try:
        (result,) = fit(
            [conversation],
            limit,
            processor=processor,
            preset=preset,
            reserve=max_new_tokens,
            policy=CallBudget(limits).policy(settings.policy),
            image_options=settings.image_options,
            video_options=settings.video_options,
        )
    except BudgetError as exc:
        at = _BINDING.get(exc.binding, "its floors")
        raise ApiError(
            400,
            f"the request needs {exc.needed + max_new_tokens} tokens ({at}, plus max_tokens="
            f"{max_new_tokens}): {exc.deficit} over max_total_tokens={limit}; send less text "
            "or fewer items, lower min_pixels / min_frames on the media parts, or lower "
            "max_tokens",
            code="context_length_exceeded",
            param="messages",
        ) from exc
    return result.apply(conversation) if result.shrunk else conversation


def check(count: PromptCount, max_new_tokens: int, limit: int | None) -> None:
    """Refuse a prompt whose tokens plus ``max_new_tokens`` exceed ``limit``.

    Raises:
        ApiError: 400 ``context_length_exceeded`` with the counts and the fix.
    """
    if limit is None or count.total + max_new_tokens <= limit:
        return
    raise ApiError(
        400,
        f"the prompt has {count.total} tokens ({count.text} text, {count.image} image, "
        f"{count.video} video) and max_tokens is {max_new_tokens}: "
        f"{count.total + max_new_tokens} in all, above max_total_tokens={limit}; lower "
        "max_pixels / fps / total_pixels on the media parts, send fewer items, or lower "
        "max_tokens",
        code="context_length_exceeded",
        param="messages",
    )
