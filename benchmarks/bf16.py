"""bf16 model inputs: ``build_inputs(dtype=torch.bfloat16)`` vs the references plus a cast.

Usage::

    python benchmarks/bf16.py [--repeat N] [--threads N] [--out docs/performance.md]

A bf16 model takes bf16 ``pixel_values``. What users do today is build float32 and cast:

* ``qwen + HF PIL → bf16`` / ``qwen + HF torchvision → bf16``: the chat template,
  qwen-vl-utils ``process_vision_info``, transformers' processor (``do_resize=False``, PIL or
  torchvision image backend), then ``pixel_values.to(torch.bfloat16)``;
* ``vlprep fp32 → bf16``: ``build_inputs(...)`` then the same cast (for reference);
* ``vlprep bf16``: ``build_inputs(..., dtype=torch.bfloat16)``, written in bf16 directly
  (bit-equal to the cast, checked on every row).

One 12 MP photo JPEG (4032x3024, ``benchmarks/_media.py``) in a one-turn chat, offline
Qwen2-VL processor with the hub's pixel bounds (3,136 .. 12,845,056: 15,552 tokens, a
293 MB float32 ``pixel_values``), and the same with ``max_pixels=1280·28²``. One process,
one warm-up per method, then ``--repeat`` round-robin rounds (GC off); median (min) wall
time; ratios = method median / ``vlprep bf16`` median (> 1: vlprep bf16 faster).
Target: at least 2x against every reference at the hub's bounds.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _report  # noqa: E402
from _media import write_media  # noqa: E402
from inputs import _reference, environment, parse_common  # noqa: E402  (forces the video reader)

import vlprep  # noqa: E402
from tests.hf_fixtures import load_processor  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/bf16.py --repeat {repeat} --out docs/performance.md"
PIXELS = ("pixel_values", "pixel_values_videos")
Method = Callable[[list[list[dict[str, Any]]]], Any]


def _cast(build: Method) -> Method:
    def run(conversations: list[list[dict[str, Any]]]) -> Any:
        out = build(conversations)
        for key in PIXELS:
            if key in out:
                out[key] = out[key].to(torch.bfloat16)
        return out

    return run


def build_methods(root: Path) -> dict[str, Method]:
    pil = load_processor("qwen2-vl", root, backend="pil")
    tv = load_processor("qwen2-vl", root)
    return {
        "qwen + HF PIL → bf16": _cast(_reference(pil)),
        "qwen + HF torchvision → bf16": _cast(_reference(tv)),
        "vlprep fp32 → bf16": _cast(lambda c: vlprep.build_inputs(c, pil)),
        "vlprep bf16": lambda c: vlprep.build_inputs(c, pil, dtype=torch.bfloat16),
    }


def check(outputs: Mapping[str, Any]) -> str:
    ours = outputs["vlprep bf16"]["pixel_values"]
    notes = []
    for name, out in outputs.items():
        if name == "vlprep bf16":
            continue
        ref = out["pixel_values"]
        same = ref.shape == ours.shape and torch.equal(ref.view(torch.int16), ours.view(torch.int16))
        diff = (
            "bit-equal"
            if same
            else f"max abs diff {float((ref.float() - ours.float()).abs().max()):.1e}"
        )
        notes.append(f"{name}: {diff}")
    return "; ".join(notes)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f} ({min(values) * 1e3:.1f})"


def main(argv: list[str] | None = None) -> int:
    args = parse_common(__doc__.split("\n", 1)[0], "bf16", argv)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vlprep-bf16-") as tmp:
        methods = build_methods(Path(tmp) / "processors")
        photo = str(write_media(Path(tmp))["photo_12mp.jpg"])
        cases = [
            ("12 MP JPEG, hub bounds", {}),
            ("12 MP JPEG, max_pixels=1280·28²", {"max_pixels": 1280 * 28 * 28}),
        ]
        for label, keys in cases:
            conv = [
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "image": photo, **keys},
                            {"type": "text", "text": "Describe."},
                        ],
                    }
                ]
            ]
            outputs = {name: m(conv) for name, m in methods.items()}
            note = check(outputs)
            tokens = int((outputs["vlprep bf16"]["mm_token_type_ids"] > 0).sum())
            del outputs
            calls = {name: (lambda m=m, c=conv: m(c)) for name, m in methods.items()}
            rows.append((label, tokens, _report.round_robin(calls, args.repeat), note))
            print(f"done: {label}", file=sys.stderr, flush=True)
    names = list(methods)
    env = environment(args.threads)
    refs = [n for n in names if n != "vlprep bf16"]
    head = "| input | tokens | " + " | ".join(names) + " | " + " | ".join(
        f"{n} / vlprep bf16" for n in refs
    ) + " |"
    lines = [head, "|---|--:|" + "--:|" * (len(names) + len(refs))]
    met = True
    for label, tokens, times, _ in rows:
        base = statistics.median(times["vlprep bf16"])
        ratios = [statistics.median(times[n]) / base for n in refs]
        if label.endswith("hub bounds"):
            met = met and all(r >= 2 for r in ratios[:2])
        cells = [_ms(times[n]) for n in names] + [f"{r:.2f}x" for r in ratios]
        lines.append(f"| {label} | {tokens:,} | " + " | ".join(cells) + " |")
    checks = "\n".join(f"- {label}: {note}" for label, _, _, note in rows)
    body = "\n".join(
        [
            f"Environment: {env}",
            "",
            "From a conversation with a file path to a bf16 model's `pixel_values`. "
            "Milliseconds, median (min) of "
            f"{args.repeat} rounds after one warm-up; ratios = method median / `vlprep bf16` "
            "median (> 1: vlprep bf16 faster).",
            "",
            *lines,
            "",
            "Target (vlprep bf16 at least 2x both references + cast at the hub's bounds): "
            + ("met." if met else "**NOT met**."),
            "",
            "`pixel_values` compared with `vlprep bf16` on the warm-up call:",
            "",
            checks,
            "",
            f"Total run {time.perf_counter() - started:.1f} s. Reproduce: `{COMMAND.format(repeat=args.repeat)}`",
        ]
    )
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "bf16", "bf16 model inputs (build_inputs dtype)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
