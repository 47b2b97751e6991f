"""The fast image mode: reduced-scale JPEG decode + uint8 resize, same sizes as exact."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import IMAGES, encode, photo
from vlprep import (
    QWEN2_5_VL,
    QWEN3_VL,
    DecodeError,
    ImageOptions,
    InvalidInputError,
    fetch_image,
    process_vision_info,
)
from vlprep._decode.image import decode_image_for
from vlprep._image import fetch_image_for
from vlprep._tensors import resize_uint8

FAST = ImageOptions(decode="fast")
EXACT = ImageOptions()
TRUNCATED = {"ultrahdr.jpg"}  # the shared file is cut short after 48 KB (docs/deviations.md)
DECODABLE = [p for p in IMAGES if p.name not in TRUNCATED]  # HEIF too: the heif extra is a test dep
PHOTO = next(p for p in IMAGES if p.name == "flower2.jpg")


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def max_diff(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, quality=92, exif=exif.tobytes())


def test_a_truncated_jpeg_fails_the_same_way_in_fast_mode() -> None:
    path = next(p for p in IMAGES if p.name == "ultrahdr.jpg")
    for max_pixels in (None, 64 * 28 * 28):
        ele = {"image": str(path), "max_pixels": max_pixels} if max_pixels else {"image": str(path)}
        with pytest.raises(DecodeError, match="corrupt or truncated"):
            fetch_image(ele, 14, image_options=FAST)


def test_decode_option_is_validated() -> None:
    with pytest.raises(
        InvalidInputError, match=r"ImageOptions.decode must be one of \['exact', 'fast'\]"
    ):
        ImageOptions(decode="turbo")  # type: ignore[arg-type]
    assert ImageOptions().decode == "exact"  # exact stays the default


@pytest.mark.parametrize("path", DECODABLE, ids=lambda p: p.name)
@pytest.mark.parametrize("max_pixels", [None, 8 * 28 * 28])
def test_fast_mode_gives_the_exact_size_and_close_pixels(
    path: Path, max_pixels: int | None
) -> None:
    ele: dict[str, object] = {"image": str(path)}
    if max_pixels is not None:
        ele["max_pixels"] = max_pixels
    exact = fetch_image(ele, 14)
    fast = fetch_image(ele, 14, image_options=FAST)
    assert fast.mode == "RGB" and fast.size == exact.size
    # Measured on these files: >= 33 dB where the DCT scale kicks in (8x8 blocks of a
    # 128-pixel picture reduced to 56), >= 45 dB elsewhere; see docs/deviations.md.
    assert psnr(fast, exact) > 30


@pytest.mark.parametrize("preset", [QWEN2_5_VL, QWEN3_VL], ids=lambda p: p.name)
def test_fetch_image_for_fast_mode_keeps_the_preset_size(preset: object) -> None:
    ele = {"image": str(PHOTO), "max_pixels": 16 * 28 * 28}
    exact = fetch_image_for(ele, preset, image_options=EXACT)  # type: ignore[arg-type]
    fast = fetch_image_for(ele, preset, image_options=FAST)  # type: ignore[arg-type]
    assert fast.size == exact.size
    assert psnr(fast, exact) > 30  # 35 dB measured: a 300x225 photo cut to ~100 pixels wide


def test_jpeg_is_decoded_at_the_largest_scale_not_below_the_target() -> None:
    data = encode(photo(4032, 3024, seed=1), quality=90)
    for target, reduced in [
        ((840, 1148), (1512, 2016)),  # 1/2: 1/4 would be 756 x 1008, below 840 rows
        ((700, 980), (756, 1008)),  # 1/4
        ((364, 504), (378, 504)),  # 1/8
        ((3024, 4032), (3024, 4032)),  # full size
    ]:
        image, got = decode_image_for(data, FAST, lambda h, w, t=target: t)
        assert got == target
        assert (image.height, image.width) == reduced
        image, _ = decode_image_for(data, EXACT, lambda h, w, t=target: t)
        assert (image.height, image.width) == (3024, 4032)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_rotated_jpeg_is_reduced_in_its_upright_frame(orientation: int) -> None:
    stored = photo(1600, 1200, seed=2)  # landscape as stored
    data = with_orientation(stored, orientation)
    seen: list[tuple[int, int]] = []

    def target_of(h: int, w: int) -> tuple[int, int]:
        seen.append((h, w))
        return (h // 4, w // 4)

    image, target = decode_image_for(data, FAST, target_of)
    upright = (1600, 1200) if orientation in (6, 8) else (1200, 1600)
    assert seen == [upright]  # the target comes from the full upright size
    assert target == (upright[0] // 4, upright[1] // 4)
    assert (image.height, image.width) == target  # 1/4 scale hits it exactly
    exact, _ = decode_image_for(data, EXACT, target_of)
    reduced = exact.resize((target[1], target[0]), Image.Resampling.BICUBIC)
    assert psnr(image, reduced) > 30  # same picture, same way up


def test_fast_mode_on_a_large_photo_matches_exact_closely() -> None:
    data = encode(photo(4032, 3024, seed=3), quality=90)
    ele = {"image": data, "max_pixels": 1280 * 28 * 28}
    exact = fetch_image(ele, 14)
    fast = fetch_image(ele, 14, image_options=FAST)
    assert fast.size == exact.size == (1148, 840)
    assert psnr(fast, exact) > 40


def test_fast_mode_handles_every_source_kind() -> None:
    picture = photo(300, 200, seed=5)
    data = encode(picture)
    arr = np.asarray(picture)
    for source in (picture, data, arr, torch.from_numpy(np.array(arr)).permute(2, 0, 1)):
        ele = {"image": source, "max_pixels": 32 * 28 * 28}
        fast = fetch_image(ele, 14, image_options=FAST)
        exact = fetch_image(ele, 14)
        assert fast.size == exact.size
        assert psnr(fast, exact) > 35
    same = fetch_image(
        {"image": picture, "resized_height": 200, "resized_width": 308}, 14, image_options=FAST
    )
    assert same is not picture


def test_resize_uint8_equals_torch_interpolate() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (301, 457, 3), dtype=np.uint8)
    for height, width in [(140, 224), (28, 28), (600, 900), (301, 457)]:
        ours = resize_uint8(arr, height, width)
        nchw = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)
        ref = torch.nn.functional.interpolate(
            nchw, size=(height, width), mode="bicubic", antialias=True, align_corners=False
        )
        assert ours.shape == (height, width, 3) and ours.dtype == np.uint8
        assert np.array_equal(ours, ref[0].permute(1, 2, 0).numpy())
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        resize_uint8(arr.astype(np.float32), 28, 28)


def test_resize_uint8_fallback_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    direct = resize_uint8(arr, 84, 112)

    class Missing:
        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    monkeypatch.setattr(torch.ops, "aten", Missing())
    assert np.array_equal(resize_uint8(arr, 84, 112), direct)


def test_process_vision_info_takes_the_fast_mode() -> None:
    photos = [encode(photo(1200, 900, seed=s)) for s in range(3)]
    chat = [
        {"role": "user", "content": [{"image": p, "max_pixels": 128 * 28 * 28} for p in photos]}
    ]
    fast, _ = process_vision_info(chat, image_options=FAST)
    exact, _ = process_vision_info(chat)
    assert [im.size for im in fast] == [im.size for im in exact]
    assert all(psnr(a, b) > 35 for a, b in zip(fast, exact, strict=True))


def test_cmyk_and_grayscale_jpegs_in_fast_mode() -> None:
    rgb = next(p for p in IMAGES if p.name == "pil_sample_rgb.jpg")
    cmyk = next(p for p in IMAGES if p.name == "pil_sample_cmyk.jpg")
    gray = next(p for p in IMAGES if p.name == "hopper_gray.jpg")
    small = {"max_pixels": 4 * 28 * 28}
    a = fetch_image({"image": str(cmyk), **small}, 14, image_options=FAST)
    b = fetch_image({"image": str(rgb), **small}, 14, image_options=FAST)
    assert a.mode == b.mode == "RGB" and a.size == b.size
    assert psnr(a, b) > 25  # the two files are encoded separately; colours must agree
    g = fetch_image({"image": str(gray), **small}, 14, image_options=FAST)
    channels = np.asarray(g)
    assert np.array_equal(channels[..., 0], channels[..., 1])


def test_exif_transpose_off_keeps_the_stored_frame_in_fast_mode() -> None:
    data = with_orientation(photo(800, 400, seed=6), 6)
    ele = {"image": data, "max_pixels": 64 * 28 * 28}
    options = ImageOptions(decode="fast", exif_transpose=False)
    fast = fetch_image(ele, 14, image_options=options)
    exact = fetch_image(ele, 14, image_options=ImageOptions(exif_transpose=False))
    assert fast.size == exact.size and fast.width > fast.height
    assert psnr(fast, exact) > 35


def test_bytes_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    import vlprep._image as image_module

    real = image_module.fetch

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(image_module, "fetch", counting)
    buf = io.BytesIO()
    photo(640, 480).save(buf, "JPEG")
    fetch_image({"image": buf.getvalue()}, 14, image_options=FAST)
    assert len(calls) == 1


def test_the_cache_keeps_fast_and_exact_results_apart() -> None:
    from vlprep import MediaCache

    cache = MediaCache(max_bytes=64 << 20)
    data = encode(photo(1600, 1200, seed=8))
    ele = {"image": data, "max_pixels": 256 * 28 * 28}
    fast = fetch_image(ele, 14, image_options=FAST, cache=cache)
    exact = fetch_image(ele, 14, cache=cache)
    assert cache.stats.misses == 2  # the decode mode is part of the key
    assert fetch_image(ele, 14, image_options=FAST, cache=cache).tobytes() == fast.tobytes()
    assert fetch_image(ele, 14, cache=cache).tobytes() == exact.tobytes()
    assert cache.stats.hits == 2
    assert fast.tobytes() == fetch_image(ele, 14, image_options=FAST).tobytes()
