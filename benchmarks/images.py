"""Image preparation benchmark: vlprep vs qwen-vl-utils (+ transformers' Qwen2-VL processor).

Usage::

    python benchmarks/images.py [--repeat N] [--out docs/performance.md] [--system-malloc]

One process, same inputs for every method. Inputs are generated at run time (fixed seed)
into a temporary directory. Timing: ``time.perf_counter``, one warm-up call per method and
input, then ``--repeat`` rounds in which every method runs once (round-robin, start rotated
each round, garbage collector off); the median and minimum are reported in milliseconds.
``torch`` is pinned to one thread; glibc keeps freed memory unless ``--system-malloc``.
Ratios are ``reference_median / vlprep_median`` (> 1: vlprep is faster).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime as dt
import importlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from PIL import Image
from qwen_vl_utils import fetch_image as qwen_fetch_image

import vlprep

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _report
from _media import MEDIA, write_media
from _report import cpu_model, version

PATCH_SIZE = 14
COMMAND = ".venv/bin/python benchmarks/images.py --out docs/performance.md"

Element = dict[str, Any]
Method = Callable[[Element], Any]


@dataclass(frozen=True, slots=True)
class Case:
    """One benchmark row: an input file and the message element that points at it."""

    label: str
    path: Path
    element: Element


@dataclass(slots=True)
class Result:
    """Timings (seconds) per method, plus the correctness checks of one case."""

    case: Case
    times: dict[str, list[float]]
    resized: tuple[int, int]
    fetch_identical: bool
    full_checks: dict[str, str]


# --------------------------------------------------------------------------- methods


def _qwen_fetch() -> Method:
    return lambda ele: qwen_fetch_image(ele, image_patch_size=PATCH_SIZE)


def _vlprep_fetch() -> Method:
    return lambda ele: vlprep.fetch_image(ele, PATCH_SIZE)


def _hf_processors() -> dict[str, Any]:
    """Default-argument Qwen2-VL image processors, built offline, keyed by backend."""
    if int(transformers.__version__.split(".")[0]) >= 5:
        return {
            "pil": transformers.Qwen2VLImageProcessorPil(),
            "torchvision": transformers.Qwen2VLImageProcessor(),
        }
    return {
        "pil": transformers.Qwen2VLImageProcessor(),
        "torchvision": transformers.Qwen2VLImageProcessorFast(),
    }


def _hf_full(fetch: Method, processor: Any) -> Method:
    def run(ele: Element) -> tuple[torch.Tensor, torch.Tensor]:
        out = processor(images=[fetch(ele)], do_resize=False, return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"]

    return run


def _vlprep_patchify() -> Callable[..., tuple[torch.Tensor, torch.Tensor]] | None:
    """``vlprep._tensors.patchify_images`` when that module exists, else ``None``."""
    try:
        module = importlib.import_module("vlprep._tensors")
    except ImportError:
        return None
    return getattr(module, "patchify_images", None)


def _vlprep_full(fetch: Method, patchify: Callable[..., Any]) -> Method:
    preset = vlprep.get_preset("qwen2-vl")
    return lambda ele: patchify([fetch(ele)], preset)


def build_methods() -> dict[str, Method]:
    """Methods keyed by short name; ``vlprep full`` only when ``vlprep._tensors`` exists."""
    qwen, ours = _qwen_fetch(), _vlprep_fetch()
    processors = _hf_processors()
    methods: dict[str, Method] = {
        "qwen fetch": qwen,
        "vlprep fetch": ours,
        "qwen + HF PIL": _hf_full(qwen, processors["pil"]),
        "qwen + HF torchvision": _hf_full(qwen, processors["torchvision"]),
    }
    patchify = _vlprep_patchify()
    if patchify is not None:
        methods["vlprep full"] = _vlprep_full(ours, patchify)
    return methods


# --------------------------------------------------------------------------- inputs


def build_cases(paths: Mapping[str, Path]) -> list[Case]:
    """The benchmark rows, including a 1280-token budget for the 12 MP photo."""
    labels = {
        "photo_12mp.jpg": "12 MP JPEG 4032x3024",
        "photo_1080p.jpg": "1080p JPEG 1920x1080",
        "photo_vga.jpg": "VGA JPEG 640x480",
        "long_screenshot.png": "long PNG 512x8192",
    }
    cases = [Case(labels[s.name], paths[s.name], {"image": str(paths[s.name])}) for s in MEDIA]
    budget = {"image": str(paths["photo_12mp.jpg"]), "max_pixels": 1280 * 28 * 28}
    cases.insert(1, Case("12 MP JPEG, max_pixels=1280·28²", paths["photo_12mp.jpg"], budget))
    return cases


# --------------------------------------------------------------------------- timing


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory (no per-call mmap/munmap of large buffers).

    On small VMs, touching pages freshly handed out by the kernel costs 0.1-2 s per 12 MP
    tensor at random, which swamps the differences measured here. Every method gets the
    same allocator. Returns ``False`` where glibc's ``mallopt`` is not available.
    """
    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**30))


def _timed(method: Method, element: Element) -> float:
    start = time.perf_counter()
    method(element)
    return time.perf_counter() - start


def _same_image(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and a.tobytes() == b.tobytes()


def _full_checks(warm: Mapping[str, Any]) -> dict[str, str]:
    """Compare vlprep's tensors with each transformers reference (exact / max abs diff)."""
    if "vlprep full" not in warm:
        return {}
    ours_pv, ours_grid = warm["vlprep full"]
    checks = {}
    for name in ("qwen + HF PIL", "qwen + HF torchvision"):
        ref_pv, ref_grid = warm[name]
        if ref_pv.shape != ours_pv.shape or not torch.equal(ref_grid, ours_grid):
            checks[name] = "shape differs"
        elif torch.equal(ref_pv, ours_pv):
            checks[name] = "exact"
        else:
            checks[name] = f"max abs diff {float((ref_pv - ours_pv).abs().max()):.1e}"
    return checks


def run_case(case: Case, methods: Mapping[str, Method], repeat: int) -> Result:
    """Warm up each method once (keeping outputs for the checks), then time round-robin."""
    warm = {name: method(dict(case.element)) for name, method in methods.items()}
    resized = warm["qwen fetch"].size
    identical = _same_image(warm["qwen fetch"], warm["vlprep fetch"])
    checks = _full_checks(warm)
    del warm
    return Result(case, _time_rounds(case, methods, repeat), resized, identical, checks)


def _time_rounds(case: Case, methods: Mapping[str, Method], repeat: int) -> dict[str, list[float]]:
    """``repeat`` round-robin rounds (see ``_report.round_robin``), each on a fresh element."""
    calls = {name: (lambda m=m: m(dict(case.element))) for name, m in methods.items()}
    return _report.round_robin(calls, repeat)


# --------------------------------------------------------------------------- report


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f} ({min(values) * 1e3:.1f})"


def _ratio(times: Mapping[str, list[float]], reference: str, ours: str) -> str:
    if ours not in times:
        return "n/a"
    return f"{statistics.median(times[reference]) / statistics.median(times[ours]):.2f}x"


def timing_table(results: list[Result], names: list[str]) -> str:
    head = "| input | file | resized WxH | " + " | ".join(names) + " |"
    rule = "|---|--:|--:|" + "--:|" * len(names)
    rows = [head, rule]
    for res in results:
        size_kb = res.case.path.stat().st_size / 1024
        w, h = res.resized
        cells = " | ".join(_ms(res.times[n]) for n in names)
        rows.append(f"| {res.case.label} | {size_kb:,.0f} KiB | {w}x{h} | {cells} |")
    return "\n".join(rows)


def ratio_table(results: list[Result]) -> str:
    rows = [
        "| input | fetch: qwen / vlprep | full: HF PIL / vlprep | full: HF torchvision / vlprep "
        "| fetch identical | vlprep full vs HF PIL | vlprep full vs HF torchvision |",
        "|---|--:|--:|--:|:-:|:-:|:-:|",
    ]
    for res in results:
        t = res.times
        rows.append(
            f"| {res.case.label} | {_ratio(t, 'qwen fetch', 'vlprep fetch')} "
            f"| {_ratio(t, 'qwen + HF PIL', 'vlprep full')} "
            f"| {_ratio(t, 'qwen + HF torchvision', 'vlprep full')} "
            f"| {'yes' if res.fetch_identical else 'NO'} "
            f"| {res.full_checks.get('qwen + HF PIL', 'n/a')} "
            f"| {res.full_checks.get('qwen + HF torchvision', 'n/a')} |"
        )
    return "\n".join(rows)


def environment_line(allocator: str) -> str:
    versions = ", ".join(
        f"{d} {version(d)}" for d in ("Pillow", "numpy", "torch", "torchvision", "transformers")
    )
    return (
        f"{dt.date.today().isoformat()} · Python {platform.python_version()}, {versions}, "
        f"qwen-vl-utils {version('qwen-vl-utils')}, vlprep {vlprep.__version__} · "
        f"{cpu_model()}, {os.cpu_count()} cores visible, CPU only, "
        f"torch threads {torch.get_num_threads()}, allocator: {allocator}"
    )


def render(
    results: list[Result], names: list[str], repeat: int, elapsed: float, allocator: str
) -> str:
    has_full = "vlprep full" in names
    identical = all(r.fetch_identical for r in results)
    scope = (
        "vlprep full = `vlprep.fetch_image` + `vlprep._tensors.patchify_images` (Qwen2-VL preset)."
        if has_full
        else "vlprep._tensors is not available: only the fetch stage of vlprep is measured."
    )
    return "\n".join(
        [
            f"Environment: {environment_line(allocator)}",
            "",
            f"Milliseconds per image, median (min) of {repeat} runs after 1 warm-up. "
            "Full pipelines produce `pixel_values` + `image_grid_thw` from the file path; "
            "transformers' processors run with `do_resize=False` on qwen-vl-utils' resized "
            f"image. {scope}",
            "",
            timing_table(results, names),
            "",
            "Ratios are reference median / vlprep median (> 1: vlprep faster).",
            "",
            ratio_table(results),
            "",
            f"identical: {'yes' if identical else 'no'} (vlprep exact fetch vs qwen-vl-utils, "
            f"byte for byte, every input) · total run {elapsed:.1f} s",
        ]
    )


HEADER = f"""# Performance

Benchmarks of vlprep against qwen-vl-utils 0.0.14 and transformers' Qwen2-VL image
processors, run in one process on the same inputs.

Method: inputs are generated at run time with a fixed seed (photo-like JPEGs at quality 90:
smooth gradients, shapes and mild noise; a screenshot-like long PNG). Each method gets one
warm-up call per input, then the methods run round-robin, `--repeat` rounds (default 5,
start rotated each round, garbage collector off during the timed rounds, as `timeit` does);
wall time is measured with `time.perf_counter` and reported as median (min) in ms.
Machine: 2 cores, CPU only, `torch.set_num_threads(1)` (single thread; Pillow's decode and
resize are single-threaded too). glibc is told (`mallopt`) to keep freed memory: on this
VM, first touches of pages fresh from the kernel cost 0.1-2 s per 12 MP tensor at random,
which swamped the differences measured; `--system-malloc` keeps the default allocator.
Numbers from a shared VM: compare ratios, not absolutes; at 5 repeats a fetch ratio
moves by up to about ±8% between runs, so use `--repeat 15` (about 1.5 min) to resolve
smaller differences.

Reproduce:

```
{COMMAND}
```

## Images

"""


def write_section(path: Path, body: str) -> None:
    """Replace the images section of ``path`` (see ``_report.write_section``)."""
    _report.write_section(path, "images", "Images", body, header=HEADER)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per method and input")
    parser.add_argument("--out", type=Path, help="Markdown file whose image section to replace")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="keep glibc's default allocator settings (noisier on small VMs)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    reuse = not args.system_malloc and keep_freed_memory()
    allocator = "glibc keeps freed memory (mallopt)" if reuse else "system default"
    started = time.perf_counter()
    methods = build_methods()
    with tempfile.TemporaryDirectory(prefix="vlprep-bench-") as tmp:
        cases = build_cases(write_media(Path(tmp)))
        results = []
        for case in cases:
            results.append(run_case(case, methods, args.repeat))
            print(f"done: {case.label}", file=sys.stderr, flush=True)
        elapsed = time.perf_counter() - started
        body = render(results, list(methods), args.repeat, elapsed, allocator)
    print(body)
    if args.out is not None:
        write_section(args.out, body)
    return 0 if all(r.fetch_identical for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
