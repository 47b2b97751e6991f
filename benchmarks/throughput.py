"""Throughput benchmark (issue 8): fast image mode, its floor, batch workers, time vs size.

Usage::

    python benchmarks/throughput.py [--repeat N] [--out docs/performance.md]
                                    [--plots docs/images] [--quick]

One process, one run, every pipeline on the same generated JPEGs (fixed seed):

* **12 MP JPEG at a 1280-token budget** (``max_pixels = 1280·28²``; Qwen2-VL preset, so
  ``pixel_values`` + ``image_grid_thw`` from the file path):
  ``qwen + HF PIL`` / ``qwen + HF torchvision`` = qwen-vl-utils ``fetch_image`` then
  transformers' Qwen2-VL image processor (``do_resize=False``), each backend;
  ``vlprep exact`` = ``fetch_image`` + ``patchify_images``; ``vlprep fast`` = the same with
  ``ImageOptions(decode="fast")``. The **floor** is the fast mode's three steps timed
  separately on prepared inputs: reduced-scale decode (Pillow ``draft`` + ``load``), the
  uint8 resize (``vlprep._tensors.resize_uint8`` on the decoded array) and the patchify
  (``patchify_images`` on the resized array); their medians are summed.
* **A batch of 16 local 12 MP JPEGs** (same budget) through ``process_vision_info`` with
  ``workers=1`` and ``workers=2``, exact and fast.
* **Time per image versus image size** (0.3 to 24 MP, same budget) for each pipeline,
  plotted to ``--plots`` as PNG.
* **Fast-mode deviation** from exact mode (PSNR, max level difference) on the shared
  photos and generated media.

Timing: ``time.perf_counter``; one warm-up call per method and input, then ``--repeat``
round-robin rounds (start rotated each round, garbage collector off); median (min) in ms.
``torch`` runs one thread, like Pillow (single-threaded decode and resize), except in the
batch rows, where ``workers`` threads each run single-threaded work.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from qwen_vl_utils import fetch_image as qwen_fetch_image

import vlprep
from vlprep import ImageOptions
from vlprep._image import fetch_image
from vlprep._tensors import patchify_images, resize_uint8

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _report
from _media import make_photo
from images import _hf_processors, environment_line, keep_freed_memory

COMMAND = ".venv/bin/python benchmarks/throughput.py --out docs/performance.md --plots docs/images"
BUDGET = 1280 * 28 * 28
PATCH = 14
FAST = ImageOptions(decode="fast")
PRESET = vlprep.get_preset("qwen2-vl")
SHARED = Path(__file__).resolve().parents[1] / "tests" / "media" / "images"  # bundled copies
SIZES = [  # (width, height): 4:3 photos from 0.3 to 24 MP
    (640, 480),
    (1280, 960),
    (2048, 1536),
    (2592, 1944),
    (3264, 2448),
    (4032, 3024),
    (5664, 4248),
]
REFERENCES = ("qwen + HF PIL", "qwen + HF torchvision")
Method = Callable[[], Any]


# --------------------------------------------------------------------------- pipelines


def pipelines(path: Path) -> dict[str, Method]:
    """The four pipelines for one file, each producing ``pixel_values`` + grid."""
    ele = {"image": str(path), "max_pixels": BUDGET}
    processors = _hf_processors()

    def reference(backend: str) -> Method:
        processor = processors[backend]

        def run() -> Any:
            image = qwen_fetch_image(dict(ele), image_patch_size=PATCH)
            out = processor(images=[image], do_resize=False, return_tensors="pt")
            return out["pixel_values"], out["image_grid_thw"]

        return run

    def ours(options: ImageOptions) -> Method:
        return lambda: patchify_images([fetch_image(dict(ele), PATCH, options=options)], PRESET)

    return {
        "qwen + HF PIL": reference("pil"),
        "qwen + HF torchvision": reference("torchvision"),
        "vlprep exact": ours(ImageOptions()),
        "vlprep fast": ours(FAST),
    }


def floor_steps(path: Path) -> dict[str, Method]:
    """The fast mode's steps, each on inputs prepared beforehand."""
    data = path.read_bytes()
    with Image.open(path) as probe:
        target = vlprep.smart_resize(
            probe.height, probe.width, factor=2 * PATCH, min_pixels=4 * 28 * 28, max_pixels=BUDGET
        )

    def decode() -> np.ndarray:
        image = Image.open(io.BytesIO(data))
        image.draft(None, (target[1], target[0]))
        image.load()
        return np.asarray(image)

    decoded = np.array(decode())
    resized = resize_uint8(decoded, *target)
    return {
        "floor: reduced decode": decode,
        "floor: uint8 resize": lambda: resize_uint8(decoded, *target),
        "floor: patchify": lambda: patchify_images([resized], PRESET),
    }


# --------------------------------------------------------------------------- timing


def time_rounds(methods: Mapping[str, Method], repeat: int) -> dict[str, list[float]]:
    """One warm-up call each, then ``repeat`` round-robin rounds; seconds per call."""
    for method in methods.values():
        method()
    return _report.round_robin(methods, repeat)


def med(values: list[float]) -> float:
    return statistics.median(values)


def ms(values: list[float]) -> str:
    return f"{med(values) * 1e3:.1f} ({min(values) * 1e3:.1f})"


# --------------------------------------------------------------------------- sections


def single_image(path: Path, repeat: int) -> tuple[str, dict[str, float]]:
    methods = {**pipelines(path), **floor_steps(path)}
    times = time_rounds(methods, repeat)
    floor = sum(med(times[n]) for n in times if n.startswith("floor:"))
    fastest_ref = min(REFERENCES, key=lambda n: med(times[n]))
    fast = med(times["vlprep fast"])
    figures = {
        "fast_vs_ref": med(times[fastest_ref]) / fast,
        "fast_vs_floor": fast / floor,
        "exact_vs_ref": med(times[fastest_ref]) / med(times["vlprep exact"]),
    }
    rows = ["| step or pipeline | ms, median (min) |", "|---|--:|"]
    rows += [f"| {name} | {ms(values)} |" for name, values in times.items()]
    rows.append(f"| floor (sum of the three step medians) | {floor * 1e3:.1f} |")
    text = "\n".join(
        [
            *rows,
            "",
            f"- fast mode vs the fastest reference ({fastest_ref}): "
            f"**{figures['fast_vs_ref']:.2f}x** faster (target >= 2.5x)",
            f"- fast mode / floor: **{figures['fast_vs_floor']:.2f}** (target <= 1.3)",
            f"- exact mode vs the fastest reference: {figures['exact_vs_ref']:.2f}x",
        ]
    )
    return text, figures


def batch(paths: list[Path], repeat: int) -> tuple[str, dict[str, float]]:
    chat = [
        {
            "role": "user",
            "content": [{"image": str(p), "max_pixels": BUDGET} for p in paths]
            + [{"type": "text", "text": "describe"}],
        }
    ]

    def run(workers: int, options: ImageOptions) -> Method:
        return lambda: vlprep.process_vision_info(chat, options=options, workers=workers)

    methods = {
        "exact, workers=1": run(1, ImageOptions()),
        "exact, workers=2": run(2, ImageOptions()),
        "fast, workers=1": run(1, FAST),
        "fast, workers=2": run(2, FAST),
    }
    times = time_rounds(methods, repeat)
    figures = {
        mode: med(times[f"{mode}, workers=1"]) / med(times[f"{mode}, workers=2"])
        for mode in ("exact", "fast")
    }
    rows = ["| mode, workers | s per batch of 16, median (min) | ms per image |", "|---|--:|--:|"]
    for name, values in times.items():
        rows.append(
            f"| {name} | {med(values):.3f} ({min(values):.3f}) | {med(values) / 16 * 1e3:.1f} |"
        )
    text = "\n".join(
        [
            *rows,
            "",
            f"- 2 workers vs 1: exact **{figures['exact']:.2f}x**, fast **{figures['fast']:.2f}x** "
            "(target >= 1.7x)",
        ]
    )
    return text, figures


def sweep(directory: Path, repeat: int) -> tuple[str, dict[str, dict[str, float]]]:
    """Median ms per image for each pipeline and size."""
    rng = np.random.default_rng(7)
    results: dict[str, dict[str, float]] = {}
    for width, height in SIZES:
        path = directory / f"sweep_{width}x{height}.jpg"
        make_photo(width, height, rng).save(path, "JPEG", quality=90)
        times = time_rounds(pipelines(path), repeat)
        label = f"{width}x{height}"
        results[label] = {name: med(values) * 1e3 for name, values in times.items()}
        print(f"done: sweep {label}", file=sys.stderr, flush=True)
    names = list(next(iter(results.values())))
    rows = [
        "| source | MP | " + " | ".join(names) + " | fast vs fastest reference |",
        "|---|--:|" + "--:|" * (len(names) + 1),
    ]
    for label, row in results.items():
        w, h = (int(v) for v in label.split("x"))
        best = min(row[n] for n in REFERENCES)
        cells = " | ".join(f"{row[n]:.1f}" for n in names)
        rows.append(f"| {label} | {w * h / 1e6:.1f} | {cells} | {best / row['vlprep fast']:.2f}x |")
    return "\n".join(rows), results


def plot(results: Mapping[str, Mapping[str, float]], directory: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mp = [int(k.split("x")[0]) * int(k.split("x")[1]) / 1e6 for k in results]
    names = list(next(iter(results.values())))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in names:
        left.plot(mp, [results[k][name] for k in results], marker="o", label=name)
    left.set_xlabel("source size (megapixels, JPEG q90)")
    left.set_ylabel("ms per image (median, 1 thread)")
    left.set_title("file -> pixel_values at a 1280-token budget")
    left.grid(alpha=0.3)
    left.legend()
    for name in ("vlprep exact", "vlprep fast"):
        ratio = [min(results[k][r] for r in REFERENCES) / results[k][name] for k in results]
        right.plot(mp, ratio, marker="o", label=name)
    right.axhline(1.0, color="grey", lw=0.8)
    right.set_xlabel("source size (megapixels)")
    right.set_ylabel("speed-up vs the fastest reference")
    right.set_title("qwen-vl-utils + transformers (best backend) / vlprep")
    right.grid(alpha=0.3)
    right.legend()
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "throughput_time_vs_size.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def psnr_and_max(a: Image.Image, b: Image.Image) -> tuple[float, int]:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff**2))
    return (float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)), int(np.abs(diff).max())


def deviation(generated: Mapping[str, Path]) -> str:
    """Fast vs exact on shared photos and generated JPEGs, at two budgets."""
    rows = [
        "| input | source | budget | resized | PSNR dB | max level diff |",
        "|---|--:|---|--:|--:|--:|",
    ]
    shared = [
        SHARED / n
        for n in (
            "flower2.jpg",
            "hopper.jpg",
            "hopper_orientation_6.jpg",
            "sugarshack.mpo",
            "pil_sample_cmyk.jpg",
            "flower.webp",
            "hopper.png",
        )
    ]
    inputs = [(p.name, p) for p in shared if p.is_file()] + list(generated.items())
    for name, path in inputs:
        with Image.open(path) as probe:
            size = f"{probe.width}x{probe.height}"
        for budget_name, budget in (("1280 tokens", BUDGET), ("64 tokens", 64 * 28 * 28)):
            ele = {"image": str(path), "max_pixels": budget}
            exact = fetch_image(ele, PATCH)
            fast = fetch_image(ele, PATCH, options=FAST)
            value, worst = psnr_and_max(fast, exact)
            rows.append(
                f"| {name} | {size} | {budget_name} | {exact.width}x{exact.height} "
                f"| {value:.1f} | {worst} |"
            )
    return "\n".join(rows)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per method")
    parser.add_argument(
        "--out", type=Path, help="Markdown file whose throughput section to replace"
    )
    parser.add_argument("--plots", type=Path, help="folder for the PNG plot")
    parser.add_argument("--quick", action="store_true", help="3 rounds, smaller sweep")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    torch.set_num_threads(1)
    allocator = "glibc keeps freed memory (mallopt)" if keep_freed_memory() else "system default"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vlprep-throughput-") as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        big = root / "photo_12mp.jpg"
        make_photo(4032, 3024, rng).save(big, "JPEG", quality=90)
        hd = root / "photo_1080p.jpg"
        make_photo(1920, 1080, rng).save(hd, "JPEG", quality=90)
        single_text, single = single_image(big, repeat)
        print("done: 12 MP", file=sys.stderr, flush=True)
        copies = []
        for i in range(16):  # same content, 16 files: decode cost does not depend on content
            copies.append(root / f"batch_{i:02d}.jpg")
            shutil.copy(big, copies[-1])
        batch_text, scaling = batch(copies, max(3, repeat // 2))
        print("done: batch", file=sys.stderr, flush=True)
        sweep_text, results = sweep(root, max(3, repeat // 2))
        plot_note = ""
        if args.plots is not None:
            out = plot(results, args.plots)
            plot_note = f"\n\n![time per image vs size]({os.path.relpath(out, 'docs')})"
        deviation_text = deviation({"generated 12 MP": big, "generated 1080p": hd})
    elapsed = time.perf_counter() - started
    body = "\n".join(
        [
            f"Environment: {environment_line(allocator)}",
            "",
            "Reproduce:",
            "",
            "```",
            COMMAND,
            "```",
            "",
            f"### 12 MP JPEG (4032x3024, q90) at a 1280-token budget, {repeat} rounds",
            "",
            single_text,
            "",
            "### A batch of 16 local 12 MP JPEGs (process_vision_info)",
            "",
            batch_text,
            "",
            "### Time per image versus source size (1280-token budget), median ms",
            "",
            sweep_text + plot_note,
            "",
            "### Fast-mode deviation from exact mode",
            "",
            deviation_text,
            "",
            f"Total run {elapsed:.0f} s.",
        ]
    )
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "throughput", "Throughput (issue 8)", body)
    ok = single["fast_vs_ref"] >= 2.5 and single["fast_vs_floor"] <= 1.3
    return 0 if ok and min(scaling.values()) >= 1.7 else 1


if __name__ == "__main__":
    raise SystemExit(main())
