"""One request's answer as it is produced: :class:`GenerationStream` and :class:`StreamResult`.

The engine's worker thread pushes text deltas and one final event; the consumer reads them
from a thread (``for piece in stream``) or a coroutine (``async for piece in stream``). The
asyncio side is woken through ``loop.call_soon_threadsafe`` (no polling loop); both sides
also re-check, once a second, that the worker is still alive, so no wait outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from vlprep._errors import GenerationError

__all__ = ["FinishReason", "GenerationStream", "StreamResult"]

FinishReason = Literal["stop", "length", "cancelled"]
_RECHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class StreamResult:
    """How one request ended.

    Attributes:
        text: the whole answer: the streamed deltas joined (special tokens removed, cut
            before a matched stop string).
        token_ids: the generated ids (an end-of-turn id included when one ended the answer).
        prompt_tokens: prompt length (padding excluded).
        generated_tokens: ``len(token_ids)``.
        finish_reason: ``"stop"`` (an end-of-turn id or a stop string), ``"length"``
            (``max_new_tokens`` reached) or ``"cancelled"`` (:meth:`GenerationStream.cancel`,
            or the engine closed).
        queued_s: seconds from ``submit`` to the start of the prompt pass.
        first_token_s: seconds from ``submit`` to the first generated token (0 if none).
        total_s: seconds from ``submit`` to the end.
    """

    text: str
    token_ids: list[int]
    prompt_tokens: int
    generated_tokens: int
    finish_reason: FinishReason
    queued_s: float = 0.0
    first_token_s: float = 0.0
    total_s: float = 0.0


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class GenerationStream:
    """The answer to one :meth:`BatchEngine.submit`, as text deltas.

    ``for piece in stream`` (blocking) or ``async for piece in stream`` yields the deltas;
    they join to :attr:`result`'s ``text``. A consumer that falls behind gets the deltas
    that piled up joined into one (fewer, larger chunks under load; the text is the same).
    Iteration ends when the request finishes; if the engine failed on it, iteration raises
    :class:`~vlprep.GenerationError`. Leaving the iteration early (``break``, an exception,
    a cancelled task) cancels the request.

    Attributes:
        result: the :class:`StreamResult` once the request ended, else ``None`` (also
            ``None`` after a failure).
        prompt_tokens: the prompt's length, known at submit.
    """

    def __init__(self, prompt_tokens: int, cancel: Callable[[GenerationStream], None]) -> None:
        self.prompt_tokens = prompt_tokens
        self.result: StreamResult | None = None
        self._on_cancel = cancel
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pieces: deque[str] = deque()
        self._ended = False
        self._error: BaseException | None = None
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._alive: Callable[[], bool] = lambda: True
        self.cancelled = False  # set by cancel(); the worker reads it at each step

    @property
    def done(self) -> bool:
        """The request ended (finished, cancelled or failed); pieces may remain unread."""
        return self._ended

    def cancel(self) -> None:
        """The client is gone: the request leaves the batch at the next step.

        A request still waiting ends at once. Idempotent; no effect after the end.
        """
        self.cancelled = True
        self._on_cancel(self)

    # -- the worker's side --------------------------------------------------------------

    def _push(self, piece: str) -> None:
        if not piece:
            return
        with self._lock:
            if self._ended:
                return
            self._pieces.append(piece)
            self._notify()

    def _finish(self, result: StreamResult | None, error: BaseException | None = None) -> None:
        with self._lock:
            if self._ended:
                return
            self.result, self._error, self._ended = result, error, True
            self._notify()

    def _notify(self) -> None:  # holding self._lock
        self._ready.notify_all()
        for loop, future in self._wakers:
            # a closed event loop raises RuntimeError: nobody is waiting there any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)
        self._wakers.clear()

    def _check_alive(self) -> None:  # holding self._lock
        if not self._ended and not self._alive():
            self._error = GenerationError("the batching engine's worker thread stopped")
            self._ended = True

    def _take(self) -> str:  # holding self._lock, pieces waiting
        if len(self._pieces) == 1:
            return self._pieces.popleft()
        joined = "".join(self._pieces)  # a consumer that fell behind gets one larger delta
        self._pieces.clear()
        return joined

    def _end(self) -> str | None:  # holding self._lock, nothing left to read
        if self._error is not None:
            raise self._error
        return None

    # -- the consumer's side ------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        complete = False
        try:
            while True:
                with self._ready:
                    while not self._pieces and not self._ended:
                        if not self._ready.wait(_RECHECK_S):
                            self._check_alive()
                    if not self._pieces:
                        complete = True
                        self._end()
                        return
                    piece = self._take()
                yield piece
        finally:
            if not complete:
                self.cancel()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._async_pieces()

    async def _async_pieces(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        complete = False
        try:
            while True:
                with self._lock:
                    if self._pieces:
                        piece: str | None = self._take()
                    elif self._ended:
                        complete = True
                        self._end()
                        return
                    else:
                        piece, future = None, loop.create_future()
                        self._wakers.append((loop, future))
                if piece is not None:
                    yield piece
                    continue
                # asyncio.wait, not wait_for: up to Python 3.11, wait_for can swallow the
                # task's cancellation when the future completes at the same moment, and a
                # busy stream completes one every token
                done, _ = await asyncio.wait({future}, timeout=_RECHECK_S)
                if not done:
                    with self._lock:
                        self._check_alive()
        finally:
            if not complete:
                self.cancel()
