"""BatchEngine on tiny random-weight checkpoints of each family, saved and reloaded offline.

The oracle is the runner itself: every greedy row must get exactly the tokens
``Runner.run`` gives for that conversation alone, whatever the rows around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import photo
from tests.hf_fixtures import FAMILIES, Family, make_tokenizer, save_checkpoint
from tests.videos import write_clip
from vlprep import InvalidInputError
from vlprep.runner import (
    BatchEngine,
    GenerationError,
    GenerationStream,
    QueueFullError,
    Runner,
    Sampling,
    StreamResult,
)
from vlprep.runner._rows import RowBatch, prefill
from vlprep.runner._text import StopText, check_stops

pytestmark = pytest.mark.filterwarnings("ignore:.*cap_pixels_per_frame.*")

Conversation = list[dict[str, Any]]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {f: save_checkpoint(f, root / f.replace(".", "_")) for f in FAMILIES}


def sensitive(runner: Runner) -> Runner:
    """``runner`` with weights drawn at unit gain (std 2/sqrt(fan_in), seeded).

    The checkpoints' default initialisation (std 0.02 at hidden size 32) gives a model that
    answers every prompt with the same tokens, which would let rows swap caches or
    positions unnoticed; at this scale each prompt gets its own answer (checked below).
    """
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in runner.model.parameters():
            if parameter.ndim >= 2:
                drawn = torch.randn(parameter.shape, generator=generator)
                parameter.copy_(drawn * 2 / math.sqrt(parameter.shape[-1]))
    return runner


@pytest.fixture(scope="module")
def runners(checkpoints: dict[str, Path]) -> dict[str, Runner]:
    return {f: sensitive(Runner.from_pretrained(checkpoints[f], device="cpu")) for f in FAMILIES}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=30, fps=15)


def text(question: str) -> Conversation:
    return [{"role": "user", "content": [{"type": "text", "text": question}]}]


def image(question: str, width: int = 160, height: int = 100) -> Conversation:
    content = [{"type": "image", "image": photo(width, height)}, {"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


def video(clip: Path) -> Conversation:
    content = [{"type": "video", "video": str(clip), "nframes": 4}, {"type": "text", "text": "?"}]
    return [{"role": "user", "content": content}]


MIXED = [
    text("Hi"),
    image("What is in this picture? Describe every detail you can see."),
    text("A much longer question that goes on and on, so that its prompt is the longest."),
    image("Small?", 56, 56),
    text("Short"),
]


def alone(runner: Runner, conversation: Conversation, sampling: Sampling) -> Any:
    result = runner.run([conversation], sampling)
    return result.token_ids[0], result.texts[0]


@contextlib.contextmanager
def no_end_ids(runner: Runner) -> Iterator[None]:
    """No end-of-turn ids while the block runs (the engine reads them as a request starts):
    only max_new_tokens, a stop string or a cancellation ends an answer."""
    saved, runner.stop_ids = runner.stop_ids, []
    try:
        yield
    finally:
        runner.stop_ids = saved


def drain(stream: GenerationStream) -> tuple[list[str], StreamResult]:
    pieces = list(stream)
    assert stream.result is not None
    return pieces, stream.result


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_rows_equal_the_runner_alone(
    family: Family, runners: dict[str, Runner], clip: Path
) -> None:
    runner = runners[family]
    conversations = [*MIXED, video(clip)]
    # different lengths, so rows leave the batch at different steps; max_batch 3 < 6
    # requests, so later ones join a running batch at step boundaries
    samplings = [Sampling(max_new_tokens=n) for n in (3, 17, 9, 25, 6, 12)]
    expected = [alone(runner, c, s) for c, s in zip(conversations, samplings, strict=True)]
    # the oracle tells the rows apart: each prompt's answer starts differently
    assert len({tuple(ids[:3]) for ids, _ in expected}) == len(expected)
    with BatchEngine(runner, max_batch=3, window_s=0.05) as engine:
        streams = [
            engine.submit(runner.prepare(c), s)
            for c, s in zip(conversations, samplings, strict=True)
        ]
        for stream, (ids, answer), sampling in zip(streams, expected, samplings, strict=True):
            pieces, result = drain(stream)
            assert result.token_ids == ids
            assert "".join(pieces) == result.text == answer
            assert result.generated_tokens == len(ids)
            assert result.finish_reason == (
                "stop" if len(ids) < sampling.max_new_tokens else "length"
            )
            assert result.prompt_tokens == stream.prompt_tokens
            assert result.total_s >= result.first_token_s >= result.queued_s >= 0
        assert engine.active == 0 and engine.waiting == 0


def test_rows_ending_on_a_stop_id_leave_and_the_rest_stay_exact(
    checkpoints: dict[str, Path],
) -> None:
    runner = sensitive(Runner.from_pretrained(checkpoints["qwen2.5-vl"], device="cpu"))
    sampling = Sampling(max_new_tokens=20)
    first, _ = alone(runner, MIXED[1], sampling)
    # make the 5th token of one answer an end-of-turn id, for the runner and the engine alike
    runner.stop_ids = sorted({*runner.stop_ids, first[4]})
    expected = [alone(runner, c, sampling) for c in MIXED]
    assert len(expected[1][0]) == 5 and expected[1][0][-1] == first[4]
    with BatchEngine(runner, max_batch=8, window_s=0.2) as engine:
        streams = [engine.submit(runner.prepare(c), sampling) for c in MIXED]
        results = [drain(s)[1] for s in streams]
    assert [r.token_ids for r in results] == [ids for ids, _ in expected]
    decode = runner.processor.tokenizer.decode
    for result in results:  # an end-of-turn id is not part of the text
        kept = [t for t in result.token_ids if t not in runner.stop_ids]
        assert result.text == decode(kept, skip_special_tokens=True)
    assert results[1].finish_reason == "stop" and results[1].generated_tokens == 5


def test_seeded_sampling_per_row(runners: dict[str, Runner]) -> None:
    runner = runners["qwen2-vl"]
    samplings = [
        Sampling(max_new_tokens=12, do_sample=True, temperature=1.5, seed=7),
        Sampling(max_new_tokens=12),
        Sampling(max_new_tokens=12, do_sample=True, temperature=0.8, top_p=0.9, seed=11),
        Sampling(max_new_tokens=12, do_sample=True, temperature=1.5, seed=7),
    ]
    conversations = [MIXED[0], MIXED[1], MIXED[2], MIXED[2]]
    expected = [alone(runner, c, s)[0] for c, s in zip(conversations, samplings, strict=True)]
    assert expected[0] != expected[3]  # same seed, other prompt: the rows are not shared
    with BatchEngine(runner, max_batch=4, window_s=0.2) as engine:
        streams = [
            engine.submit(runner.prepare(c), s)
            for c, s in zip(conversations, samplings, strict=True)
        ]
        assert [drain(s)[1].token_ids for s in streams] == expected
        # unseeded sampling draws from a fresh generator per request
        unseeded = Sampling(max_new_tokens=12, do_sample=True, temperature=2.0)
        draws = {
            tuple(drain(engine.submit(runner.prepare(MIXED[0]), unseeded))[1].token_ids)
            for _ in range(3)
        }
    assert len(draws) > 1


def test_rows_leave_the_cache(runners: dict[str, Runner]) -> None:
    runner = runners["qwen2-vl"]
    batch = RowBatch(runner.model)
    with torch.inference_mode():
        rows = [
            prefill(
                runner.model,
                runner.prepare(c),
                family=runner.family,
                device=runner.device,
                dtype=runner.dtype,
                semantics=runner.rope,
            )
            for c in (MIXED[0], MIXED[2], MIXED[4])
        ]
        lengths = [int(r.mask.shape[1]) for r in rows]
        for row in rows:
            batch.add(row)
        keys = batch.cache.layers[0].keys
        assert keys.shape[0] == 3 and keys.shape[2] == max(lengths) == batch.columns
        assert batch.mask.sum(dim=1).tolist() == lengths
        batch.step(batch.logits.argmax(dim=-1))
        batch.keep([0, 2])  # the longest prompt leaves: its columns go too
    keys = batch.cache.layers[0].keys
    assert keys.shape[0] == 2
    assert keys.shape[2] == batch.columns == max(lengths[0], lengths[2]) + 1
    assert batch.mask.all(dim=0).any()  # no column is padding for every row
    assert batch.next_pos.shape == (2, 1) and batch.logits.shape[0] == 2
    batch.keep([])
    assert batch.size == 0 and batch.cache is None


def test_cancel_a_decoding_row_and_a_waiting_request(runners: dict[str, Runner]) -> None:
    runner = runners["qwen2-vl"]
    long = Sampling(max_new_tokens=4000)
    with (
        no_end_ids(runner),
        BatchEngine(runner, max_batch=2, window_s=0.2, max_waiting=4) as engine,
    ):
        expected = alone(runner, MIXED[2], Sampling(max_new_tokens=10))
        endless = engine.submit(runner.prepare(MIXED[0]), long)
        other = engine.submit(runner.prepare(MIXED[1]), long)
        waiting = engine.submit(runner.prepare(MIXED[4]), long)  # no room: it waits
        wait_until(lambda: engine.active == 2)
        assert engine.waiting == 1
        waiting.cancel()
        assert waiting.done and engine.waiting == 0
        assert drain(waiting)[1].finish_reason == "cancelled"
        assert drain(waiting)[1].generated_tokens == 0
        other.cancel()  # leaves at the next step ...
        wait_until(lambda: engine.active == 1)
        assert drain(other)[1].finish_reason == "cancelled"
        # ... and a new request joins the running row, exact
        neighbour = engine.submit(runner.prepare(MIXED[2]), Sampling(max_new_tokens=10))
        assert drain(neighbour)[1].token_ids == expected[0]
        for n, piece in enumerate(endless):
            if n == 3:
                endless.cancel()
            assert piece
        result = endless.result
        assert result is not None and result.finish_reason == "cancelled"
        assert 4 <= result.generated_tokens < 4000
        wait_until(lambda: engine.active == 0)
        # leaving the iteration early cancels too
        stream = engine.submit(runner.prepare(MIXED[0]), long)
        for _ in stream:
            break
        wait_until(lambda: stream.done)
        assert stream.result is not None and stream.result.finish_reason == "cancelled"


def test_queue_full_and_close(runners: dict[str, Runner]) -> None:
    runner = runners["qwen2-vl"]
    long = Sampling(max_new_tokens=4000)
    engine = BatchEngine(runner, max_batch=1, window_s=0.0, max_waiting=2)
    with no_end_ids(runner):
        running = engine.submit(runner.prepare(MIXED[0]), long)
        wait_until(lambda: engine.active == 1)  # started without end-of-turn ids
    queued = [engine.submit(runner.prepare(MIXED[4]), long) for _ in range(2)]
    with pytest.raises(QueueFullError, match="max_waiting=2") as caught:
        engine.submit(runner.prepare(MIXED[4]), long)
    assert isinstance(caught.value, RuntimeError) and caught.value.retry_after >= 1
    engine.close()
    assert engine.closed and engine.active == 0 and engine.waiting == 0
    for stream in [running, *queued]:
        pieces, result = drain(stream)  # ends, no error
        assert result.finish_reason == "cancelled"
        assert "".join(pieces) == result.text
    assert running.result is not None and running.result.generated_tokens >= 1
    with pytest.raises(GenerationError, match="closed"):
        engine.submit(runner.prepare(MIXED[4]), long)
    engine.close()  # idempotent


def test_stop_strings(runners: dict[str, Runner]) -> None:
    runner = runners["qwen3-vl"]
    sampling = Sampling(max_new_tokens=30)
    ids, answer = alone(runner, MIXED[1], sampling)
    assert len(answer) > 12
    stop = answer[6:9]
    cut = answer[: answer.find(stop)]
    with BatchEngine(runner) as engine:
        other = engine.submit(runner.prepare(MIXED[0]), sampling)
        stream = engine.submit(runner.prepare(MIXED[1]), sampling, stop=["never-there", stop])
        pieces, result = drain(stream)
        assert drain(other)[1].token_ids == alone(runner, MIXED[0], sampling)[0]
    assert result.finish_reason == "stop" and "".join(pieces) == result.text == cut
    assert result.token_ids == ids[: result.generated_tokens] and result.generated_tokens < len(ids)
    for bad in (["ok", ""], [3], ["x" * 257], ["s"] * 17):
        with pytest.raises(InvalidInputError, match="stop"):
            check_stops(bad)  # type: ignore[arg-type]
    assert check_stops("one") == ("one",)


def pieces_of(text_in: str, stops: tuple[str, ...] = ()) -> tuple[list[str], str, bool]:
    tokenizer = make_tokenizer()
    out = StopText(tokenizer, stops)
    ids = tokenizer.encode(text_in, add_special_tokens=False)
    pieces = [out.add(i) for i in ids]
    pieces.append(out.finish())
    assert "".join(pieces) == out.text
    return [p for p in pieces if p], out.text, out.stopped


def test_incremental_text_across_multibyte_characters() -> None:
    # the offline tokenizer is byte level without merges: one token per UTF-8 byte
    sample = "naïve café — 日本語 🙂 done"
    pieces, whole, stopped = pieces_of(sample)
    assert whole == sample and not stopped
    assert "🙂" in pieces and "\ufffd" not in "".join(pieces)  # 4 tokens, one piece
    # a stop string spanning several tokens (and characters) is never handed out in part
    pieces, whole, stopped = pieces_of(sample, ("日本", "zzz"))
    assert whole == "naïve café — " and stopped
    assert all("日" not in p for p in pieces)
    # a held prefix that turns out not to be a stop string is released
    pieces, whole, stopped = pieces_of("abcab!", ("ab?",))
    assert whole == "abcab!" and not stopped
    assert pieces == ["abc", "ab!"]  # "a", "ab" held until "c"; "a", "ab" held until "!"
    # invalid UTF-8 decodes as the whole decode does
    tokenizer = make_tokenizer()
    ids = tokenizer.encode("é", add_special_tokens=False)[:1] + tokenizer.encode("x")
    out = StopText(tokenizer)
    got = "".join([out.add(i) for i in ids] + [out.finish()])
    assert got == tokenizer.decode(ids) == "\ufffdx"


def test_concurrent_submitters_and_asyncio(runners: dict[str, Runner]) -> None:
    runner = runners["qwen2.5-vl"]
    sampling = Sampling(max_new_tokens=10)
    expected = {i: alone(runner, c, sampling) for i, c in enumerate(MIXED)}
    prepared = {i: runner.prepare(c) for i, c in enumerate(MIXED)}
    got: dict[tuple[int, int], Any] = {}
    errors: list[BaseException] = []
    with BatchEngine(runner, max_batch=4, max_waiting=64) as engine:

        def client(worker: int) -> None:
            try:
                for k in range(2):
                    i = (worker + k) % len(MIXED)
                    pieces, result = drain(engine.submit(prepared[i], sampling))
                    got[worker, k] = (i, "".join(pieces), result.token_ids)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors and len(got) == 16
        for i, answer, ids in got.values():
            assert (ids, answer) == expected[i]

        async def consume(i: int) -> tuple[str, list[int]]:
            stream = engine.submit(prepared[i], sampling)
            pieces = [piece async for piece in stream]
            assert stream.result is not None
            return "".join(pieces), stream.result.token_ids

        async def main() -> list[tuple[str, list[int]]]:
            answers = await asyncio.gather(*(consume(i) for i in range(len(MIXED))))
            # a cancelled consumer task cancels its request
            with no_end_ids(runner):
                stream = engine.submit(prepared[0], Sampling(max_new_tokens=4000))
                await cancelled_consumer(stream)
            return list(answers)

        async def cancelled_consumer(stream: GenerationStream) -> None:

            async def read() -> None:
                async for _ in stream:
                    pass

            task = asyncio.create_task(read())
            while engine.active == 0:  # no end-of-turn id: it decodes until cancelled
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(2000):
                if stream.done:
                    break
                await asyncio.sleep(0.01)
            assert stream.result is not None and stream.result.finish_reason == "cancelled"

        answers = asyncio.run(main())
        assert answers == [(answer, ids) for ids, answer in expected.values()]


class FlakyModel:
    """The real model, raising on chosen calls: ``fail(lambda input_ids: ...)``."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.forward = model.forward
        self.config = model.config
        self.generation_config = model.generation_config
        self.failing: Callable[[torch.Tensor], bool] = lambda ids: False

    def __call__(self, **kwargs: Any) -> Any:
        if self.failing(kwargs["input_ids"]):
            raise RuntimeError("injected failure")
        return self._model(**kwargs)


def test_worker_errors_end_the_affected_streams_only(runners: dict[str, Runner]) -> None:
    base = runners["qwen2-vl"]
    flaky = FlakyModel(base.model)
    runner = Runner(flaky, base.processor, preset=base.preset, device=base.device, dtype=base.dtype)
    sampling = Sampling(max_new_tokens=8)
    expected = alone(base, MIXED[0], sampling)[0]
    bad_length = int(runner.prepare(MIXED[2])["input_ids"].shape[1])
    with BatchEngine(runner, max_batch=4, window_s=0.2) as engine:
        # a prompt pass that fails: that request alone
        flaky.failing = lambda ids: ids.shape[1] == bad_length
        good = engine.submit(runner.prepare(MIXED[0]), sampling)
        bad = engine.submit(runner.prepare(MIXED[2]), sampling)
        with pytest.raises(GenerationError, match="prompt") as caught:
            list(bad)
        assert isinstance(caught.value.__cause__, RuntimeError)
        assert bad.result is None and bad.done
        assert drain(good)[1].token_ids == expected
        # a decode step that fails: every row of that batch, then the engine goes on
        flaky.failing = lambda ids: ids.shape[1] == 1
        rows = [engine.submit(runner.prepare(c), sampling) for c in MIXED[:2]]
        for stream in rows:
            with pytest.raises(GenerationError, match="decoding"):
                drain(stream)
        flaky.failing = lambda ids: False
        assert drain(engine.submit(runner.prepare(MIXED[0]), sampling))[1].token_ids == expected


def test_a_stream_never_outlives_its_worker() -> None:
    stream = GenerationStream(3, lambda s: None)
    stream._alive = lambda: False
    started = time.monotonic()
    with pytest.raises(GenerationError, match="worker"):
        list(stream)
    assert time.monotonic() - started < 5
    other = GenerationStream(3, lambda s: None)
    other._alive = lambda: False

    async def read() -> list[str]:
        return [piece async for piece in other]

    with pytest.raises(GenerationError, match="worker"):
        asyncio.run(read())


def test_bad_arguments(runners: dict[str, Runner]) -> None:
    runner = runners["qwen2-vl"]
    for kwargs in ({"max_batch": 0}, {"max_waiting": True}, {"window_s": -1.0}):
        with pytest.raises(InvalidInputError):
            BatchEngine(runner, **kwargs)
    with BatchEngine(runner) as engine:
        with pytest.raises(InvalidInputError, match="ONE conversation"):
            engine.submit(runner.prepare([MIXED[0], MIXED[2]]), Sampling())
        with pytest.raises(InvalidInputError, match="build_inputs"):
            engine.submit({"input_ids": torch.ones(1, 3)}, Sampling())
        ids = torch.ones(1, 3, dtype=torch.int64)
        with pytest.raises(InvalidInputError, match="attention_mask"):
            engine.submit(
                {"input_ids": ids, "attention_mask": ids[:, :2], "mm_token_type_ids": ids},
                Sampling(),
            )
        with pytest.raises(InvalidInputError, match="Sampling"):
            engine.submit(runner.prepare(MIXED[0]), {"max_new_tokens": 3})  # type: ignore[arg-type]


def test_32_concurrent_streaming_clients(runners: dict[str, Runner]) -> None:
    """The in-process load test: every request completes exactly or is refused with 429's error."""
    runner = runners["qwen3-vl"]
    prompts = [runner.prepare(c) for c in MIXED]
    samplings = [Sampling(max_new_tokens=6 + 3 * (i % 4)) for i in range(32)]
    # a greedy answer to n tokens is the start of the answer to 15
    longest = [alone(runner, c, Sampling(max_new_tokens=15))[0] for c in MIXED]
    decode = runner.processor.tokenizer.decode
    stops = set(runner.stop_ids)
    outcomes: list[Any] = [None] * 32
    start = threading.Barrier(32)
    with BatchEngine(runner, max_batch=8, max_waiting=16) as engine:

        def client(i: int) -> None:
            start.wait(10)
            try:
                stream = engine.submit(prompts[i % len(MIXED)], samplings[i])
                pieces, result = drain(stream)
                outcomes[i] = ("".join(pieces), result)
            except BaseException as exc:  # checked below
                outcomes[i] = exc

        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(45)
        assert not any(thread.is_alive() for thread in threads)
    refused = [o for o in outcomes if isinstance(o, QueueFullError)]
    served = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, tuple)]
    assert len(refused) + len(served) == 32  # nothing else went wrong
    assert len(served) >= 16  # max_waiting requests always fit
    for i, (joined, result) in served:
        ids = longest[i % len(MIXED)][: samplings[i].max_new_tokens]
        answer = decode([t for t in ids if t not in stops], skip_special_tokens=True)
        assert result.token_ids == ids and joined == result.text == answer


def test_the_load_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/serve_load.py`` end to end at a tiny size (its figures are not checked)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
    spec = importlib.util.spec_from_file_location("serve_load", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with warnings.catch_warnings():
        code = module.main(["--clients", "4", "--seconds", "0.4", "--tokens", "4"])
    assert code == 0  # every client's requests completed, none refused or failed
    out = capsys.readouterr().out
    assert "| batched, max_batch=4 |" in out and "Peak RSS" in out
