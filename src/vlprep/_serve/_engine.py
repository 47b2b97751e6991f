"""``SerialEngine``: the runner backend's engine until the batching engine lands.

It has the interface of ``vlprep.runner.BatchEngine`` (``submit`` -> a stream of text deltas
with ``cancel`` and a ``result``), runs one request at a time on one worker thread that owns
the model, and holds at most ``max_waiting`` requests waiting (one more raises
:class:`vlprep._errors.QueueFullError`). Cancelling a stream stops its decode at the next
token; a ``stop`` string ends the answer before it (the string is not returned).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from vlprep._errors import QueueFullError
from vlprep.runner import Runner, Sampling

__all__ = ["Engine", "SerialEngine", "SerialStream", "StreamResult", "TextDecoder", "TokenStream"]

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True, slots=True)
class StreamResult:
    """One finished request.

    Attributes:
        text: the answer (special tokens removed, cut before a ``stop`` string).
        token_ids: the generated ids (a final end-of-turn id included).
        prompt_tokens: prompt length.
        generated_tokens: ``len(token_ids)``.
        finish_reason: ``"stop"`` (end of turn or a stop string), ``"length"``
            (``max_new_tokens`` reached) or ``"cancelled"``.
    """

    text: str
    token_ids: list[int]
    prompt_tokens: int
    generated_tokens: int
    finish_reason: FinishReason


class TokenStream(Protocol):
    """What the server reads from an engine's stream (``BatchEngine``'s too)."""

    result: Any

    def __aiter__(self) -> AsyncIterator[str]: ...

    def cancel(self) -> None: ...


class Engine(Protocol):
    """``submit`` / ``close``, as ``SerialEngine`` and ``vlprep.runner.BatchEngine``."""

    def submit(self, inputs: Any, sampling: Sampling, *, stop: Sequence[str] = ()) -> Any: ...

    def close(self) -> None: ...


class TextDecoder:
    """Token ids -> text deltas that are safe to send: never half a UTF-8 character, never
    the start of a ``stop`` string that may still complete."""

    def __init__(self, tokenizer: Any, stop_ids: Sequence[int], stops: Sequence[str]) -> None:
        self._decode = tokenizer.decode
        self._stop_ids = frozenset(stop_ids)
        self._stops = [s for s in stops if s]
        self.ids: list[int] = []  # every generated id
        self._text_ids: list[int] = []
        self.text = ""  # the answer so far (cut at a stop string)
        self.sent = 0  # characters of ``text`` handed out
        self.ended: FinishReason | None = None

    def add(self, token_id: int) -> str:
        """Take one generated id; return the new text that may be sent (maybe empty)."""
        self.ids.append(token_id)
        if token_id in self._stop_ids:
            self.ended = "stop"
            return self.flush()
        self._text_ids.append(token_id)
        text = self._decode(self._text_ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        self.text = text
        limit = len(text)
        for stop in self._stops:
            found = text.find(stop, max(0, self.sent - len(stop)))
            if found >= 0 and found < limit:
                limit = found
                self.ended = "stop"
        if self.ended == "stop":
            self.text = text[:limit]
            return self._take(limit)
        hold = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        return self._take(len(text) - hold)

    def flush(self) -> str:
        """The rest of the text once generation ended without a stop string."""
        if self.ended != "stop" or not self._stops:
            text = self._decode(self._text_ids, skip_special_tokens=True)
            if not any(text.find(s) >= 0 for s in self._stops):
                self.text = text
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        piece = self.text[self.sent : upto]
        self.sent = upto
        return piece


class SerialStream:
    """One request's text deltas (blocking or async iteration), ``cancel`` and ``result``."""

    def __init__(self, inputs: Any, sampling: Sampling, stop: Sequence[str]) -> None:
        self.inputs, self.sampling, self.stop = inputs, sampling, tuple(stop)
        self.result: StreamResult | None = None
        self._cond = threading.Condition()
        self._pieces: collections.deque[str] = collections.deque()
        self._done = False
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._wakers: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop generating for this request (at the next token, or before it starts)."""
        self._cancelled.set()

    def push(self, piece: str) -> None:
        if piece:
            self._notify(lambda: self._pieces.append(piece))

    def finish(self, result: StreamResult | None, error: BaseException | None = None) -> None:
        def end() -> None:
            self.result, self._error, self._done = result, error, True

        self._notify(end)

    def _notify(self, change: Callable[[], None]) -> None:
        with self._cond:
            change()
            self._cond.notify_all()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def _next(self) -> str | None:
        """The next piece, ``None`` at the end; raises the worker's error. Lock held."""
        if self._pieces:
            return self._pieces.popleft()
        if self._error is not None:
            raise self._error
        return None

    def __iter__(self) -> Iterator[str]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pieces) or self._done)
                piece = self._next()
            if piece is None:
                return
            yield piece

    def __aiter__(self) -> AsyncIterator[str]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(ready.set)

        with self._cond:
            self._wakers.append(wake)
        try:
            while True:
                ready.clear()
                with self._cond:
                    piece = self._next()
                    done = self._done
                if piece is not None:
                    yield piece
                elif done:
                    return
                else:
                    await ready.wait()
        finally:
            with self._cond:
                self._wakers.remove(wake)


class _Halt(Exception):
    """Raised from the token callback to end a decode early."""


class SerialEngine:
    """Answers submitted requests one after another on a worker thread.

    Args:
        runner: the loaded model.
        max_waiting: requests that may wait (the running one not counted).
    """

    def __init__(self, runner: Runner, *, max_waiting: int = 64) -> None:
        self.runner = runner
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._waiting: collections.deque[SerialStream] = collections.deque()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="vlprep-serve-engine", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, inputs: Any, sampling: Sampling, *, stop: Sequence[str] = ()) -> SerialStream:
        """Queue one conversation's ``build_inputs`` output (on CPU or the device).

        Raises:
            QueueFullError: ``max_waiting`` requests are already waiting, or the engine is
                closed.
        """
        stream = SerialStream(inputs, sampling, stop)
        with self._cond:
            if self._closed:
                raise QueueFullError("the server is shutting down", retry_after=5)
            if len(self._waiting) >= self.max_waiting:
                raise QueueFullError(
                    f"{len(self._waiting)} requests are already waiting for the model (the "
                    f"limit); retry shortly",
                    retry_after=1,
                )
            self._waiting.append(stream)
            self._cond.notify()
        return stream

    def close(self) -> None:
        """Stop the worker; waiting streams end ``"cancelled"``, the running one at its next
        token."""
        with self._cond:
            self._closed = True
            pending = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        for stream in pending:
            stream.cancel()
            stream.finish(StreamResult("", [], 0, 0, "cancelled"))
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._waiting) or self._closed)
                if self._closed:
                    return
                stream = self._waiting.popleft()
            self._run(stream)

    def _run(self, stream: SerialStream) -> None:
        runner = self.runner
        inputs = stream.inputs
        prompt = int(inputs["attention_mask"].sum())
        if stream.cancelled or self._closed:
            stream.finish(StreamResult("", [], prompt, 0, "cancelled"))
            return
        decoder = TextDecoder(runner.processor.tokenizer, runner.stop_ids, stream.stop)

        def on_token(ids: torch.Tensor) -> None:
            if stream.cancelled or self._closed:
                raise _Halt
            stream.push(decoder.add(int(ids[0])))
            if decoder.ended is not None:
                raise _Halt

        reason: FinishReason
        try:
            moved = {
                key: value.to(
                    runner.device, runner.dtype if key.startswith("pixel_values") else None
                )
                for key, value in inputs.items()
            }
            runner._decode(type(inputs)(moved), stream.sampling, on_token)
            reason = decoder.ended or "length"
        except _Halt:
            reason = decoder.ended or "cancelled"
        except Exception as exc:  # the consumer re-raises it; the engine keeps serving
            stream.finish(None, exc)
            return
        if reason != "cancelled":
            stream.push(decoder.flush())
        stream.finish(StreamResult(decoder.text, decoder.ids, prompt, len(decoder.ids), reason))
