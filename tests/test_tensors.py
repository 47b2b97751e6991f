"""patchify_images equals transformers' Qwen2-VL image processor (PIL backend bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen2VLImageProcessor, Qwen2VLImageProcessorPil

from tests.conftest import IMAGES, photo
from vlprep import QWEN2_VL, QWEN3_VL, InvalidInputError, Preset, fetch_image
from vlprep._tensors import patchify_images

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

    from vlprep._tensors import resize_frame

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


def test_level_division_equals_float64_rescale() -> None:
    # The claim the fused pass rests on: float32(x) / 255 == float32(float64(x) * (1/255)).
    levels = np.arange(256)
    reference = (levels.astype(np.float64) * (1 / 255)).astype(np.float32)
    assert np.array_equal((torch.arange(256, dtype=torch.float32) / 255.0).numpy(), reference)


@pytest.mark.parametrize("frames", [1, 4, 7])
@pytest.mark.parametrize("preset", [QWEN2_VL, QWEN3_VL], ids=lambda p: p.name)
def test_patchify_videos_equals_transformers(preset: Preset, frames: int) -> None:
    from transformers import Qwen2VLVideoProcessor
    from transformers.video_utils import VideoMetadata

    from vlprep._tensors import patchify_videos

    f = preset.factor
    gen = torch.Generator().manual_seed(frames)
    clips = [
        torch.randint(0, 256, (frames, 3, 2 * f, 3 * f), generator=gen).float(),
        torch.randint(0, 256, (frames + 2, 3, 4 * f, 2 * f), generator=gen).float(),
    ]
    video_processor = Qwen2VLVideoProcessor(
        patch_size=preset.patch_size,
        image_mean=list(preset.image_mean),
        image_std=list(preset.image_std),
    )
    metadata = [
        VideoMetadata(total_num_frames=c.shape[0], fps=2.0, frames_indices=list(range(c.shape[0])))
        for c in clips
    ]
    ref = video_processor(
        videos=clips,
        video_metadata=metadata,
        do_resize=False,
        do_sample_frames=False,
        return_tensors="pt",
    )
    pixel_values, grid = patchify_videos(clips, preset)
    assert torch.equal(grid, ref["video_grid_thw"])
    # odd frame counts: the last frame is repeated, as the processor pads
    assert grid[0, 0].item() == -(-frames // 2)
    assert pixel_values.dtype == torch.float32
    assert (pixel_values - ref["pixel_values_videos"]).abs().max().item() <= 1e-6
    # uint8 input gives the same values as integer-valued float input
    as_uint8, _ = patchify_videos([c.to(torch.uint8) for c in clips], preset)
    assert torch.equal(as_uint8, pixel_values)


def test_patchify_videos_rejects_bad_input() -> None:
    from vlprep._tensors import patchify_video, patchify_videos

    with pytest.raises(InvalidInputError, match="at least one video"):
        patchify_videos([], QWEN2_VL)
    with pytest.raises(InvalidInputError, match=r"\(T, 3, H, W\)"):
        patchify_video(torch.zeros(2, 28, 28, 3), QWEN2_VL)
    with pytest.raises(InvalidInputError, match="not a multiple of 28"):
        patchify_video(torch.zeros(2, 3, 30, 28), QWEN2_VL)
    with pytest.raises(InvalidInputError, match="uint8 or float"):
        patchify_video(torch.zeros(2, 3, 28, 28, dtype=torch.int32), QWEN2_VL)
    with pytest.raises(InvalidInputError, match="at least one frame"):
        patchify_video(torch.zeros(0, 3, 28, 28), QWEN2_VL)
    values, grid = patchify_video(np.zeros((3, 3, 56, 28), dtype=np.uint8), QWEN2_VL)
    assert grid == (2, 4, 2) and values.shape == (16, 1176)


@pytest.mark.parametrize("preset", [QWEN2_VL, QWEN3_VL], ids=lambda p: p.name)
def test_patchify_image_tensors_equals_patchify_images(preset: Preset) -> None:
    from vlprep._tensors import patchify_image_tensors

    images = [
        np.asarray(fetch_image({"image": photo(300, 200, seed=s)}, preset.patch_size))
        for s in range(3)
    ]
    expected, grid = patchify_images(images, preset)
    chw = [torch.from_numpy(a.copy()).permute(2, 0, 1) for a in images]
    for tensors in (chw, [c.float() for c in chw], [c.contiguous() for c in chw]):
        ours, ours_grid = patchify_image_tensors(tensors, preset)
        assert torch.equal(ours, expected)  # one layout, one arithmetic: bit for bit
        assert torch.equal(ours_grid, grid) and ours_grid.device.type == "cpu"
    floats = [c.float() for c in chw]
    before = [f.clone() for f in floats]
    patchify_image_tensors(floats, preset)
    assert all(torch.equal(a, b) for a, b in zip(floats, before))  # inputs untouched
    # The output follows the images' device (meta: shapes only, no data).
    meta, meta_grid = patchify_image_tensors([c.to("meta") for c in chw], preset)
    assert meta.device.type == "meta" and meta.shape == expected.shape
    assert torch.equal(meta_grid, grid)


def test_patchify_image_tensors_rejects_bad_input() -> None:
    from vlprep._tensors import patchify_image_tensors

    good = torch.zeros((3, 56, 56), dtype=torch.uint8)
    with pytest.raises(InvalidInputError, match="at least one"):
        patchify_image_tensors([], QWEN2_VL)
    with pytest.raises(InvalidInputError, match=r"\(3, H, W\)"):
        patchify_image_tensors([torch.zeros((56, 56, 3), dtype=torch.uint8)], QWEN2_VL)
    with pytest.raises(InvalidInputError, match="multiple of 28"):
        patchify_image_tensors([torch.zeros((3, 56, 30), dtype=torch.uint8)], QWEN2_VL)
    with pytest.raises(InvalidInputError, match="uint8 or float"):
        patchify_image_tensors([good.bool()], QWEN2_VL)
    with pytest.raises(InvalidInputError, match="one device"):
        patchify_image_tensors([good, good.to("meta")], QWEN2_VL)


def test_resize_exact_equals_frame_resizer() -> None:
    from vlprep._tensors import resize_exact, resize_frame

    frame = np.asarray(photo(257, 171, seed=5))
    chw = torch.from_numpy(frame.copy()).permute(2, 0, 1)
    for size in ((112, 168), (342, 514), (171, 257)):
        out = resize_exact(chw, *size)
        assert out.dtype == torch.float32 and out.shape == (3, *size)
        assert torch.equal(out, resize_frame(frame, *size).float())
        assert torch.equal(out, out.round()) and out.min() >= 0 and out.max() <= 255
    same = chw.float()
    assert resize_exact(same, 171, 257) is not same  # never the caller's tensor
    with pytest.raises(InvalidInputError, match="at least 1x1"):
        resize_exact(chw, 0, 5)


LOW_PRECISION = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("preset", [QWEN2_VL, QWEN3_VL])
def test_low_precision_images_equal_the_cast(preset: Preset, dtype: torch.dtype) -> None:
    """Written in bf16/fp16 directly, equal bit for bit to casting the float32 output."""
    from vlprep._tensors import patchify_image_tensors

    f = preset.factor
    images = [photo(4 * f, 3 * f, seed=1), photo(2 * f, 7 * f, seed=2)]
    full, grid = patchify_images(images, preset)
    low, low_grid = patchify_images(images, preset, dtype=dtype)
    assert low.dtype == dtype and torch.equal(low_grid, grid)
    assert torch.equal(low.view(torch.int16), full.to(dtype).view(torch.int16))
    tensors = [torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous() for im in images]
    dev, _ = patchify_image_tensors(tensors, preset, dtype=dtype)
    assert torch.equal(dev.view(torch.int16), low.view(torch.int16))


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("frames", [4, 5])
def test_low_precision_videos_equal_the_cast(dtype: torch.dtype, frames: int) -> None:
    from vlprep._tensors import patchify_videos

    f = QWEN2_VL.factor
    rng = np.random.default_rng(frames)
    clips = [
        torch.from_numpy(rng.integers(0, 256, (frames, 3, 2 * f, 3 * f), dtype=np.uint8)),
        torch.from_numpy(rng.integers(0, 256, (2, 3, f, f), dtype=np.uint8)).float(),
    ]
    full, grid = patchify_videos(clips, QWEN2_VL)
    low, low_grid = patchify_videos(clips, QWEN2_VL, dtype=dtype)
    assert low.dtype == dtype and torch.equal(low_grid, grid)
    assert torch.equal(low.view(torch.int16), full.to(dtype).view(torch.int16))


def test_pixel_dtype_names_and_refusals() -> None:
    from vlprep._tensors import pixel_dtype

    assert pixel_dtype(None) is torch.float32
    assert pixel_dtype("bfloat16") is torch.bfloat16
    assert pixel_dtype(torch.float16) is torch.float16
    for bad in (torch.float64, torch.int8, "half-ish", 3):
        with pytest.raises(InvalidInputError, match="pixel dtype") as info:
            pixel_dtype(bad)
        assert isinstance(info.value, ValueError)
