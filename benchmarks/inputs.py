"""Model-input benchmark: ``vlprep.build_inputs`` vs qwen-vl-utils + transformers' processor.

Usage::

    python benchmarks/inputs.py [--repeat N] [--threads N] [--out docs/performance.md]

What each method does, from a conversation whose images are file paths to the model's
``BatchFeature`` (``input_ids``, ``attention_mask``, ``mm_token_type_ids``,
``pixel_values``, ``image_grid_thw``; videos likewise):

* ``qwen + HF PIL`` / ``qwen + HF torchvision``: what the Qwen model cards do:
  ``processor.apply_chat_template(tokenize=False)``, qwen-vl-utils
  ``process_vision_info(image_patch_size=14, return_video_kwargs=True,
  return_video_metadata=True)``, then ``processor(text, images, videos,
  video_metadata=..., do_resize=False, do_sample_frames=False, padding=True)`` with
  transformers' PIL or torchvision image backend.
* ``vlprep``: ``vlprep.build_inputs(conversations, processor)``.

The processor is an offline Qwen2-VL processor (``tests/hf_fixtures.py``: byte-level
tokenizer, hub pixel bounds 3,136 .. 12,845,056). One process, same inputs; one warm-up
call per method and case, then ``--repeat`` round-robin rounds (start rotated, GC off);
median (min) wall time. Ratios are reference median / vlprep median (> 1: vlprep faster).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _report  # noqa: E402
from _media import write_media  # noqa: E402
from images import keep_freed_memory  # noqa: E402
from qwen_vl_utils import process_vision_info as qwen_process_vision_info  # noqa: E402
from qwen_vl_utils import vision_process  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402

import vlprep  # noqa: E402
from tests.hf_fixtures import load_processor  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/inputs.py --repeat 7 --out docs/performance.md"
VIDEO = HERE.parent / "fixtures" / "nasa_13013.mp4"

# The reference's video reader, forced as in the tests (tests/conftest.py): qwen-vl-utils
# would otherwise pick whatever is installed.
vision_process.get_video_reader_backend = lambda: "decord"

Conversations = list[list[dict[str, Any]]]
Method = Callable[[Conversations], Any]


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    conversations: Conversations


def _user(*content: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*content, {"type": "text", "text": "Describe."}]}]


def build_cases(paths: Mapping[str, Path]) -> list[Case]:
    def img(name: str, **keys: object) -> dict[str, Any]:
        return {"type": "image", "image": str(paths[name]), **keys}

    budget = {"max_pixels": 1280 * 28 * 28}
    return [
        Case("VGA JPEG 640x480", [_user(img("photo_vga.jpg"))]),
        Case("1080p JPEG 1920x1080", [_user(img("photo_1080p.jpg"))]),
        Case("12 MP JPEG 4032x3024", [_user(img("photo_12mp.jpg"))]),
        Case("12 MP JPEG, max_pixels=1280·28²", [_user(img("photo_12mp.jpg", **budget))]),
        Case("long PNG 512x8192", [_user(img("long_screenshot.png"))]),
        Case(
            "batch of 2: 3 images",
            [
                _user(img("photo_vga.jpg"), img("photo_1080p.jpg")),
                _user(img("photo_12mp.jpg", **budget)),
            ],
        ),
        Case(
            "video 10 s 1280x720 (fixtures/nasa_13013.mp4), fps 2",
            [_user({"type": "video", "video": str(VIDEO)})],
        ),
    ]


def _reference(processor: Any) -> Method:
    def run(conversations: Conversations) -> Any:
        texts = [
            processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        images, videos, _ = qwen_process_vision_info(
            conversations,
            return_video_kwargs=True,
            return_video_metadata=True,
            image_patch_size=14,
        )
        kwargs: dict[str, Any] = {}
        if images:
            kwargs["images"] = images
        if videos:
            frames, metas = zip(*videos, strict=True)
            kwargs["videos"] = list(frames)
            kwargs["video_metadata"] = [
                VideoMetadata(
                    total_num_frames=m["total_num_frames"],
                    fps=m["fps"],
                    frames_indices=m["frames_indices"],
                )
                for m in metas
            ]
            kwargs["do_sample_frames"] = False
        return processor(
            text=texts,
            do_resize=False,
            padding=True,
            padding_side="left",
            return_tensors="pt",
            **kwargs,
        )

    return run


def build_methods(root: Path) -> tuple[dict[str, Method], Any]:
    pil = load_processor("qwen2-vl", root, backend="pil")
    tv = load_processor("qwen2-vl", root)
    methods: dict[str, Method] = {
        "qwen + HF PIL": _reference(pil),
        "qwen + HF torchvision": _reference(tv),
        "vlprep": lambda conversations: vlprep.build_inputs(conversations, pil),
    }
    return methods, pil


def check(outputs: Mapping[str, Any]) -> str:
    """Compare vlprep's output with each reference: keys, integer tensors, pixel max diff."""
    ours = outputs["vlprep"]
    notes = []
    for name in ("qwen + HF PIL", "qwen + HF torchvision"):
        ref = outputs[name]
        if sorted(ref.keys()) != sorted(ours.keys()):
            notes.append(f"{name}: keys differ")
            continue
        worst = 0.0
        for key in ref:
            a, b = ours[key], ref[key]
            if a.shape != b.shape:
                worst = float("inf")
            elif a.is_floating_point():
                worst = max(worst, float((a.double() - b.double()).abs().max()))
            elif not torch.equal(a, b.to(a.dtype)):
                worst = float("inf")
        notes.append(f"{name}: {'exact' if worst == 0 else f'max abs diff {worst:.1e}'}")
    return "; ".join(notes)


def time_case(case: Case, methods: Mapping[str, Method], repeat: int) -> dict[str, list[float]]:
    calls = {name: (lambda m=m: m(case.conversations)) for name, m in methods.items()}
    return _report.round_robin(calls, repeat)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f} ({min(values) * 1e3:.1f})"


def environment(threads: int) -> str:
    """The environment line of the model-input tables (also ``benchmarks/bf16.py``)."""
    versions = ", ".join(
        f"{d} {_report.version(d)}"
        for d in ("Pillow", "numpy", "torch", "torchvision", "transformers", "qwen-vl-utils")
    )
    return (
        f"{dt.date.today().isoformat()} · Python {platform.python_version()}, {versions}, "
        f"vlprep {vlprep.__version__} · {_report.cpu_model()}, {os.cpu_count()} cores "
        f"visible, CPU only, torch threads {threads}, glibc keeps freed memory (mallopt)"
    )


def parse_common(description: str, section: str, argv: list[str] | None) -> argparse.Namespace:
    """``--repeat``, ``--threads``, ``--out`` checked, then the process set up for timing:
    torch threads, freed memory kept (mallopt), transformers' cap warning silenced."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, help=f"Markdown file whose {section} section to replace")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.threads < 1:
        parser.error("--repeat and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    warnings.filterwarnings("ignore", message=".*cap_pixels_per_frame.*")
    return args


def render(
    rows: list[tuple[Case, dict[str, list[float]], str, int]],
    names: list[str],
    repeat: int,
    threads: int,
    elapsed: float,
) -> str:
    env = environment(threads)
    head = (
        "| input | tokens | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{n} / vlprep" for n in names if n != "vlprep")
        + " |"
    )
    lines = [head, "|" + "---|" * 2 + "--:|" * (2 * len(names) - 1)]
    faster = True
    for case, times, _, tokens in rows:
        ratios = []
        for name in names:
            if name == "vlprep":
                continue
            ratio = statistics.median(times[name]) / statistics.median(times["vlprep"])
            faster = faster and ratio > 1
            ratios.append(f"{ratio:.2f}x")
        cells = [_ms(times[n]) for n in names]
        lines.append(f"| {case.label} | {tokens:,} | " + " | ".join(cells + ratios) + " |")
    checks = "\n".join(f"- {case.label}: {note}" for case, _, note, _ in rows)
    verdict = "met" if faster else "**NOT met**"
    return "\n".join(
        [
            f"Environment: {env}",
            "",
            "From a conversation with file paths to the model's `BatchFeature`. Reference = "
            "qwen-vl-utils `process_vision_info` + the chat template + transformers' processor "
            "with `do_resize=False` (PIL or torchvision image backend); vlprep = "
            "`vlprep.build_inputs(conversations, processor)`. Offline Qwen2-VL processor with "
            f"the hub's pixel bounds. Milliseconds, median (min) of {repeat} rounds after one "
            "warm-up; ratios = reference median / vlprep median (> 1: vlprep faster).",
            "",
            *lines,
            "",
            f"Target (vlprep faster than both references on every row): {verdict}.",
            "",
            "Outputs compared with each reference on the warm-up call (every key; pixel values "
            "as max abs difference):",
            "",
            checks,
            "",
            f"Total run {elapsed:.1f} s. Reproduce: `{COMMAND}`",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_common(__doc__.split("\n", 1)[0], "inputs", argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vlprep-inputs-") as tmp:
        methods, processor = build_methods(Path(tmp) / "processors")
        cases = build_cases(write_media(Path(tmp)))
        rows = []
        for case in cases:
            outputs = {name: method(case.conversations) for name, method in methods.items()}
            note = check(outputs)
            tokens = int((outputs["vlprep"]["mm_token_type_ids"] > 0).sum())
            del outputs
            rows.append((case, time_case(case, methods, args.repeat), note, tokens))
            print(f"done: {case.label}", file=sys.stderr, flush=True)
        del processor
    body = render(rows, list(methods), args.repeat, args.threads, time.perf_counter() - started)
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "inputs", "Model inputs (build_inputs)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
