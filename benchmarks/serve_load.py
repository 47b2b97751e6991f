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

``--http``: the same over loopback HTTP. ``vlprep-serve --model CKPT`` runs as a child
process (one per mode: ``--max-batch 1`` and the default ``--max-batch 8``), and
``--clients`` threads stream chat completions through the official ``openai`` client
(``stream=True``, usage included), preprocessing on the server as in production. Both
servers start first; the clients then load them in alternating rounds. Every request must
complete or get 429; the table counts 429s, 5xx answers and other failures, and each
server's peak RSS (``VmHWM``). About 40 s by default.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import io
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
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
from vlprep.testing import PROCESSOR_FAMILIES, save_checkpoint  # noqa: E402

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


def http_clients(
    base: str, model: str, *, clients: int, seconds: float, tokens: int
) -> dict[str, Any]:
    """``clients`` threads streaming chat completions from ``base`` with the openai client for
    ``seconds`` (each then finishes the request in flight). Importable by the tests."""
    import openai

    picture = io.BytesIO()
    conversations()[-1][0]["content"][0]["image"].save(picture, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()
    bodies: list[Any] = [[{"role": "user", "content": q}] for q in QUESTIONS]
    bodies.append(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ]
    )
    counts = {"tokens": 0, "requests": 0, "refused": 0, "server_errors": 0, "failed": 0}
    first_token: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        api = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        start.wait(60)
        n = i
        try:
            while time.perf_counter() < deadline[0]:
                began = time.perf_counter()
                first = 0.0
                used = 0
                try:
                    chunks = api.chat.completions.create(
                        model=model,
                        messages=bodies[n % len(bodies)],
                        max_tokens=tokens,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                    for chunk in chunks:
                        if chunk.choices and chunk.choices[0].delta.content and not first:
                            first = time.perf_counter() - began
                        if chunk.usage is not None:
                            used = chunk.usage.completion_tokens
                except openai.RateLimitError:
                    with lock:
                        counts["refused"] += 1
                    time.sleep(0.05)
                    continue
                except openai.APIStatusError as exc:
                    with lock:
                        counts["server_errors" if exc.status_code >= 500 else "failed"] += 1
                    continue
                except Exception:  # a broken stream or connection: counted
                    with lock:
                        counts["failed"] += 1
                    continue
                with lock:
                    counts["tokens"] += used
                    counts["requests"] += 1
                    counts["failed"] += int(used == 0)
                    first_token.append(first)
                n += 1
        finally:
            api.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait(60)
    for thread in threads:
        thread.join(seconds + 120)
    wall = time.perf_counter() - began
    counts["failed"] += sum(thread.is_alive() for thread in threads)
    latencies = sorted(first_token) or [0.0]
    return {
        **counts,
        "tokens_per_s": counts["tokens"] / wall,
        "wall_s": wall,
        "ttft_median_ms": 1000 * statistics.median(latencies),
        "ttft_p95_ms": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def serve(checkpoint: Path, *, max_batch: int, max_queue: int, device: str) -> Iterator[Any]:
    """A ``vlprep-serve`` child process with ``--max-batch``; yields ``(base URL, process)``."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "vlprep.cli.serve",
        "--model",
        str(checkpoint),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        device,
        "--max-batch",
        str(max_batch),
        "--max-queue",
        str(max_queue),
        "--log-level",
        "warning",
    ]
    paths = [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)


def _wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=1):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vlprep-serve did not start") from None
            time.sleep(0.1)


def http_main(args: argparse.Namespace) -> int:
    """``--http``: one at a time and batched, each on its own vlprep-serve, both started
    first (in parallel) and then loaded in alternating rounds."""
    started = time.perf_counter()
    modes = {"one at a time (--max-batch 1)": 1, "batched (--max-batch 8, the default)": 8}
    names = list(modes)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        checkpoint = save_checkpoint(args.family, Path(tmp) / "ckpt")
        servers = {
            name: stack.enter_context(
                serve(checkpoint, max_batch=n, max_queue=args.clients, device=args.device)
            )
            for name, n in modes.items()
        }
        for base, server in servers.values():
            _wait_healthy(base, server)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                base, server = servers[name]
                row = http_clients(
                    base,
                    checkpoint.name,
                    clients=args.clients,
                    seconds=args.seconds / args.rounds,
                    tokens=args.tokens,
                )
                runs[name].append(row)
                print(name, {k: round(v, 2) for k, v in row.items()}, flush=True)
        rows = {}
        for name, (_, server) in servers.items():
            rows[name] = _combine(runs[name])
            rows[name]["server_errors"] = sum(r["server_errors"] for r in runs[name])
            rows[name]["failed"] = sum(r["failed"] for r in runs[name])
            rows[name]["server_rss_mib"] = _peak_rss_mib(server.pid)
    base = rows[names[0]]["tokens_per_s"]
    ratios = {
        name: ", ".join(
            f"{runs[name][r]['tokens_per_s'] / runs[names[0]][r]['tokens_per_s']:.1f}"
            for r in range(args.rounds)
        )
        for name in names
    }
    lines = [
        "| server | tokens/s (all clients) | vs one at a time (rounds) | requests | TTFT median ms | "
        "TTFT p95 ms | 429s | 5xx | other failures | server peak RSS MiB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['tokens_per_s']:.0f} | {row['tokens_per_s'] / base:.1f}x "
            f"({ratios[name]}) | {row['requests']} | {row['ttft_median_ms']:.0f} | "
            f"{row['ttft_p95_ms']:.0f} | {row['refused']} | {row['server_errors']} | {row['failed']} | "
            f"{row['server_rss_mib']:.0f} |"
        )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    body = "\n".join(
        [
            f"Environment: {dt.date.today().isoformat()} · {_report.cpu_model()}, {cores} cores "
            f"shared by the server and the clients · Python {platform.python_version()}, torch "
            f"{_report.version('torch')}, transformers {_report.version('transformers')}, "
            f"openai {_report.version('openai')}, uvicorn {_report.version('uvicorn')}, vlprep "
            f"{vlprep.__version__} · tiny random-weight `{args.family}` checkpoint, "
            f"{args.device}, float32, greedy, `max_tokens` {args.tokens}.",
            "",
            f"`vlprep-serve --model CKPT` as a child process per row (both started first, "
            f"then loaded in {args.rounds} alternating rounds); {args.clients} threads each "
            f"stream chat completions back to back through the `openai` client for "
            f"{args.seconds:g} s per server (four text prompts and one 112x168 PNG as a `data:` URI, "
            f"preprocessed by the server; `--max-queue` = clients). TTFT = request sent to "
            f"the first text chunk.",
            "",
            *lines,
            "",
            f"Total run {time.perf_counter() - started:.0f} s. Reproduce: `{COMMAND} --http`",
        ]
    )
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "serve-http", "vlprep-serve under load (issue 18)", body)
    bad = sum(row["server_errors"] + row["failed"] for row in rows.values())
    return 1 if bad else 0


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
        "errors": sum(r.get("errors", 0) for r in runs),
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=12.0, help="per mode, all rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32, help="max_new_tokens per request")
    parser.add_argument("--family", choices=PROCESSOR_FAMILIES, default="qwen2-vl")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="write the section into this file")
    parser.add_argument("--http", action="store_true", help="through vlprep-serve and openai")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.http:
        return http_main(args)
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
