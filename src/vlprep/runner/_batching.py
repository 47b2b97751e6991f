"""``BatchEngine``: concurrent requests decoded together on one :class:`Runner`.

One worker thread owns the model. When it is idle, the first request opens a window of
``window_s`` seconds in which further requests are collected (up to ``max_batch``); each is
prefilled on its own and merged into one left-padded batch (see :mod:`._rows`), and the
batch decodes one token per step for every row. A row leaves the batch (its cache rows are
dropped) as soon as it finishes: an end-of-turn id, a stop string, its ``max_new_tokens``,
or :meth:`GenerationStream.cancel`. Requests that arrive while the batch runs join it at the
next step boundary while it has room (continuous batching); the others wait, at most
``max_waiting`` of them, beyond which :meth:`BatchEngine.submit` raises
:class:`~vlprep.QueueFullError`.

Each row samples with its own :class:`Sampling` and ``torch.Generator``: a greedy row gets
exactly the tokens :meth:`Runner.generate` gives for that conversation alone (tested per
family, on CPU in float32), and a seeded row draws as a seeded batch of one does.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from vlprep._errors import GenerationError, InvalidInputError, QueueFullError
from vlprep._numbers import is_finite_number
from vlprep.runner._decode import Sampling
from vlprep.runner._rows import RowBatch, choose_tokens, prefill
from vlprep.runner._stream import FinishReason, GenerationStream, StreamResult
from vlprep.runner._text import StopText, check_stops

if TYPE_CHECKING:
    from vlprep.runner._runner import Runner

__all__ = ["BatchEngine"]

logger = logging.getLogger(__name__)
_IDLE_RECHECK_S = 1.0


@dataclass(eq=False, slots=True)
class _Request:
    inputs: Mapping[str, torch.Tensor]
    sampling: Sampling
    stops: tuple[str, ...]
    stream: GenerationStream
    submitted: float


@dataclass(eq=False, slots=True)
class _Row:
    request: _Request
    text: StopText
    generator: torch.Generator | None
    stop_ids: frozenset[int]
    started: float
    first_token: float = 0.0
    ids: list[int] = field(default_factory=list)


class BatchEngine:
    """Serve concurrent generation requests on one :class:`Runner`, decoded as one batch.

    Args:
        runner: the loaded model; the engine's worker thread is its only user while the
            engine is open (do not call the runner from other threads meanwhile).
        max_batch: rows decoded together at most (>= 1).
        window_s: how long an idle engine waits after the first request for others to
            prefill and decode with it (seconds, >= 0).
        max_waiting: requests allowed to wait for a place in the batch (>= 1); one more
            raises :class:`~vlprep.QueueFullError`.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        max_batch: int = 8,
        window_s: float = 0.02,
        max_waiting: int = 64,
    ) -> None:
        for name, value in (("max_batch", max_batch), ("max_waiting", max_waiting)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
        if not is_finite_number(window_s) or not 0 <= window_s <= 10:
            raise InvalidInputError(f"window_s must be seconds in [0, 10], got {window_s!r}")
        self.runner = runner
        self.max_batch, self.window_s, self.max_waiting = max_batch, float(window_s), max_waiting
        self._lock = threading.Condition()
        self._waiting: deque[_Request] = deque()
        self._rows: list[_Row] = []
        self._closed = False
        self._seconds_per_request = 1.0  # running mean of submit -> end, for Retry-After
        self._thread = threading.Thread(target=self._work, name="vlprep-batch", daemon=True)
        self._thread.start()

    # -- public ---------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Requests waiting for a place in the batch."""
        return len(self._waiting)

    @property
    def active(self) -> int:
        """Rows decoding now."""
        return len(self._rows)

    @property
    def closed(self) -> bool:
        """:meth:`close` was called."""
        return self._closed

    def submit(
        self,
        inputs: Mapping[str, torch.Tensor],
        sampling: Sampling,
        *,
        stop: str | Sequence[str] = (),
    ) -> GenerationStream:
        """Queue one conversation; returns its stream at once (generation runs in the engine).

        Args:
            inputs: :func:`vlprep.build_inputs` (or :meth:`Runner.prepare`) output for ONE
                conversation: ``input_ids`` ``(1, L)``, ``attention_mask``,
                ``mm_token_type_ids`` and its pixel tensors and grids. Moved to the runner's
                device by the engine when they are elsewhere.
            sampling: this request's :class:`Sampling` (greedy, or temperature / top-p /
                seed of its own).
            stop: stop strings (a ``str`` is one); the answer ends before the first.

        Raises:
            InvalidInputError: inputs of a batch, or missing keys; bad ``stop``.
            QueueFullError: ``max_waiting`` requests already wait (``retry_after`` says
                when to try again).
            GenerationError: the engine is closed.
        """
        stops = check_stops(stop)
        if not isinstance(sampling, Sampling):
            raise InvalidInputError(f"sampling must be a Sampling, got {type(sampling).__name__}")
        prompt_tokens = _prompt_tokens(inputs)
        stream = GenerationStream(prompt_tokens, self._cancel)
        stream._alive = self._thread.is_alive
        request = _Request(inputs, sampling, stops, stream, time.perf_counter())
        with self._lock:
            if self._closed:
                raise GenerationError("the batching engine is closed; create a new one")
            if len(self._waiting) >= self.max_waiting:
                batches = math.ceil((len(self._waiting) + 1) / self.max_batch)
                retry = min(60.0, max(1.0, batches * self._seconds_per_request))
                raise QueueFullError(
                    f"{len(self._waiting)} requests are already waiting (max_waiting="
                    f"{self.max_waiting}); retry in about {math.ceil(retry)} s",
                    retry_after=float(math.ceil(retry)),
                )
            self._waiting.append(request)
            self._lock.notify_all()
        return stream

    def close(self, timeout: float = 60.0) -> None:
        """Stop the worker; every unfinished stream ends with ``finish_reason="cancelled"``.

        Waiting requests end at once; decoding rows at the end of the current step (the
        call waits up to ``timeout`` seconds for that). Idempotent.
        """
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._lock.notify_all()
        for request in waiting:
            request.stream._finish(_cancelled(request))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> BatchEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker -----------------------------------------------------------------------

    def _cancel(self, stream: GenerationStream) -> None:
        with self._lock:
            found = [r for r in self._waiting if r.stream is stream]
            for request in found:
                self._waiting.remove(request)
        for request in found:
            stream._finish(_cancelled(request))

    def _take(self) -> list[_Request] | None:
        """Requests to add to the batch now; ``None`` once closed."""
        with self._lock:
            if not self._rows:  # idle: wait for one request, then the window
                while not self._waiting and not self._closed:
                    self._lock.wait(_IDLE_RECHECK_S)
                deadline = time.perf_counter() + self.window_s
                while len(self._waiting) < self.max_batch and not self._closed:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._lock.wait(left)
            if self._closed:
                return None
            room = self.max_batch - len(self._rows)
            return [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]

    def _work(self) -> None:
        batch = RowBatch(self.runner.model)
        error: BaseException | None = None
        try:
            with torch.inference_mode():
                while (fresh := self._take()) is not None:
                    for request in fresh:
                        self._start(request, batch)
                    if self._rows:
                        try:
                            self._advance(batch)
                        except Exception as exc:  # the model failed: end this batch's rows
                            logger.exception("batch decode step failed (%d rows)", len(self._rows))
                            self._fail_rows(exc)
                            batch = RowBatch(self.runner.model)
        except BaseException as exc:  # pragma: no cover - interpreter shutdown, KeyboardInterrupt
            error = exc
            raise
        finally:
            for row in self._rows:
                if error is None:
                    row.request.stream._finish(self._result(row, "cancelled"))
                else:
                    row.request.stream._finish(None, _engine_error("stopped", error))
            self._rows = []
            if error is not None:
                self.close(timeout=0)

    def _start(self, request: _Request, batch: RowBatch) -> None:
        """Prefill one request and add it as the batch's last row (or fail its stream)."""
        if request.stream.cancelled:
            request.stream._finish(_cancelled(request))
            return
        runner = self.runner
        started = time.perf_counter()
        try:
            generator = None
            if request.sampling.do_sample:
                seed = request.sampling.seed
                seed = secrets.randbits(63) if seed is None else seed
                generator = torch.Generator(device=runner.device).manual_seed(seed)
            text = StopText(runner.processor.tokenizer, request.stops)
            stop_ids = frozenset(runner.stop_ids)  # the runner's, when the request starts
            row = prefill(
                runner.model,
                request.inputs,
                family=runner.family,
                device=runner.device,
                dtype=runner.dtype,
                semantics=runner.rope,
            )
            batch.add(row)  # the last step that can fail: the batch and the rows stay aligned
        except Exception as exc:
            logger.exception("prefill failed")
            request.stream._finish(None, _engine_error("failed on this request's prompt", exc))
            return
        self._rows.append(_Row(request, text, generator, stop_ids, started))

    def _advance(self, batch: RowBatch) -> None:
        """Choose every row's next token, hand out text, drop finished rows, step the rest."""
        rows = self._rows
        chosen = choose_tokens(
            batch.logits, [r.request.sampling for r in rows], [r.generator for r in rows]
        )
        now = time.perf_counter()
        keep: list[int] = []
        for b, (row, token) in enumerate(zip(rows, chosen.tolist(), strict=True)):
            stream = row.request.stream
            if stream.cancelled:
                self._end(row, "cancelled")
                continue
            row.ids.append(token)
            row.first_token = row.first_token or now
            if token in row.stop_ids:
                self._end(row, "stop")
                continue
            stream._push(row.text.add(token))
            if row.text.stopped:
                self._end(row, "stop")
            elif len(row.ids) >= row.request.sampling.max_new_tokens:
                self._end(row, "length")
            else:
                keep.append(b)
        self._rows = [rows[b] for b in keep]
        batch.keep(keep)
        if keep:
            batch.step(chosen[keep])

    def _end(self, row: _Row, reason: FinishReason) -> None:
        stream = row.request.stream
        if reason != "cancelled":
            stream._push(row.text.finish())
        result = self._result(row, reason)
        self._seconds_per_request += 0.1 * (result.total_s - self._seconds_per_request)
        stream._finish(result)

    def _result(self, row: _Row, reason: FinishReason) -> StreamResult:
        request = row.request
        now = time.perf_counter()
        return StreamResult(
            text=row.text.text,
            token_ids=list(row.ids),
            prompt_tokens=request.stream.prompt_tokens,
            generated_tokens=len(row.ids),
            finish_reason=reason,
            queued_s=row.started - request.submitted,
            first_token_s=row.first_token - request.submitted if row.first_token else 0.0,
            total_s=now - request.submitted,
        )

    def _fail_rows(self, exc: Exception) -> None:
        rows, self._rows = self._rows, []
        for row in rows:
            row.request.stream._finish(None, _engine_error("failed during decoding", exc))


def _prompt_tokens(inputs: Any) -> int:
    try:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        _ = inputs["mm_token_type_ids"]
    except (KeyError, TypeError):
        raise InvalidInputError(
            "inputs must be build_inputs output (input_ids, attention_mask, mm_token_type_ids)"
        ) from None
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.shape[0] != 1:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise InvalidInputError(
            f"submit takes the inputs of ONE conversation (input_ids (1, L)), got {shape}; "
            f"submit each conversation of a batch separately"
        )
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(ids.shape):
        raise InvalidInputError("inputs['attention_mask'] must be a tensor shaped like input_ids")
    return int(mask.sum())


def _cancelled(request: _Request) -> StreamResult:
    waited = time.perf_counter() - request.submitted
    return StreamResult("", [], request.stream.prompt_tokens, 0, "cancelled", waited, 0.0, waited)


def _engine_error(what: str, exc: BaseException) -> GenerationError:
    error = GenerationError(
        f"the model {what} ({type(exc).__name__}; details in the server log); "
        f"the engine goes on with the other requests"
    )
    error.__cause__ = exc
    return error
