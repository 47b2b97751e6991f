"""The device image path (images_to_device, build_inputs(device=...)), exercised on CPU.

``device="cpu"`` runs the same code as CUDA (torchvision's CPU ``decode_jpeg`` instead of
nvJPEG); ``device="meta"`` checks where tensors end up without a GPU. Pixel bounds are in
levels (0..255) of the resized images, measured against the CPU exact path (Pillow decode
and Pillow bicubic): torchvision's CPU JPEG decoder gives Pillow's bytes here, so the
difference is the resize kernel (float bicubic antialias vs Pillow's fixed-point bicubic,
which rounds and clips between its two passes).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import encode, media_dir, photo
from tests.hf_fixtures import FAMILIES, Family, load_processor
from tests.videos import write_clip
from vlprep import (
    QWEN2_5_VL,
    QWEN2_VL,
    QWEN3_VL,
    BackendUnavailableError,
    DecodeError,
    ImageOptions,
    InvalidInputError,
    Preset,
    ResourceLimitError,
    build_inputs,
)
from vlprep import _device_images as dev
from vlprep._decode._pillow import _TRANSPOSE
from vlprep._image import fetch_image_for
from vlprep._presets import preset_from_processor
from vlprep._tensors import patchify_images

IMAGES = media_dir() / "images"
HOSTILE = media_dir() / "hostile"
PRESETS = [QWEN2_VL, QWEN2_5_VL, QWEN3_VL]
# The shared photos the device path must size like the CPU path: plain, grayscale and CMYK
# JPEG, every EXIF orientation, MPO, PNG with alpha / palette / tRNS, WebP, GIF, BMP.
PHOTOS = [
    "hopper.jpg",
    "hopper_gray.jpg",
    "flower2.jpg",
    *[f"hopper_orientation_{n}.jpg" for n in range(2, 9)],
    "pil_sample_cmyk.jpg",
    "pil_sample_rgb.jpg",
    "sugarshack.mpo",
    "transparent.png",
    "pil123rgba.png",
    "pil123p.png",
    "p_trns_single.png",
    "exif_imagemagick_orientation.png",
    "flower.webp",
    "hopper.gif",
    "hopper.bmp",
]
HARD_EDGES = {"1_trns.png"}  # a 1-bit drawing: where the two bicubic kernels differ most
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*cap_pixels_per_frame.*"),
    pytest.mark.filterwarnings("ignore:.*per-frame pixel cap.*"),
]


def _levels(ours: torch.Tensor, exact: torch.Tensor, preset: Preset) -> tuple[float, float, float]:
    """(max, mean, PSNR dB) of the resized images' difference, read off pixel_values."""
    per_channel = preset.temporal_patch_size * preset.patch_size**2
    std = torch.tensor(preset.image_std, dtype=torch.float64).repeat_interleave(per_channel)
    diff = ((ours.double() - exact.double()) * std * 255).abs()
    mse = float((diff**2).mean())
    psnr = 10 * math.log10(255**2 / mse) if mse else math.inf
    return float(diff.max()), float(diff.mean()), psnr


def _cpu_exact(elements: list[dict[str, Any]], preset: Preset) -> tuple[torch.Tensor, torch.Tensor]:
    return patchify_images([fetch_image_for(e, preset) for e in elements], preset)


class _Counting:
    """The real torchvision decoder, counting calls and images."""

    def __init__(self) -> None:
        self.inner = dev.jpeg_decoder()
        self.calls: list[int] = []

    def __call__(self, data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        self.calls.append(len(data))
        return self.inner(data, device)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> _Counting:
    spy = _Counting()
    monkeypatch.setattr(dev, "jpeg_decoder", lambda: spy)
    return spy


@pytest.fixture(scope="module")
def photo_12mp() -> bytes:
    """A 4032x3024 photo-like JPEG (quality 90), about 2.6 MB."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _media import make_photo

    return encode(make_photo(4032, 3024, np.random.default_rng(0)), "JPEG", quality=90)


def test_orient_matches_pillow_transposes() -> None:
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    chw = torch.from_numpy(array).permute(2, 0, 1)
    assert dev.orient(chw, 1) is chw
    for orientation, method in _TRANSPOSE.items():
        expected = np.asarray(Image.fromarray(array).transpose(method))
        got = dev.orient(chw, orientation).permute(1, 2, 0).numpy()
        assert np.array_equal(got, expected), orientation


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_sizes_equal_cpu_path_and_pixels_close(preset: Preset) -> None:
    names = [*PHOTOS, *sorted(HARD_EDGES)]
    for name in names:
        elements = [{"image": str(IMAGES / name)}]
        ours, grid = dev.images_to_device(elements, preset, "cpu")
        exact, exact_grid = _cpu_exact(elements, preset)
        assert torch.equal(grid, exact_grid), name
        assert ours.shape == exact.shape and ours.dtype == torch.float32
        worst, mean, psnr = _levels(ours, exact, preset)
        # Measured (3 presets): max 23 levels (p_trns_single.png; JPEGs <= 15), mean <= 0.21,
        # PSNR >= 52.9 dB; the 1-bit drawing max 27, mean 2.1, PSNR 34.4 dB.
        if name in HARD_EDGES:
            assert worst <= 32 and mean <= 2.5 and psnr >= 33, (name, worst, mean, psnr)
        else:
            assert worst <= 24 and mean <= 0.25 and psnr >= 52, (name, worst, mean, psnr)


def test_no_resize_means_same_pixels() -> None:
    # sugarshack.mpo is 640x480, a multiple of 32: nothing to resize for Qwen3-VL, and
    # torchvision's CPU decoder gives Pillow's bytes, so the device path equals exact.
    elements = [{"image": str(IMAGES / "sugarshack.mpo")}]
    ours, _ = dev.images_to_device(elements, QWEN3_VL, "cpu")
    assert torch.equal(ours, _cpu_exact(elements, QWEN3_VL)[0])


@pytest.mark.parametrize("preset", [QWEN2_VL, QWEN3_VL], ids=lambda p: p.name)
def test_12mp_jpeg_at_1280_tokens(preset: Preset, photo_12mp: bytes, counting: _Counting) -> None:
    elements = [{"image": photo_12mp, "max_pixels": 1280 * preset.factor**2}]
    ours, grid = dev.images_to_device(elements, preset, "cpu")
    exact, exact_grid = _cpu_exact(elements, preset)
    assert torch.equal(grid, exact_grid)
    assert int(grid.prod()) // preset.merge_size**2 <= 1280
    worst, mean, psnr = _levels(ours, exact, preset)
    # Measured: max 2 (Qwen2-VL) / 1 (Qwen3-VL) levels, mean 0.11-0.12, PSNR 57.4-57.7 dB.
    assert worst <= 3 and mean <= 0.2 and psnr >= 55, (worst, mean, psnr)
    assert counting.calls == [1]


def test_exif_transpose_off_keeps_stored_orientation() -> None:
    options = ImageOptions(exif_transpose=False)
    for n in (3, 6):
        elements = [{"image": str(IMAGES / f"hopper_orientation_{n}.jpg"), "max_pixels": 20_000}]
        ours, grid = dev.images_to_device(elements, QWEN2_VL, "cpu", options=options)
        exact = patchify_images([fetch_image_for(elements[0], QWEN2_VL, image_options=options)], QWEN2_VL)
        assert torch.equal(grid, exact[1])
        assert _levels(ours, exact[0], QWEN2_VL)[2] >= 52


def test_one_batched_decode_per_batch(counting: _Counting) -> None:
    elements = [
        {"image": str(IMAGES / "hopper_orientation_6.jpg")},
        {"image": str(IMAGES / "transparent.png")},  # CPU decode
        {"image": encode(photo(300, 200), "JPEG")},  # bytes: an already fetched payload
        {"image": str(IMAGES / "pil_sample_cmyk.jpg")},  # CMYK: CPU decode
        {"image": photo(90, 120, seed=2)},  # PIL source: CPU
        {"image": str(IMAGES / "hopper_gray.jpg"), "max_pixels": 9000},
    ]
    ours, grid = dev.images_to_device(elements, QWEN2_5_VL, "cpu", workers=3)
    assert counting.calls == [3]  # the three RGB/gray JPEGs, in one call
    exact, exact_grid = _cpu_exact(elements, QWEN2_5_VL)
    assert torch.equal(grid, exact_grid)
    assert _levels(ours, exact, QWEN2_5_VL)[2] >= 52
    counting.calls.clear()
    dev.images_to_device(elements[1::3], QWEN2_5_VL, "cpu")  # PNG and CMYK only
    assert counting.calls == []


def test_tensors_land_on_the_requested_device() -> None:
    elements = [{"image": str(IMAGES / "hopper.jpg")}, {"image": str(IMAGES / "hopper.png")}]
    pixel_values, grid = dev.images_to_device(elements, QWEN2_VL, "meta")
    assert pixel_values.device.type == "meta" and pixel_values.dtype == torch.float32
    assert grid.device.type == "cpu" and grid.tolist() == [[1, 10, 10], [1, 10, 10]]


def test_bad_device() -> None:
    element = [{"image": str(IMAGES / "hopper.jpg")}]
    with pytest.raises(InvalidInputError, match="not a torch device"):
        dev.images_to_device(element, QWEN2_VL, "gpu-please")
    with pytest.raises(InvalidInputError, match="at least one"):
        dev.images_to_device([], QWEN2_VL, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match=r"torch.cuda.is_available\(\) is False"):
            dev.images_to_device(element, QWEN2_VL, "cuda")


def test_missing_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'vlprep\[gpu\]'") as info:
        dev.images_to_device([{"image": str(IMAGES / "hopper.png")}], QWEN2_VL, "cpu")
    assert isinstance(info.value, ImportError)


def test_corrupt_jpeg_is_a_decode_error_naming_the_item(counting: _Counting) -> None:
    truncated = (HOSTILE / "truncated_jpeg.jpg").read_bytes()
    elements = [{"image": str(IMAGES / "hopper.jpg")}, {"image": truncated}]
    with pytest.raises(DecodeError, match=r"JPEG image 2 of 2 \(<6698 bytes>\) on cpu") as info:
        dev.images_to_device(elements, QWEN2_VL, "cpu")
    assert "truncated" in str(info.value)
    assert truncated[:64].hex() not in str(info.value) and "\\x" not in str(info.value)
    assert counting.calls[0] == 2  # the batch, then one at a time only to name the culprit


def test_jpeg_refused_by_both_paths() -> None:
    # ultrahdr.jpg (a phone JPEG with a gain map) stops with "corrupt data" in torchvision's
    # CPU decoder, as it does in Pillow 13 on the CPU path: a DecodeError either way.
    element = {"image": str(IMAGES / "ultrahdr.jpg"), "max_pixels": 50_000}
    with pytest.raises(DecodeError, match=r"JPEG image 1 of 1 \('/.*ultrahdr.jpg'\) on cpu"):
        dev.images_to_device([element], QWEN2_VL, "cpu")
    with pytest.raises(DecodeError):
        fetch_image_for(element, QWEN2_VL)


def test_batch_only_failure_is_reported() -> None:
    def flaky(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        if len(data) > 1:
            raise RuntimeError("nvjpeg batch failure")
        return dev.jpeg_decoder()(data, device)

    elements = [{"image": str(IMAGES / "hopper.jpg")}, {"image": str(IMAGES / "flower2.jpg")}]
    with pytest.raises(DecodeError, match="each image decodes alone"):
        dev.images_to_device(elements, QWEN2_VL, "cpu", decoder=flaky)


def test_device_memory_exhaustion_is_a_resource_limit() -> None:
    def exhausted(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    elements = [{"image": str(IMAGES / "hopper.jpg")}]
    with pytest.raises(ResourceLimitError, match="memory to decode 1 JPEG"):
        dev.images_to_device(elements, QWEN2_VL, "cpu", decoder=exhausted)


def test_limits_checked_before_any_decode(counting: _Counting) -> None:
    with pytest.raises(ResourceLimitError, match=r"decompression bomb|above the limit"):
        dev.images_to_device([{"image": str(HOSTILE / "decompression_bomb.gif")}], QWEN2_VL, "cpu")
    # A JPEG whose header claims 65,000 x 65,000 pixels: refused from the header.
    small = bytearray(encode(photo(64, 48), "JPEG"))
    sof = small.index(b"\xff\xc0")
    small[sof + 5 : sof + 9] = (65_000).to_bytes(2, "big") * 2
    with pytest.raises(ResourceLimitError, match="claims more than 89478485 pixels"):
        dev.images_to_device([{"image": bytes(small)}], QWEN2_VL, "cpu")
    tight = ImageOptions(max_source_pixels=10_000)
    with pytest.raises(ResourceLimitError, match="16384 pixels"):
        dev.images_to_device(
            [{"image": str(IMAGES / "hopper.jpg")}], QWEN2_VL, "cpu", options=tight
        )
    assert counting.calls == []  # nothing reached the decoder


def _user(*content: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(content)}]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=12, fps=6)


@pytest.mark.parametrize("family", FAMILIES)
def test_build_inputs_device_equals_cpu_path(
    family: Family, tmp_path_factory: pytest.TempPathFactory, clip: Path, counting: _Counting
) -> None:
    processor = load_processor(family, tmp_path_factory.mktemp("processors"))
    conversations = [
        _user(
            {"type": "image", "image": str(IMAGES / "hopper_orientation_6.jpg")},
            {"type": "video", "video": str(clip), "nframes": 4},
            {"type": "image", "image": str(IMAGES / "transparent.png")},
            {"type": "text", "text": "compare"},
        ),
        _user(
            {"type": "image", "image": encode(photo(333, 201, seed=3), "JPEG")},
            {"type": "image", "image": str(IMAGES / "pil_sample_cmyk.jpg"), "max_pixels": 40_000},
            {"type": "text", "text": "and these"},
        ),
    ]
    cpu = build_inputs(conversations, processor)
    ours = build_inputs(conversations, processor, device="cpu")
    assert counting.calls == [2]  # both conversations' RGB JPEGs in one call
    assert sorted(ours.keys()) == sorted(cpu.keys())
    for key in cpu:
        if key != "pixel_values":
            assert torch.equal(ours[key], cpu[key]), key  # ids, masks, grids, videos: identical
    preset = preset_from_processor(processor)
    assert _levels(ours["pixel_values"], cpu["pixel_values"], preset)[2] >= 52
    moved = build_inputs(conversations, processor, device="meta")
    assert {value.device.type for value in moved.values()} == {"meta"}
    assert all(moved[key].shape == cpu[key].shape for key in cpu)


def test_build_inputs_device_validation_and_text_only(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    processor = load_processor("qwen2-vl", tmp_path_factory.mktemp("processors"))
    text_only = _user({"type": "text", "text": "hi"})
    with pytest.raises(InvalidInputError, match="not a torch device"):
        build_inputs(text_only, processor, device="nowhere")
    # No image, no decoder needed: torchvision is not imported for text and videos.
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    ours = build_inputs(text_only, processor, device="meta")
    assert ours["input_ids"].device.type == "meta"
    with pytest.raises(BackendUnavailableError, match="vlprep"):
        build_inputs(
            _user({"type": "image", "image": str(IMAGES / "hopper.jpg")}), processor, device="cpu"
        )
