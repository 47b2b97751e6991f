"""vlprep-inspect benchmark: header-only estimates vs decoding every image with Pillow.

Usage::

    python benchmarks/inspect_headers.py [--count 2000] [--workers 2] [--repeat 3] [--out docs/performance.md]

Generates (once, cached under ``benchmarks/out/inspect/``) ``--count`` JPEGs of mixed
sizes, 1 to 12 megapixels, with a cheap synthetic pattern (a smooth colour field plus a
tiled noise texture, quality 85, fixed seed). Then, in one process: every file is read
once to warm the page cache, ``vlprep-inspect`` runs on the folder in-process (its
``main()`` with ``--format json --workers N``, output to a buffer: the folder walk,
header reads, estimates and the JSON rendering are all timed), and the same files are
decoded with ``Image.open(p).convert("RGB")`` on a thread pool of the same size. Both
are timed with ``time.perf_counter``, ``--repeat`` alternating rounds, median reported.
The estimate's original sizes are checked against the decoded sizes.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# This file shares its name with the standard library's ``inspect``: keep its folder
# behind the standard library on sys.path, or ``import inspect`` (torch, dataclasses...)
# would load this script instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

import argparse
import datetime as dt
import functools
import io
import json
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import _report
import numpy as np
from _report import cpu_model, version
from PIL import Image

import vlprep
from vlprep.cli.inspect import main as inspect_main

OUT = HERE / "out" / "inspect"
CANVAS = 4620  # fits 12 MP at every aspect ratio used (4619 x 2598 for 16:9)
ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3, 9 / 16)
TARGET = 20.0
COMMAND = ".venv/bin/python benchmarks/inspect_headers.py --out docs/performance.md"


def sizes(count: int, seed: int = 0) -> list[tuple[int, int]]:
    """``(width, height)`` of each image: area uniform in [1, 12] MP, mixed aspect ratios."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pixels = rng.uniform(1e6, 12e6)
        aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
        width = round((pixels * aspect) ** 0.5)
        out.append((width, max(1, round(pixels / width))))
    return out


@functools.cache
def _canvas() -> Image.Image:
    rng = np.random.default_rng(1)
    y = np.linspace(0, 1, CANVAS, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, CANVAS, dtype=np.float32)[None, :]
    base = np.empty((CANVAS, CANVAS, 3), np.int16)
    base[..., 0] = 127 + 100 * np.sin(x * 9 + y * 3)
    base[..., 1] = 127 + 100 * np.cos(y * 7 - x * 2)
    base[..., 2] = 255 * (x + y) / 2
    noise = rng.integers(-8, 9, size=(512, 512, 3), dtype=np.int16)
    reps = CANVAS // 512 + 1
    base += np.tile(noise, (reps, reps, 1))[:CANVAS, :CANVAS]
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _write(job: tuple[Path, int, int, int]) -> None:
    path, width, height, index = job
    canvas = _canvas()
    left, top = (index * 37) % (CANVAS - width + 1), (index * 53) % (CANVAS - height + 1)
    buf = io.BytesIO()
    canvas.crop((left, top, left + width, top + height)).save(buf, "JPEG", quality=85)
    path.write_bytes(buf.getvalue())


def generate(count: int, folder: Path, processes: int) -> list[Path]:
    """The cached image set for ``count`` (regenerated when the manifest differs)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    wanted = sizes(count)
    paths = [folder / f"img_{i:05d}.jpg" for i in range(count)]
    cached = manifest.exists() and json.loads(manifest.read_text()) == [list(s) for s in wanted]
    if cached and all(p.exists() for p in paths):
        return paths
    for old in folder.glob("img_*.jpg"):
        old.unlink()
    jobs = [(p, w, h, i) for i, (p, (w, h)) in enumerate(zip(paths, wanted, strict=True))]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=processes) as pool:
        for done, _ in enumerate(pool.map(_write, jobs, chunksize=8), start=1):
            if done % 100 == 0:
                print(f"generated {done}/{count}", file=sys.stderr, flush=True)
    manifest.write_text(json.dumps(wanted))
    print(f"generated {count} images in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return paths


def run_inspect(folder: Path, workers: int) -> tuple[float, dict[str, tuple[int, int]]]:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    code = inspect_main(
        [str(folder), "--format", "json", "--workers", str(workers)], stdout=out, stderr=err
    )
    took = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"vlprep-inspect failed ({code}): {err.getvalue()[:2000]}")
    items = json.loads(out.getvalue())["items"]
    return took, {r["source"]: (r["original_width"], r["original_height"]) for r in items}


def _decode(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.convert("RGB").size


def run_pillow(paths: list[Path], workers: int) -> tuple[float, dict[str, tuple[int, int]]]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = list(pool.map(_decode, paths))
    took = time.perf_counter() - start
    return took, {str(p): s for p, s in zip(paths, decoded, strict=True)}


def render(
    count: int,
    workers: int,
    repeat: int,
    times: tuple[list[float], list[float]],
    megapixels: float,
    data_bytes: int,
    agree: bool,
) -> str:
    """The Markdown section: environment, method, timings, ratio, how to reproduce."""
    ins, pil = times
    ratio = statistics.median(pil) / statistics.median(ins)
    verdict = "met" if ratio >= TARGET else "**NOT met**"
    env = (
        f"{dt.date.today().isoformat()} · Python {platform.python_version()}, "
        f"Pillow {version('Pillow')}, numpy {version('numpy')}, vlprep {vlprep.__version__} · "
        f"{cpu_model()}, {os.cpu_count()} cores visible, CPU only"
    )

    def per(times: list[float]) -> str:
        median = statistics.median(times)
        return f"{median:.2f} s ({median / count * 1e3:.2f} ms/image)"

    return "\n".join(
        [
            f"Environment: {env}",
            "",
            f"Method: {count} generated JPEGs (1-12 MP, mixed aspect ratios, {megapixels:,.0f} MP "
            f"and {data_bytes / 2**20:,.0f} MiB in all; a smooth colour field plus tiled noise, "
            "quality 85, fixed seed; cached under `benchmarks/out/inspect/`). All files are read "
            "once first so both sides run from the page cache. **vlprep-inspect** runs in-process "
            f"(`vlprep.cli.inspect.main([folder, '--format', 'json', '--workers', '{workers}'])`, "
            "output into a buffer): folder walk, header reads (first 64 KiB), estimates "
            "and JSON output. **Pillow decode** runs `Image.open(p).convert('RGB')` on every "
            f"file on a thread pool of {workers} workers. Wall time by `time.perf_counter`, "
            f"median of {repeat} alternating round(s).",
            "",
            "| method | wall time |",
            "|---|--:|",
            f"| vlprep-inspect (header only) | {per(ins)} |",
            f"| Pillow decode | {per(pil)} |",
            "",
            "Every round (s): vlprep-inspect "
            + ", ".join(f"{t:.2f}" for t in ins)
            + "; Pillow "
            + ", ".join(f"{t:.1f}" for t in pil)
            + " (a shared 2-core VM: read the ratio, not the absolute times).",
            "",
            f"Speed-up: **{ratio:.1f}x** (target >= {TARGET:g}x: {verdict}). "
            f"Estimated original sizes equal the decoded sizes for every image: "
            f"{'yes' if agree else 'NO'}.",
            "",
            "Reproduce:",
            "",
            "```",
            COMMAND
            + (f" --count {count}" if count != 2000 else "")
            + (f" --workers {workers}" if workers != 2 else "")
            + (f" --repeat {repeat}" if repeat != 3 else ""),
            "```",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=2000, help="images (default 2000)")
    parser.add_argument("--workers", type=int, default=2, help="threads for both methods")
    parser.add_argument("--repeat", type=int, default=3, help="alternating timed rounds")
    parser.add_argument("--out", type=Path, help="Markdown file whose inspect section to replace")
    args = parser.parse_args(argv)
    if args.count < 1 or args.workers < 1 or args.repeat < 1:
        parser.error("--count, --workers and --repeat must be >= 1")
    folder = OUT / f"n{args.count}"
    paths = generate(args.count, folder, processes=max(1, os.cpu_count() or 1))
    data_bytes = sum(len(p.read_bytes()) for p in paths)  # warms the page cache
    megapixels = sum(w * h for w, h in sizes(args.count)) / 1e6
    ins: list[float] = []
    pil: list[float] = []
    agree = True
    for _ in range(args.repeat):
        took, estimated = run_inspect(folder, args.workers)
        ins.append(took)
        print(f"vlprep-inspect: {took:.2f} s", file=sys.stderr, flush=True)
        took, decoded = run_pillow(paths, args.workers)
        pil.append(took)
        print(f"Pillow decode: {took:.2f} s", file=sys.stderr, flush=True)
        agree = agree and estimated == decoded
    body = render(args.count, args.workers, args.repeat, (ins, pil), megapixels, data_bytes, agree)
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "inspect", "vlprep-inspect", body)
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
