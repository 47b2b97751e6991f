"""vlprep.fit benchmark: fitting a 50-photo + 2-video chat from headers vs decoding it.

Usage::

    python benchmarks/fit.py [--photos 50] [--budget 32768] [--repeat 3] [--out docs/performance.md]

Generates (once, cached under ``benchmarks/out/fit/``) ``--photos`` photo-like JPEGs of
phone-camera sizes (4032x3024, 3024x4032, 4000x3000, 1920x1080, quality 90, fixed seed)
and reuses the 720p30 30 s and 1080p60 10 s clips of the video benchmark. The chat has one
photo per user turn with a line of text, an assistant reply per turn, and the two clips in
the last turn. Timed, in one process, alternating rounds, median of ``--repeat``:

- **fit**: ``vlprep.fit(chat, budget, processor=...)`` (Qwen2.5-VL offline processor from
  ``vlprep.testing``): every header and container index read, text tokenised, solved.
- **decode + resize**: ``vlprep.process_vision_info`` of the fitted chat (every photo
  decoded and resized to its fitted size, the clips' sampled frames decoded and resized),
  ``workers=2``: what loading that conversation costs once the sizes are known.

Files are read once first (page cache warm). Targets (issue 17): the fit under 5% of the
decode, and under 50 ms for 50 items.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import _report
import numpy as np
from _media import make_photo
from _report import cpu_model, version
from _video_media import CLIPS, ensure_clips

import vlprep
from vlprep.testing import make_processor

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "fit"
SIZES = ((4032, 3024), (3024, 4032), (4000, 3000), (1920, 1080))
COMMAND = ".venv/bin/python benchmarks/fit.py --out docs/performance.md"


def photos(count: int) -> list[Path]:
    """``count`` cached JPEGs (generated once: a few distinct pictures, re-saved per name)."""
    OUT.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        path = OUT / f"photo_{i:03d}_{width}x{height}.jpg"
        if not path.exists():
            rng = np.random.default_rng(i)
            make_photo(width, height, rng).save(path, quality=90)
        paths.append(path)
    return paths


def chat(images: list[Path], clips: list[Path]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, path in enumerate(images):
        content = [
            {"type": "image", "image": str(path)},
            {"type": "text", "text": f"Photo {i + 1}: what changed since the last one?"},
        ]
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": "The light moved to the left."})
    videos: list[dict[str, Any]] = [{"type": "video", "video": str(c)} for c in clips]
    messages.append(
        {"role": "user", "content": [*videos, {"type": "text", "text": "And in these clips?"}]}
    )
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument("--budget", type=int, default=32768)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    images = photos(args.photos)
    clip_paths = ensure_clips(HERE / "out" / "video", (CLIPS[0], CLIPS[2]))
    clips = [clip_paths[CLIPS[0].key], clip_paths[CLIPS[2].key]]
    for path in [*images, *clips]:
        path.read_bytes()  # warm the page cache
    conversation = chat(images, clips)
    processor = make_processor("qwen2.5-vl")
    (result,) = vlprep.fit(conversation, args.budget, processor=processor)
    fitted = result.apply(conversation)
    built = vlprep.build_inputs(fitted, processor)["input_ids"].shape[1]
    if built != result.total or result.total > args.budget:
        raise SystemExit(f"fit total {result.total} != build_inputs length {built}")

    def fit_once() -> object:
        return vlprep.fit(conversation, args.budget, processor=processor)

    def decode_once() -> object:
        return vlprep.process_vision_info(fitted, workers=2)

    fit_once()
    times = _report.round_robin({"fit": fit_once, "decode": decode_once}, args.repeat)
    fit_s = statistics.median(times["fit"])
    decode_s = statistics.median(times["decode"])
    items = len(result.items)
    shrunk = len(result.shrunk)
    body = "\n".join(
        [
            f"Measured {dt.date.today().isoformat()} on {cpu_model()} "
            f"({os.cpu_count()} CPUs), Python {platform.python_version()}, "
            f"vlprep {vlprep.__version__}, Pillow {version('pillow')}, PyAV {version('av')}; "
            f"command: `{COMMAND}` (median of {args.repeat} alternating rounds).",
            "",
            f"A chat of {args.photos} phone-size JPEG photos (one per turn) and 2 clips "
            f"(720p30 30 s, 1080p60 10 s), Qwen2.5-VL, fitted into {args.budget:,} tokens: "
            f"{result.total_before:,} tokens unfitted, {result.total:,} fitted "
            f"({shrunk} of {items} items shrunk; equal to `build_inputs`' `input_ids` length).",
            "",
            "| step | median | share of decode |",
            "|---|---:|---:|",
            f"| `vlprep.fit` (headers, container index, text) | {fit_s * 1000:.1f} ms | "
            f"{fit_s / decode_s:.1%} |",
            f"| decode + resize the fitted chat (`process_vision_info`, 2 workers) | "
            f"{decode_s * 1000:.0f} ms | 100% |",
            "",
            f"Targets: fit under 5% of the decode ({fit_s / decode_s:.1%}), under 50 ms for "
            f"50 items ({fit_s * 1000:.1f} ms for {items}).",
        ]
    )
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "fit", "Token-budget fit (vlprep.fit)", body)


if __name__ == "__main__":
    main()
