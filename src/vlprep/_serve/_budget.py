"""The prompt-plus-answer ceiling (``max_total_tokens``) of a request.

Today a request over its ceiling is refused with the exact count (400,
``context_length_exceeded``), as vLLM refuses a prompt over ``max_model_len`` but with the
per-modality split and what to lower. **Integration point for ``vlprep.fit``** (issue 17):
where :func:`ceiling` is not ``None``, the backends call :func:`check` after counting; with
``vlprep.fit`` on main, they instead fit the conversation before loading
(``vlprep.fit(conversation, ceiling, processor=..., reserve=max_new_tokens, policy=...)``)
and load the fitted plan (``build_inputs(..., plan=...)``; the gateway loads each item at
its fitted size), so :func:`check` only fires when no fit exists (``BudgetError`` -> the same
400). See ``RunnerBackend.prepare`` and ``Gateway.load``.
"""

from __future__ import annotations

from vlprep._serve._count import PromptCount
from vlprep._serve._http_errors import ApiError

__all__ = ["ceiling", "check"]


def ceiling(request: int | None, server: int | None) -> int | None:
    """The tighter of the request's and the server's ``max_total_tokens``."""
    given = [v for v in (request, server) if v is not None]
    return min(given) if given else None


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
