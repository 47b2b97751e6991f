"""Load test of the batching engine: N concurrent streaming clients, batched vs one at a time.

Usage::

    python benchmarks/serve_load.py [--clients 32] [--seconds 12] [--rounds 2] [--tokens 32]
                                    [--family qwen2-vl] [--out docs/performance.md]

Saves the tiny random-weight checkpoint of ``--family`` (``vlprep.testing``: 2 layers,
hidden 32, byte-level tokenizer) and loads it with ``Runner.from_pretrained`` on the CPU
(or ``--device``). ``--clients`` threads each stream requests back to back for
``--seconds`` in all, split over ``--rounds`` rounds that alternate the modes (each
client then finishes the request in flight): a mix of four text prompts of different
lengths and one small image, ``--tokens`` new tokens at most, greedy. The prompts are
prepared once before the clock starts, so the figures are the engine's and the model's,
not preprocessing's. Modes, in one process, one after another, on the same runner:

- ``one at a time``: ``BatchEngine(max_batch=1)``, one request decoded at a time (the
  same worker and streaming code, no batching);
- ``batched, max_batch=8`` (the default) and ``batched, max_batch=N`` (all clients).

For each: generated tokens per second over all clients (and its ratio to one at a time in
each round), requests finished, time to first token (median and p95, the worst round),
429s (``QueueFullError``; ``max_waiting`` is the client count, so there should be none),
errors, and the process's peak RSS. The whole run is bounded by ``--seconds`` per mode
(three modes) plus the checkpoint's save and load: about 45 s by default.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _report  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import vlprep  # noqa: E402
from vlprep.runner import BatchEngine, QueueFullError, Runner, Sampling  # noqa: E402
from vlprep.testing import FAMILIES, save_checkpoint  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/serve_load.py --out docs/performance.md"
QUESTIONS = [
    "Hi",
    "What is the capital of France?",
    "Describe, in as much detail as you can, what a good breakfast looks like.",
    "A much longer question that goes on and on, so that its prompt is the longest one "
    "of the mix, with many more tokens to prefill than the others.",
]


def conversations() -> list[Any]:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (112, 168, 3), dtype=np.uint8))
    out: list[Any] = [
        [{"role": "user", "content": [{"type": "text", "text": q}]}] for q in QUESTIONS
    ]
    content = [{"type": "image", "image": picture}, {"type": "text", "text": "What is this?"}]
    out.append([{"role": "user", "content": content}])
    return out


def run_mode(
    runner: Runner, prompts: list[Any], *, clients: int, seconds: float, tokens: int, max_batch: int
) -> dict[str, Any]:
    """Tokens/s and latencies of ``clients`` streaming threads for ``seconds``."""
    sampling = Sampling(max_new_tokens=tokens)
    generated = [0] * clients
    finished = [0] * clients
    first_token: list[float] = []
    refused = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    with BatchEngine(runner, max_batch=max_batch, max_waiting=clients) as engine:
        deadline = [0.0]

        def client(i: int) -> None:
            start.wait(30)
            n = i
            while time.perf_counter() < deadline[0]:
                try:
                    stream = engine.submit(prompts[n % len(prompts)], sampling)
                    for _ in stream:
                        pass
                except QueueFullError:
                    with lock:
                        refused[0] += 1
                    time.sleep(0.05)
                    continue
                except BaseException as exc:  # counted and reported
                    with lock:
                        errors.append(exc)
                    return
                result = stream.result
                assert result is not None
                generated[i] += result.generated_tokens
                finished[i] += 1
                with lock:
                    first_token.append(result.first_token_s)
                n += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        began = time.perf_counter()
        deadline[0] = began + seconds
        start.wait(30)
        for thread in threads:
            thread.join(seconds + 120)
        wall = time.perf_counter() - began
        hung = sum(thread.is_alive() for thread in threads)
    latencies = sorted(first_token) or [0.0]
    return {
        "tokens_per_s": sum(generated) / wall,
        "tokens": sum(generated),
        "requests": sum(finished),
        "wall_s": wall,
        "ttft_median_ms": 1000 * statistics.median(latencies),
        "ttft_p95_ms": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "refused": refused[0],
        "errors": len(errors) + hung,
    }


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode's rounds together: sums, and the worst round's latencies."""
    wall = sum(r["wall_s"] for r in runs)
    return {
        "tokens_per_s": sum(r["tokens"] for r in runs) / wall,
        "tokens": sum(r["tokens"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "wall_s": wall,
        "ttft_median_ms": max(r["ttft_median_ms"] for r in runs),
        "ttft_p95_ms": max(r["ttft_p95_ms"] for r in runs),
        "refused": sum(r["refused"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=12.0, help="per mode, all rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32, help="max_new_tokens per request")
    parser.add_argument("--family", choices=FAMILIES, default="qwen2-vl")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="write the section into this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_checkpoint(args.family, Path(tmp) / "ckpt")
        runner = Runner.from_pretrained(checkpoint, device=args.device)
    prompts = [runner.prepare(c) for c in conversations()]
    runner.run([conversations()[1]], Sampling(max_new_tokens=args.tokens))  # warm-up
    modes = {
        "one at a time (max_batch=1)": 1,
        "batched, max_batch=8": 8,
        f"batched, max_batch={args.clients}": args.clients,
    }
    # the modes alternate over the rounds (the starting mode rotates), so a change in the
    # machine's load reaches each of them alike; figures are summed over the rounds
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
    names = list(modes)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            row = run_mode(
                runner,
                prompts,
                clients=args.clients,
                seconds=args.seconds / args.rounds,
                tokens=args.tokens,
                max_batch=modes[name],
            )
            runs[name].append(row)
            print(name, {k: round(v, 2) for k, v in row.items()}, flush=True)
    rows = {name: _combine(found) for name, found in runs.items()}
    base = rows[names[0]]["tokens_per_s"]
    per_round = [
        [
            runs[name][r]["tokens_per_s"] / runs[names[0]][r]["tokens_per_s"]
            for r in range(args.rounds)
        ]
        for name in names
    ]
    lines = [
        "| mode | tokens/s (all clients) | vs one at a time (rounds) | requests | TTFT median ms | "
        "TTFT p95 ms | 429s | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for (name, row), ratios in zip(rows.items(), per_round, strict=True):
        spread = ", ".join(f"{x:.1f}" for x in ratios)
        lines.append(
            f"| {name} | {row['tokens_per_s']:.0f} | {row['tokens_per_s'] / base:.1f}x ({spread}) | "
            f"{row['requests']} | {row['ttft_median_ms']:.0f} | {row['ttft_p95_ms']:.0f} | "
            f"{row['refused']} | {row['errors']} |"
        )
    device = runner.device.type
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    elapsed = time.perf_counter() - started
    body = "\n".join(
        [
            f"Environment: {dt.date.today().isoformat()} · {_report.cpu_model()}, {cores} cores"
            f" ({device}, torch threads {__import__('torch').get_num_threads()}) · Python "
            f"{platform.python_version()}, torch {_report.version('torch')}, transformers "
            f"{_report.version('transformers')}, vlprep {vlprep.__version__} · tiny "
            f"random-weight `{args.family}` checkpoint (2 layers, hidden 32), float32, greedy, "
            f"at most {args.tokens} new tokens per request.",
            "",
            f"{args.clients} client threads stream requests back to back for "
            f"{args.seconds:g} s per mode, in {args.rounds} rounds that alternate the modes "
            f"(four text prompts of 1 to 30 words and one 112x168 image, prepared before "
            f"the clock starts; `max_waiting` = clients). TTFT = time to first token from "
            f"`submit`, queueing included.",
            "",
            *lines,
            "",
            f"Peak RSS of the process after all modes: {peak_rss_mib():.0f} MiB. Total run "
            f"{elapsed:.0f} s. Reproduce: `{COMMAND}`",
        ]
    )
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "serve-load", "Batching engine under load (issue 18)", body)
    failed = sum(row["errors"] for row in rows.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
