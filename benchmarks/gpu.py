"""GPU image preparation benchmark: vlprep's CPU path, its device path and nvJPEG + transformers.

Usage (on a machine with a CUDA GPU and the ``gpu`` extra)::

    python benchmarks/gpu.py [--repeat 10] [--batch 16] [--tokens 1280] [--family qwen2-vl]
                             [--checkpoint PATH]

Inputs: one generated 4032x3024 photo-like JPEG (quality 90, fixed seed), and a batch of
``--batch`` copies of it (decode cost does not depend on content), each sized for
``--tokens`` visual tokens (``max_pixels = tokens * factor**2``). Methods, all ending with
``pixel_values`` and ``image_grid_thw`` on the GPU:

* ``vlprep cpu``: ``process_vision_info`` (Pillow decode and bicubic, ``workers`` pool)
  + ``patchify_images``, then copied to the GPU;
* ``vlprep device``: ``vlprep._device_images.images_to_device(..., "cuda")`` (one batched
  nvJPEG decode, resize/normalise/patchify on the GPU; what ``build_inputs(device=...)`` runs);
* ``nvJPEG + HF``: ``torchvision.io.decode_jpeg(..., device="cuda")`` then transformers'
  ``Qwen2VLImageProcessor`` (torchvision backend) called with ``device="cuda"``;
* ``PIL + HF cpu``: Pillow decode then the same processor on CPU, copied to the GPU (the
  issue's ~276 ms baseline).

Timing: ``time.perf_counter`` with ``torch.cuda.synchronize()`` before and after every call,
two warm-up calls per method, then ``--repeat`` rounds (methods round-robin); median and
minimum in milliseconds; ratios are ``other median / vlprep device median``. The pixel
deviation of the device path from the CPU exact path is printed in levels (max, mean, PSNR).

``--checkpoint PATH`` also loads that Qwen-VL checkpoint (transformers, bfloat16, local
files only) and reports the preprocessing share of time to first token for one 12 MP image:
``build_inputs`` (CPU, then moved) or ``build_inputs(device="cuda")`` followed by
``generate(max_new_tokens=1)``.

Without a CUDA device the script exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import io
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _report
from _media import make_photo

import vlprep
from vlprep._device_images import images_to_device
from vlprep._presets import Preset, get_preset
from vlprep._tensors import patchify_images

Prepared = tuple[torch.Tensor, torch.Tensor]
Method = Callable[[list[bytes]], Prepared]
NO_CUDA = (
    "benchmarks/gpu.py needs a CUDA device: torch.cuda.is_available() is False here "
    "(torch {torch}, CUDA build {cuda}). Run it on a GPU machine with a CUDA torch build "
    "and the matching torchvision (pip install 'vlprep[gpu]')."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--tokens", type=int, default=1280, help="visual token budget per image")
    parser.add_argument(
        "--family",
        default="qwen2-vl",
        choices=["qwen2-vl", "qwen2.5-vl", "qwen3-vl"],
        help="preset for patch size, mean/std and bounds (default qwen2-vl)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="local Qwen-VL checkpoint: also measure preprocessing's share of time to first token",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.batch < 1 or args.tokens < 4:
        parser.error("--repeat and --batch must be >= 1, --tokens >= 4")
    return args


def cuda_or_exit() -> torch.device:
    """The CUDA device, or exit with status 2 and a clear message."""
    if not torch.cuda.is_available():
        print(NO_CUDA.format(torch=torch.__version__, cuda=torch.version.cuda), file=sys.stderr)
        raise SystemExit(2)
    return torch.device("cuda")


def _photo_jpeg() -> bytes:
    buffer = io.BytesIO()
    make_photo(4032, 3024, np.random.default_rng(0)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _elements(data: list[bytes], preset: Preset, tokens: int) -> list[dict[str, Any]]:
    bounds = {"min_pixels": preset.image_min_pixels, "max_pixels": tokens * preset.factor**2}
    return [{"type": "image", "image": blob, **bounds} for blob in data]


def _hf_processor(preset: Preset, tokens: int) -> Any:
    from transformers import Qwen2VLImageProcessor  # torchvision backend in transformers 5.x

    return Qwen2VLImageProcessor(
        size={"shortest_edge": preset.image_min_pixels, "longest_edge": tokens * preset.factor**2},
        patch_size=preset.patch_size,
        merge_size=preset.merge_size,
        temporal_patch_size=preset.temporal_patch_size,
        image_mean=list(preset.image_mean),
        image_std=list(preset.image_std),
    )


def _nvjpeg(data: list[bytes], device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in data]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29+: use torchcodec
        return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))


def build_methods(preset: Preset, tokens: int, device: torch.device) -> dict[str, Method]:
    processor = _hf_processor(preset, tokens)

    def vlprep_cpu(data: list[bytes]) -> Prepared:
        images, _ = vlprep.process_vision_info(
            [{"role": "user", "content": _elements(data, preset, tokens)}],
            image_patch_size=preset.patch_size,
        )
        pixel_values, grid = patchify_images(images, preset)
        return pixel_values.to(device), grid.to(device)

    def vlprep_device(data: list[bytes]) -> Prepared:
        pixel_values, grid = images_to_device(_elements(data, preset, tokens), preset, device)
        return pixel_values, grid.to(device)

    def nvjpeg_hf(data: list[bytes]) -> Prepared:
        out = processor(images=_nvjpeg(data, device), device=device, return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"].to(device)

    def pil_hf_cpu(data: list[bytes]) -> Prepared:
        from PIL import Image

        images = [Image.open(io.BytesIO(blob)).convert("RGB") for blob in data]
        out = processor(images=images, return_tensors="pt")
        return out["pixel_values"].to(device), out["image_grid_thw"].to(device)

    return {
        "vlprep device": vlprep_device,
        "vlprep cpu": vlprep_cpu,
        "nvJPEG + HF": nvjpeg_hf,
        "PIL + HF cpu": pil_hf_cpu,
    }


def timed(method: Method, data: list[bytes]) -> tuple[float, Prepared]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = method(data)
    torch.cuda.synchronize()
    return time.perf_counter() - start, out


def measure(methods: dict[str, Method], data: list[bytes], repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in methods}
    for method in methods.values():
        for _ in range(2):
            timed(method, data)
    names = list(methods)
    for round_ in range(repeat):
        for k in range(len(names)):
            name = names[(round_ + k) % len(names)]
            times[name].append(timed(methods[name], data)[0])
    return times


def deviation(ours: torch.Tensor, other: torch.Tensor, preset: Preset) -> str:
    """Max / mean level difference and PSNR of two pixel_values (read back to levels)."""
    per_channel = preset.temporal_patch_size * preset.patch_size**2
    std = torch.tensor(preset.image_std, dtype=torch.float64, device=ours.device)
    diff = ((ours.double() - other.double()) * std.repeat_interleave(per_channel) * 255).abs()
    mse = float((diff**2).mean())
    psnr = f"{10 * math.log10(255**2 / mse):.1f} dB" if mse else "identical"
    return f"max {float(diff.max()):.1f}, mean {float(diff.mean()):.3f} levels, PSNR {psnr}"


def report(title: str, times: dict[str, list[float]], count: int) -> None:
    base = statistics.median(times["vlprep device"])
    print(f"\n{title}")
    print("| method | median ms | min ms | ms per image | x vlprep device |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median * 1e3:.1f} | {min(values) * 1e3:.1f} | "
            f"{median * 1e3 / count:.1f} | {median / base:.2f} |"
        )


def checks(methods: dict[str, Method], data: list[bytes], preset: Preset) -> None:
    outs = {name: method(data) for name, method in methods.items()}
    device_pv, device_grid = outs["vlprep device"]
    for name in ("vlprep cpu", "nvJPEG + HF"):
        pixel_values, grid = outs[name]
        same = torch.equal(grid.cpu(), device_grid.cpu())
        print(
            f"- vlprep device vs {name}: grids equal {same}; {deviation(device_pv, pixel_values, preset) if same else 'shapes differ'}"
        )


def ttft_share(checkpoint: Path, jpeg: bytes, tokens: int, device: torch.device) -> None:
    """Preprocessing's share of time to first token for one image, CPU vs device path."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(checkpoint), local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(
        str(checkpoint), local_files_only=True, dtype=torch.bfloat16
    ).to(device)
    model.eval()
    preset = vlprep.preset_from_processor(processor)
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": jpeg, "max_pixels": tokens * preset.factor**2},
                {"type": "text", "text": "Describe this picture."},
            ],
        }
    ]
    print(f"\nTime to first token, {checkpoint.name}, one 12 MP JPEG at {tokens} tokens")
    print("| path | preprocess ms | generate(1 token) ms | preprocessing share |")
    print("|---|---:|---:|---:|")
    for label, target in (("vlprep cpu", None), ("vlprep device", device)):
        prep, gen = [], []
        for round_ in range(4):
            torch.cuda.synchronize()
            start = time.perf_counter()
            inputs = vlprep.build_inputs(conversation, processor, device=target)
            inputs = inputs.to(device)
            torch.cuda.synchronize()
            middle = time.perf_counter()
            with torch.no_grad():
                model.generate(**inputs, max_new_tokens=1, do_sample=False)
            torch.cuda.synchronize()
            if round_:  # the first round warms up
                prep.append(middle - start)
                gen.append(time.perf_counter() - middle)
        p, g = statistics.median(prep), statistics.median(gen)
        print(f"| {label} | {p * 1e3:.1f} | {g * 1e3:.1f} | {p / (p + g):.0%} |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = cuda_or_exit()
    preset = get_preset(args.family)
    print(
        f"GPU: {torch.cuda.get_device_name(device)}; CPU: {_report.cpu_model()} "
        f"({torch.get_num_threads()} torch threads); Python {platform.python_version()}, "
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), torchvision "
        f"{_report.version('torchvision')}, transformers {_report.version('transformers')}, "
        f"Pillow {_report.version('pillow')}, vlprep {vlprep.__version__}"
    )
    jpeg = _photo_jpeg()
    print(
        f"Input: 4032x3024 JPEG ({len(jpeg) / 1e6:.1f} MB), {args.family}, "
        f"{args.tokens}-token budget; {args.repeat} rounds"
    )
    methods = build_methods(preset, args.tokens, device)
    checks(methods, [jpeg], preset)
    for title, data in (
        ("One image", [jpeg]),
        (f"Batch of {args.batch}", [jpeg] * args.batch),
    ):
        report(title, measure(methods, data, args.repeat), len(data))
    if args.checkpoint is not None:
        ttft_share(args.checkpoint, jpeg, args.tokens, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
