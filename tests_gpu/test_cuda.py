"""The CUDA checks: run by ``benchmarks/gpu_check.sh`` on a machine with a GPU.

Not under ``tests/`` (the CPU suite): without CUDA these fail loudly instead of skipping,
because running them there is a mistake, not a missing optional package.

- the device path (``build_inputs(device="cuda")``: nvJPEG decode, orientation, resize and
  patchify on the GPU) against the CPU exact path: identical sizes, grids and ids; pixels
  within the deviation bound below (printed, so the run records the measured figures);
- ``dtype=torch.bfloat16`` on the device equals the cast of the float32 device output;
- the compiled static-cache runner's greedy tokens equal the eager float32 loop's and
  ``generate``'s on a random-weight model.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import encode, media_dir, photo
from tests.hf_fixtures import load_processor, save_checkpoint
from vlprep import QWEN2_VL, build_inputs
from vlprep.runner import Runner, Sampling

if not torch.cuda.is_available():  # a GPU run without a GPU is an error, never a skip
    raise RuntimeError("tests_gpu needs a CUDA device (torch.cuda.is_available() is False)")

IMAGES = media_dir() / "images"
# Levels of the resized image (0..255). CPU-side measurement of the resize kernels alone:
# max 23, mean 0.21 (docs/inputs.md); nvJPEG's IDCT/upsampling adds its own, unmeasured
# before this run: the bound leaves room for it and the figures are printed.
MAX_LEVELS, MEAN_LEVELS = 48.0, 1.5
STD = QWEN2_VL.image_std


def _levels(
    a: torch.Tensor, b: torch.Tensor, std: tuple[float, ...], per: int
) -> tuple[float, float, float]:
    scale = torch.tensor(std, dtype=torch.float64).repeat_interleave(per)
    diff = ((a.double().cpu() - b.double().cpu()) * scale * 255).abs()
    mse = float((diff**2).mean())
    return (
        float(diff.max()),
        float(diff.mean()),
        (10 * math.log10(255**2 / mse) if mse else math.inf),
    )


@pytest.fixture(scope="module")
def processor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_processor("qwen2-vl", tmp_path_factory.mktemp("proc"), backend="pil")


@pytest.fixture(scope="module")
def photo_12mp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _media import make_photo

    path = tmp_path_factory.mktemp("media") / "photo_12mp.jpg"
    path.write_bytes(encode(make_photo(4032, 3024, np.random.default_rng(0)), "JPEG", quality=90))
    return path


def _chat(*sources: object, **keys: object) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "image", "image": s, **keys} for s in sources]
    return [{"role": "user", "content": [*content, {"type": "text", "text": "Describe."}]}]


@pytest.mark.parametrize(
    "name",
    [
        "hopper.jpg",
        "flower2.jpg",
        "hopper_orientation_6.jpg",
        "hopper_gray.jpg",
        "sugarshack.mpo",
        "transparent.png",
        "flower.webp",
    ],
)
def test_device_path_matches_cpu_path(name: str, processor: Any) -> None:
    conv = _chat(str(IMAGES / name), max_pixels=200_000)
    cpu = build_inputs(conv, processor)
    gpu = build_inputs(conv, processor, device="cuda")
    assert all(v.device.type == "cuda" for v in gpu.values())
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"):
        assert torch.equal(gpu[key].cpu(), cpu[key]), key
    per = 2 * 14 * 14
    worst, mean, psnr = _levels(gpu["pixel_values"], cpu["pixel_values"], STD, per)
    print(f"\n{name}: max {worst:.1f} levels, mean {mean:.3f}, PSNR {psnr:.1f} dB")
    assert worst <= MAX_LEVELS and mean <= MEAN_LEVELS


def test_device_12mp_and_batch(photo_12mp: Path, processor: Any) -> None:
    for conv in (
        _chat(str(photo_12mp), max_pixels=1280 * 28 * 28),
        _chat(*[str(photo_12mp)] * 4, max_pixels=1280 * 28 * 28),
    ):
        cpu = build_inputs(conv, processor)
        gpu = build_inputs(conv, processor, device="cuda")
        assert torch.equal(gpu["image_grid_thw"].cpu(), cpu["image_grid_thw"])
        worst, mean, psnr = _levels(gpu["pixel_values"], cpu["pixel_values"], STD, 2 * 14 * 14)
        print(
            f"\n12 MP x{len(conv[0]['content']) - 1}: max {worst:.1f}, mean {mean:.3f}, PSNR {psnr:.1f} dB"
        )
        assert worst <= MAX_LEVELS and mean <= MEAN_LEVELS
        low = build_inputs(conv, processor, device="cuda", dtype=torch.bfloat16)
        assert low["pixel_values"].dtype == torch.bfloat16
        assert torch.equal(
            low["pixel_values"].view(torch.int16),
            gpu["pixel_values"].to(torch.bfloat16).view(torch.int16),
        )


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_compiled_runner_tokens_equal_the_eager_float32_loop(family: str, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(family, tmp_path / family.replace(".", "_"))  # type: ignore[arg-type]
    eager = Runner.from_pretrained(checkpoint, device="cuda", dtype="float32", decode_mode="eager")
    compiled = Runner.from_pretrained(
        checkpoint, device="cuda", dtype="float32", decode_mode="compiled"
    )
    batch = [_chat(photo(160, 100)), _chat(photo(90, 200, seed=3))]
    a = eager.run(batch, Sampling(max_new_tokens=12))
    b = compiled.run(batch, Sampling(max_new_tokens=12))
    print(f"\n{family}: compiled mode used {b.decode_mode}")
    assert b.decode_mode == "compiled"
    assert a.token_ids == b.token_ids
    inputs = eager.prepare(batch)
    with torch.no_grad():
        ref = eager.model.generate(**inputs, max_new_tokens=12, do_sample=False)
    ref = ref[:, inputs["input_ids"].shape[1] :].tolist()
    for ours, theirs in zip(a.token_ids, ref, strict=True):
        assert ours == theirs[: len(ours)]
