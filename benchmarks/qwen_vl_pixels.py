"""Qwen-VL (first generation) pixel values against the reference pipeline, every bundled image.

The reference is the transform of the remote code's ``visual.py`` and of vLLM's
``QwenVLProcessor``: torchvision ``Resize((448, 448), BICUBIC)`` + ``ToTensor`` + CLIP
``Normalize`` on the upright decoded PIL image. vlprep's side is ``build_inputs`` with the
offline Qwen-VL tokenizer stand-in. Prints the largest absolute difference per image and
writes the summary into ``docs/performance.md`` (``--out``); the test
``tests/test_qwen_vl.py::test_pixels_equal_torchvision_on_every_shared_image`` asserts 1e-6.

    .venv/bin/python benchmarks/qwen_vl_pixels.py --out docs/performance.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from pathlib import Path

import _report
from torchvision import transforms
from torchvision.transforms import InterpolationMode

import vlprep
from vlprep.testing import make_qwen_vl_tokenizer

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted(p for p in (ROOT / "tests" / "media" / "images").iterdir() if p.suffix != ".md")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
REFERENCE = transforms.Compose(
    [
        transforms.Resize((448, 448), interpolation=InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD),
    ]
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, help="Markdown file to write the section into")
    args = parser.parse_args()
    tokenizer = make_qwen_vl_tokenizer()
    compared, refused, worst = 0, [], 0.0
    for path in IMAGES:
        chat = [{"role": "user", "content": [{"type": "image", "image": str(path)}]}]
        try:
            pixels = vlprep.build_inputs(chat, tokenizer)["pixel_values"][0]
        except vlprep.VlprepError as exc:
            refused.append(f"{path.name} ({type(exc).__name__})")
            continue
        diff = (pixels - REFERENCE(vlprep.load_image(str(path)))).abs().max().item()
        print(f"{path.name:40} max |diff| {diff:.3g}")
        compared += 1
        worst = max(worst, diff)
    body = (
        f"Measured {dt.date.today()} · Python {platform.python_version()}, torch "
        f"{_report.version('torch')}, torchvision {_report.version('torchvision')}, Pillow "
        f"{_report.version('pillow')} · command: `.venv/bin/python benchmarks/qwen_vl_pixels.py "
        "--out docs/performance.md`.\n\n"
        f"{compared} bundled images (`tests/media/images`) through `build_inputs` with the "
        "Qwen-VL tokenizer stand-in, against torchvision `Resize((448, 448), BICUBIC)` + "
        "`ToTensor` + CLIP `Normalize` on the same upright decoded image: largest absolute "
        f"difference **{worst:.3g}** (the issue's bound: 1e-6). Refused by vlprep: "
        f"{', '.join(refused) or 'none'} (a truncated file, which Pillow's own decode "
        "refuses too: the test checks both)."
    )
    print(body)
    if args.out is not None:
        _report.write_section(
            args.out, "qwen-vl-pixels", "Qwen-VL pixel values against the reference", body
        )
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
