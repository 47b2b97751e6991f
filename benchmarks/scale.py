"""Ray Data scale-out: rows per second, one local process vs Ray with 2 workers, in one run.

Usage::

    python benchmarks/scale.py [--audit-rows 20000] [--prep-rows 2000] [--out docs/performance.md]

Generates (once, cached under ``benchmarks/out/scale/``) 40 JPEGs from 320x240 to
1024x768 and two 4 s 320x240 H.264 clips, and a JSONL chat dataset whose conversations
hold one or two of those images (a clip every 200 rows, a missing file every 500). Then:

- **local**: the :class:`~vlprep.integrations.ray.Auditor` / ``Preprocessor`` callable
  run in this process on the file's lines, in Arrow batches of the helpers' batch sizes
  (256 / 16 rows; the same code the Ray actors run; ``workers=1``, torch on 1 thread),
  so the only difference is Ray. Outputs are folded into totals and dropped (2,000
  preprocessed rows of pixel values would take tens of GB).
- **Ray**: ``ray.init(num_cpus=2)``, then ``read_conversations`` -> ``audit`` / ``preprocess``
  (actor pool of 1 to 2 actors, ``workers=1`` each), consumed with ``iter_batches``.
  Timed from building the dataset to the last row: actor start-up (importing torch,
  vlprep and, for the preprocessor, transformers and the processor) is included;
  ``ray.init`` is not.

Both sides must agree (total vision tokens, total sequence length, error counts).
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/inspect.py shares its name with the standard library's ``inspect``: keep this
# folder behind the standard library on sys.path (as benchmarks/inspect.py does).
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from typing import Any

import _report
import numpy as np
from _report import cpu_model, version
from _video_media import ClipSpec, write_clip
from PIL import Image

OUT = HERE / "out" / "scale"
COMMAND = ".venv/bin/python benchmarks/scale.py --out docs/performance.md"
SIZES = ((320, 240), (640, 480), (480, 640), (800, 600), (1024, 768))
AUDIT_BATCH, PREP_BATCH = 256, 16  # the helpers' default batch sizes
CLIP = ClipSpec("s", "240p25, 4 s", 320, 240, 25, 4)


def media() -> tuple[list[str], list[str]]:
    """Cached JPEGs and clips (same bytes every run)."""
    OUT.mkdir(parents=True, exist_ok=True)
    images = []
    for k in range(40):
        path = OUT / f"img{k:02d}.jpg"
        if not path.exists():
            width, height = SIZES[k % len(SIZES)]
            rng = np.random.default_rng(k)
            y, x = np.mgrid[0:height, 0:width].astype(np.float32)
            field = np.stack(
                [
                    127 + 100 * np.sin(x / width * 6 + k),
                    127 + 100 * np.cos(y / height * 4),
                    x % 255,
                ],
                axis=-1,
            )
            field += rng.normal(0, 10, size=field.shape)
            Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).save(path, quality=85)
        images.append(str(path))
    clips = []
    for k in range(2):
        path = OUT / f"clip{k}.mp4"
        if not path.exists():
            write_clip(path, CLIP, seed=k)
        clips.append(str(path))
    return images, clips


def dataset(rows: int, images: list[str], clips: list[str], path: Path) -> Path:
    """``rows`` conversations, one JSON line each."""
    with path.open("w") as fh:
        for i in range(rows):
            content: list[dict[str, Any]] = [
                {"type": "image", "image": images[(i * 7 + k) % len(images)]}
                for k in range(1 + i % 2)
            ]
            if i % 200 == 3:
                content = [{"type": "video", "video": clips[i % 2], "fps": 1.0}]
            if i % 500 == 5:
                content = [{"type": "image", "image": str(OUT / "missing.jpg")}]
            content.append({"type": "text", "text": f"Describe picture {i}."})
            fh.write(json.dumps([{"role": "user", "content": content}]) + "\n")
    return path


def _measure(table: Any) -> int:
    """Vision tokens of an audit batch; bytes of pixel data (float32 values, PNG / raw frames)."""
    if "vision_tokens" in table.column_names:
        return sum(table.column("vision_tokens").to_pylist())
    if "num_tokens" in table.column_names:  # bytes of the float32 pixel values
        import pyarrow.compute as pc

        lengths = [
            pc.list_value_length(table.column(n)) for n in ("pixel_values", "pixel_values_videos")
        ]
        return 4 * sum(pc.sum(v).as_py() or 0 for v in lengths)
    import pyarrow.compute as pc

    entries = pc.list_flatten(table.column("media"))  # list<struct> -> struct values
    return pc.sum(pc.binary_length(pc.struct_field(entries, "data"))).as_py() or 0


def _add(total: list[int], table: Any) -> None:
    """Fold one output batch into ``[rows, tokens or bytes, errors]`` (outputs are dropped)."""
    errors = table.column("error_type").to_pylist()
    total[0] += len(errors)
    total[1] += _measure(table)
    total[2] += sum(e is not None for e in errors)


def local(callable_: Any, path: Path, batch: int) -> tuple[float, tuple[int, ...]]:
    """The callable in this process, ``batch`` rows at a time (as an actor gets them)."""
    import pyarrow as pa

    lines = path.read_text().splitlines()
    total = [0, 0, 0]
    start = time.perf_counter()
    for i in range(0, len(lines), batch):
        _add(total, callable_(pa.table({"messages": lines[i : i + batch]})))
    return time.perf_counter() - start, tuple(total)


def on_ray(make: Any, path: Path) -> tuple[float, tuple[int, ...]]:
    from vlprep.integrations.ray import read_conversations

    total = [0, 0, 0]
    start = time.perf_counter()
    for table in make(read_conversations(str(path))).iter_batches(batch_format="pyarrow"):
        _add(total, table)
    return time.perf_counter() - start, tuple(total)


def run(audit_rows: int, prep_rows: int) -> dict[str, Any]:
    import ray
    import torch

    from vlprep.integrations.ray import Auditor, Preprocessor, audit, preprocess
    from vlprep.testing import save_processor

    torch.set_num_threads(1)
    images, clips = media()
    tmp = Path(tempfile.mkdtemp(prefix="vlprep-scale-"))
    audit_path = dataset(audit_rows, images, clips, tmp / "audit.jsonl")
    prep_path = dataset(prep_rows, images, clips, tmp / "prep.jsonl")
    tiny_path = dataset(16, images, clips, tmp / "tiny.jsonl")
    processor_dir = str(save_processor("qwen2.5-vl", tmp / "processor"))
    results: dict[str, Any] = {}

    jobs = {
        "audit": (audit_path, AUDIT_BATCH, Auditor, ("qwen2.5-vl",), {}),
        "media": (prep_path, PREP_BATCH, Preprocessor, (None, "qwen2.5-vl"), {"output": "media"}),
        "inputs": (prep_path, PREP_BATCH, Preprocessor, (processor_dir,), {}),
    }
    for job, (path, batch, cls, args, kwargs) in jobs.items():
        results[f"{job}_local"] = local(cls(*args, workers=1, **kwargs), path, batch)

    # OMP_NUM_THREADS reaches the actors: torch on one thread per actor, as locally.
    os.environ["OMP_NUM_THREADS"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        for job, (path, batch, cls, args, kwargs) in jobs.items():
            helper = audit if cls is Auditor else preprocess

            def make(
                ds: Any, h: Any = helper, a: Any = args, b: int = batch, k: Any = kwargs
            ) -> Any:
                return h(ds, *a, workers=1, batch_size=b, **k)

            results[f"{job}_startup"] = on_ray(make, tiny_path)
            results[f"{job}_ray"] = on_ray(make, path)
    finally:
        ray.shutdown()
    for job in jobs:
        if results[f"{job}_local"][1] != results[f"{job}_ray"][1]:
            raise SystemExit(f"{job}: local and Ray disagree: {results}")
    return results


def report(results: dict[str, Any], audit_rows: int, prep_rows: int) -> str:
    env = ", ".join(
        [
            f"Python {platform.python_version()}",
            f"Ray {version('ray')}",
            f"pyarrow {version('pyarrow')}",
            f"torch {version('torch')}",
            f"transformers {version('transformers')}",
            f"vlprep {version('vlprep')}",
        ]
    )
    lines = [
        f"Environment: {dt.date.today()} · {env} · {cpu_model()}, {os.cpu_count()} cores "
        "visible (shared with other work), CPU only, torch threads 1",
        "",
        "Method: a generated JSONL chat dataset (40 JPEGs of 320x240 to 1024x768, one or two "
        "per conversation; a 4 s 320x240 clip every 200 rows, sampled at 1 fps; a missing file "
        "every 500 rows), Qwen2.5-VL preset and the offline processor. **local**: the "
        "`Auditor` / `Preprocessor` callable in this process on Arrow batches of 256 / 16 "
        "rows, the helpers' batch sizes (`workers=1`). **Ray 2 workers**: `ray.init(num_cpus=2)`, "
        "`read_conversations` then `audit` / `preprocess` (an actor pool of 1 to 2 actors, "
        "`workers=1` each), consumed with `iter_batches`; timed from building the dataset to "
        "the last row, actor start-up included, `ray.init` not. Both sides give the same "
        "total tokens and error counts (checked). One round each.",
        "",
        "| job | rows | output | local, 1 process | Ray, 2 workers | Ray speed-up | Ray, 16-row job |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    names = {
        "audit": "audit (header only)",
        "media": 'preprocess, `output="media"`',
        "inputs": 'preprocess, `output="inputs"`',
    }
    for job, name in names.items():
        rows = audit_rows if job == "audit" else prep_rows
        loc, ray_ = results[f"{job}_local"][0], results[f"{job}_ray"][0]
        size = results[f"{job}_local"][1][1]
        output = f"{size:,} tokens" if job == "audit" else f"{size / 2**30:.2f} GiB"
        lines.append(
            f"| {name} | {rows:,} | {output} | {rows / loc:,.0f} rows/s ({loc:.1f} s) | "
            f"{rows / ray_:,.0f} rows/s ({ray_:.1f} s) | {loc / ray_:.2f}x | "
            f"{results[f'{job}_startup'][0]:.1f} s |"
        )
    lines += ["", "Reproduce:", "", "```", COMMAND, "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--audit-rows", type=int, default=20_000)
    parser.add_argument("--prep-rows", type=int, default=1_000)
    parser.add_argument("--out", type=Path, help="Markdown file whose scale section to replace")
    args = parser.parse_args(argv)
    results = run(args.audit_rows, args.prep_rows)
    body = report(results, args.audit_rows, args.prep_rows)
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "scale", "Ray Data (scale-out)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
