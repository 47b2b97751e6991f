"""The serial engine and its text decoder, on a fake runner (no model)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import torch

from vlprep._errors import QueueFullError
from vlprep._serve._engine import SerialEngine, TextDecoder
from vlprep.runner import Sampling


class CharTokenizer:
    """id = code point; 0 is the end-of-turn id."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids if i)


def feed(decoder: TextDecoder, text: str) -> list[str]:
    return [decoder.add(ord(ch)) for ch in text]


def test_stop_string_is_held_back_then_cut() -> None:
    decoder = TextDecoder(CharTokenizer(), [0], ["END"])
    pieces = feed(decoder, "abEN")
    assert pieces == ["a", "b", "", ""] and decoder.ended is None
    assert feed(decoder, "D") == [""] and decoder.ended == "stop"
    assert decoder.text == "ab" and decoder.flush() == ""


def test_false_start_of_a_stop_string_is_released() -> None:
    decoder = TextDecoder(CharTokenizer(), [0], ["END"])
    assert "".join(feed(decoder, "xENx")) == "xENx"
    assert decoder.add(0) == "" and decoder.ended == "stop"
    assert decoder.ids[-1] == 0 and decoder.text == "xENx"


def test_held_text_comes_out_at_the_length_limit() -> None:
    decoder = TextDecoder(CharTokenizer(), [0], ["END"])
    assert "".join(feed(decoder, "okE")) == "ok"
    assert decoder.flush() == "E"


class FakeRunner:
    """Emits ``tokens`` one by one; waits on ``gate`` before the first."""

    def __init__(self, tokens: str) -> None:
        self.tokens = [ord(c) for c in tokens]
        self.gate = threading.Event()
        self.processor = type("P", (), {"tokenizer": CharTokenizer()})()
        self.stop_ids = [0]
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def _decode(self, inputs: Any, sampling: Sampling, on_token: Any) -> None:
        self.gate.wait(10)
        for token in self.tokens[: sampling.max_new_tokens]:
            on_token(torch.tensor([token]))


def inputs() -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.ones(1, 5, dtype=torch.long),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
    }


def test_queue_full_close_and_results() -> None:
    runner = FakeRunner("hello\x00")
    engine = SerialEngine(runner, max_waiting=1)  # type: ignore[arg-type]
    try:
        running = engine.submit(inputs(), Sampling(max_new_tokens=10))
        while engine.waiting:  # the worker took it and waits on the gate
            pass
        waiting = engine.submit(inputs(), Sampling(max_new_tokens=3))
        with pytest.raises(QueueFullError) as caught:
            engine.submit(inputs(), Sampling())
        assert caught.value.retry_after >= 1
        runner.gate.set()
        assert "".join(running) == "hello"
        assert running.result is not None and running.result.finish_reason == "stop"
        assert running.result.generated_tokens == 6 and running.result.prompt_tokens == 5

        async def read() -> str:
            return "".join([piece async for piece in waiting])

        assert asyncio.run(read()) == "hel"
        assert waiting.result is not None and waiting.result.finish_reason == "length"
    finally:
        engine.close()
    with pytest.raises(QueueFullError):
        engine.submit(inputs(), Sampling())


def test_cancel_before_start_and_worker_errors() -> None:
    runner = FakeRunner("abc")
    engine = SerialEngine(runner)  # type: ignore[arg-type]
    try:
        first = engine.submit(inputs(), Sampling(max_new_tokens=3))
        second = engine.submit(inputs(), Sampling(max_new_tokens=3))
        second.cancel()
        runner.gate.set()
        assert "".join(first) == "abc" and list(second) == []
        assert second.result is not None and second.result.finish_reason == "cancelled"

        def broken(*_: Any) -> None:
            raise RuntimeError("device lost")

        runner._decode = broken  # type: ignore[method-assign]
        failing = engine.submit(inputs(), Sampling())
        with pytest.raises(RuntimeError, match="device lost"):
            list(failing)
        healthy = FakeRunner("ok")
        healthy.gate.set()
        runner._decode = healthy._decode  # type: ignore[method-assign]
        assert "".join(engine.submit(inputs(), Sampling(max_new_tokens=2))) == "ok"  # still serving
    finally:
        engine.close()
