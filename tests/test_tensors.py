"""patchify_images equals transformers' Qwen2-VL image processor (PIL backend bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen2VLImageProcessor, Qwen2VLImageProcessorPil

from tests.conftest import IMAGES, photo
from vlprep import QWEN2_VL, QWEN3_VL, InvalidInputError, Preset, fetch_image
from vlprep.tensors import patchify_images

DECODABLE = [p for p in IMAGES if p.name not in {"ultrahdr.jpg"}]


def processor(cls: type, preset: Preset) -> object:
    return cls(
        patch_size=preset.patch_size,
        image_mean=list(preset.image_mean),
        image_std=list(preset.image_std),
    )


@pytest.mark.parametrize("preset", [QWEN2_VL, QWEN3_VL], ids=lambda p: p.name)
def test_equals_transformers(preset: Preset) -> None:
    images = [fetch_image({"image": str(p)}, preset.patch_size) for p in DECODABLE[:12]]
    images.append(fetch_image({"image": photo(1000, 333)}, preset.patch_size))
    pixel_values, grid = patchify_images(images, preset)
    pil = processor(Qwen2VLImageProcessorPil, preset)(
        images=images, do_resize=False, return_tensors="pt"
    )  # type: ignore[operator]
    assert pixel_values.dtype == torch.float32 and grid.dtype == torch.int64
    assert torch.equal(grid, pil["image_grid_thw"])
    assert torch.equal(pixel_values, pil["pixel_values"])
    tv = processor(Qwen2VLImageProcessor, preset)(
        images=images, do_resize=False, return_tensors="pt"
    )  # type: ignore[operator]
    assert torch.equal(grid, tv["image_grid_thw"])
    assert (pixel_values - tv["pixel_values"]).abs().max().item() < 1e-6
    width = 3 * preset.temporal_patch_size * preset.patch_size**2
    assert pixel_values.shape == (int(grid.prod(dim=1).sum()), width)


def test_rejects_unsized_images() -> None:
    with pytest.raises(InvalidInputError, match="multiple of 28"):
        patchify_images([Image.new("RGB", (30, 28))], QWEN2_VL)
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        patchify_images([np.zeros((28, 28), np.uint8)], QWEN2_VL)
    with pytest.raises(InvalidInputError):
        patchify_images([], QWEN2_VL)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((720, 1280), (364, 644)),
        ((144, 256), (252, 448)),
        ((100, 100), (56, 56)),
        ((1080, 1920), (560, 1008)),
    ],
)
def test_resize_frame_exact_equals_qwen_video_resize(
    src: tuple[int, int], dst: tuple[int, int]
) -> None:
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    from vlprep.tensors import resize_frame

    frame = np.asarray(photo(src[1], src[0], seed=src[0]))
    reference = tvf.resize(
        torch.from_numpy(frame.copy()).permute(2, 0, 1)[None],
        list(dst),
        interpolation=InterpolationMode.BICUBIC,
        antialias=True,
    )[0]
    exact = resize_frame(frame, *dst)
    assert exact.dtype == torch.uint8 and exact.shape == (3, *dst)
    assert torch.equal(exact, reference)
    fast = resize_frame(frame, *dst, mode="fast")
    diff = (fast.int() - reference.int()).abs()
    # The uint8 kernel rounds between its two passes: measured mean < 0.2, max 4 levels here.
    assert diff.float().mean() < 0.3 and diff.max() <= 6
    with pytest.raises(InvalidInputError, match="'exact' or 'fast'"):
        resize_frame(frame, *dst, mode="slow")  # type: ignore[arg-type]
