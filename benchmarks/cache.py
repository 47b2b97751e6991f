"""Media-cache benchmark: a multi-turn chat that resends the same 12 MP JPEG every turn.

Usage::

    python benchmarks/cache.py [--turns N] [--repeat N] [--threads N] [--out docs/performance.md]

A chat server calls ``vlprep.build_inputs`` once per turn with the whole conversation so
far; here every user turn attaches the same photo (as clients that resend the image do),
so turn ``k`` carries ``k`` copies and a chat of ``N`` turns loads ``N (N + 1) / 2``
images. Timed: the ``N`` calls of one chat, without a cache and with a fresh
``vlprep.MediaCache`` shared by the chat's turns (its first turn decodes; the rest hit).
Patchifying and tokenising run on every call either way: the cache skips decode and resize
only, and the file is still read and hashed each time. The same chat through
``vlprep.process_vision_info`` times the loading alone.

Offline Qwen2-VL processor (``tests/hf_fixtures.py``, hub pixel bounds 3,136 ..
12,845,056: a 4032x3024 photo keeps its size). One warm-up chat per method, then
``--repeat`` chats per method alternating (default 5); wall time of the whole chat and of
its last turn; ratios = uncached / cached (> 1: the cache is faster).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _report  # noqa: E402
from _media import make_photo  # noqa: E402
from images import keep_freed_memory  # noqa: E402

import vlprep  # noqa: E402
from tests.hf_fixtures import load_processor  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/cache.py --out docs/performance.md"


def chat(turns: int, image: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The conversation as sent at each turn: turn ``k`` has ``k`` user turns with the image."""
    messages: list[dict[str, Any]] = []
    sent = []
    for turn in range(turns):
        messages.append(
            {"role": "user", "content": [dict(image), {"type": "text", "text": f"Q{turn}?"}]}
        )
        sent.append(list(messages))
        messages.append({"role": "assistant", "content": f"Answer {turn}: a photo."})
    return sent


Call = Callable[[list[dict[str, Any]], "vlprep.MediaCache | None"], Any]


def build_call(processor: Any) -> Call:
    return lambda conversation, cache: vlprep.build_inputs(conversation, processor, cache=cache)


def vision_call(conversation: list[dict[str, Any]], cache: vlprep.MediaCache | None) -> Any:
    return vlprep.process_vision_info(conversation, cache=cache)


def run_chat(
    turns: list[list[dict[str, Any]]], call: Call, cache: vlprep.MediaCache | None
) -> tuple[list[float], list[Any]]:
    times, outputs = [], []
    for conversation in turns:
        start = time.perf_counter()
        outputs.append(call(conversation, cache))
        times.append(time.perf_counter() - start)
    return times, outputs


def same_output(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):  # process_vision_info: (images, videos)
        return all(x.tobytes() == y.tobytes() for x, y in zip(a[0], b[0], strict=True))
    return sorted(a.keys()) == sorted(b.keys()) and all(torch.equal(a[k], b[k]) for k in a)


def same_outputs(a: list[Any], b: list[Any]) -> bool:
    return all(same_output(x, y) for x, y in zip(a, b, strict=True))


def measure(
    label: str, image: dict[str, Any], call: Call, turns: int, repeat: int
) -> dict[str, Any]:
    sent = chat(turns, image)
    caches: list[vlprep.MediaCache] = []

    def cached() -> tuple[list[float], list[Any]]:
        caches.append(vlprep.MediaCache())
        return run_chat(sent, call, caches[-1])

    methods: dict[str, Callable[[], tuple[list[float], list[Any]]]] = {
        "uncached": lambda: run_chat(sent, call, None),
        "cached": cached,
    }
    warm = {name: method()[1] for name, method in methods.items()}
    identical = same_outputs(warm["uncached"], warm["cached"])
    del warm
    totals: dict[str, list[float]] = {n: [] for n in methods}
    last: dict[str, list[float]] = {n: [] for n in methods}
    gc.collect()
    gc.disable()
    try:
        for r in range(repeat):
            names = list(methods) if r % 2 == 0 else list(reversed(methods))
            for name in names:
                times, _ = methods[name]()
                totals[name].append(sum(times))
                last[name].append(times[-1])
    finally:
        gc.enable()
    stats = caches[-1].stats
    return {
        "label": label,
        "totals": totals,
        "last": last,
        "identical": identical,
        "stats": stats,
        "images": turns * (turns + 1) // 2,
    }


def render(
    rows: list[dict[str, Any]], turns: int, repeat: int, threads: int, reuse: bool, elapsed: float
) -> str:
    versions = ", ".join(f"{d} {_report.version(d)}" for d in ("Pillow", "numpy", "torch"))
    env = (
        f"{dt.date.today().isoformat()} · Python {platform.python_version()}, {versions}, "
        f"vlprep {vlprep.__version__} · {_report.cpu_model()}, {os.cpu_count()} cores "
        f"visible, CPU only, torch threads {threads}, build_inputs workers default "
        f"({min(4, os.cpu_count() or 1)}), allocator: "
        + ("glibc keeps freed memory (mallopt)" if reuse else "system default")
    )

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e3:,.0f} ({min(values) * 1e3:,.0f})"

    lines = [
        "| input | images loaded | chat uncached ms | chat cached ms | chat: uncached / cached "
        f"| turn {turns} uncached ms | turn {turns} cached ms | turn {turns}: uncached / cached "
        "| cache after the chat | outputs identical |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|:-:|",
    ]
    for row in rows:
        t, last, s = row["totals"], row["last"], row["stats"]
        ratio = statistics.median(t["uncached"]) / statistics.median(t["cached"])
        last_ratio = statistics.median(last["uncached"]) / statistics.median(last["cached"])
        lines.append(
            f"| {row['label']} | {row['images']} | {ms(t['uncached'])} | {ms(t['cached'])} "
            f"| {ratio:.2f}x | {ms(last['uncached'])} | {ms(last['cached'])} "
            f"| {last_ratio:.2f}x | {s.misses} miss, {s.hits} hits, "
            f"{s.current_bytes / 2**20:.1f} MiB | {'yes' if row['identical'] else '**no**'} |"
        )
    return "\n".join(
        [
            f"Environment: {env}",
            "",
            f"A {turns}-turn chat whose every user turn attaches the same 12 MP JPEG "
            "(4032x3024, 2.5 MiB, the photo of the image benchmark); `build_inputs` is called "
            "once per turn with the conversation so far, so the last turn carries "
            f"{turns} copies. Uncached = `build_inputs(conversation, processor)` (Qwen2-VL "
            "hub bounds: the photo keeps its size unless `max_pixels` is set), or "
            "`process_vision_info(conversation)` to time the loading alone; cached = the "
            "same with `cache=` a `MediaCache()` shared by the chat's turns. "
            f"Milliseconds, median (min) of {repeat} chat(s) per method after one warm-up chat; "
            "ratios = uncached / cached (> 1: the cache is faster). Outputs compared key by "
            "key (`torch.equal`) on the warm-up chat.",
            "",
            *lines,
            "",
            f"Total run {elapsed:.1f} s. Reproduce: `{COMMAND}`",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, help="Markdown file whose cache section to replace")
    parser.add_argument(
        "--system-malloc", action="store_true", help="keep glibc's default allocator"
    )
    args = parser.parse_args(argv)
    if args.turns < 1 or args.repeat < 1 or args.threads < 1:
        parser.error("--turns, --repeat and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    reuse = not args.system_malloc and keep_freed_memory()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vlprep-cache-") as tmp:
        path = Path(tmp) / "photo_12mp.jpg"
        # The first MEDIA entry of _media.write_media(seed=0): the same bytes.
        make_photo(4032, 3024, np.random.default_rng(0)).save(path, "JPEG", quality=90)
        processor = load_processor("qwen2-vl", Path(tmp) / "processors", backend="pil")
        image = {"type": "image", "image": str(path)}
        budget = {**image, "max_pixels": 1280 * 28 * 28}
        rows = []
        for what, call in (
            ("build_inputs", build_call(processor)),
            ("process_vision_info (loading only)", vision_call),
        ):
            for size, element in (
                ("12 MP JPEG 4032x3024 (kept at full size)", image),
                ("12 MP JPEG, max_pixels=1280·28² (resized to 1148x840)", budget),
            ):
                label = f"{what}: {size}"
                rows.append(measure(label, element, call, args.turns, args.repeat))
                print(f"done: {label}", file=sys.stderr, flush=True)
    body = render(rows, args.turns, args.repeat, args.threads, reuse, time.perf_counter() - started)
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "cache", "Media cache (multi-turn chat)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
