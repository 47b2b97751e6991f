"""fetch_image equals qwen-vl-utils 0.0.14 byte for byte, except the listed deviations."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from qwen_vl_utils import vision_process as qv

from tests.conftest import IMAGES, encode, photo
from vlprep import DecodeError, ImageOptions, InvalidInputError, fetch_image

logging.getLogger("qwen_vl_utils.vision_process").setLevel(logging.ERROR)

EXIF_ROTATED = {f"hopper_orientation_{i}.jpg" for i in range(2, 9)} | {
    "exif_imagemagick_orientation.png"
}
TRANSPARENT_NON_RGBA = {
    "caption_6_33_22.png",
    "p_trns_single.png",
    "pil123p.png",
    "uncompressed_la.png",
    "1_trns.png",
    "l_trns.png",
}
NEEDS_PLUGIN = {"hopper.heif"}  # qwen-vl-utils cannot open it; vlprep uses the heif extra
TRUNCATED = {"ultrahdr.jpg"}  # the shared file is cut short after 48 KB (see docs/deviations.md)


def as_array(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def qwen(source: Any, patch: int, **ele: Any) -> np.ndarray:
    if isinstance(source, str) and Path(source).is_file():
        # qwen-vl-utils would call Image.open(path) itself and leak the handle; same pixels.
        with Image.open(source) as opened:
            return as_array(qv.fetch_image({"image": opened, **ele}, image_patch_size=patch))
    return as_array(qv.fetch_image({"image": source, **ele}, image_patch_size=patch))


def opened(path: Path, mode: str | None = None) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image.convert(mode) if mode else image.copy()


def ours(source: Any, patch: int, options: ImageOptions | None = None, **ele: Any) -> np.ndarray:
    return as_array(fetch_image({"image": source, **ele}, patch, image_options=options))


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
@pytest.mark.parametrize("patch", [14, 16])
def test_shared_images(path: Path, patch: int) -> None:
    name = path.name
    if name in TRUNCATED:
        with pytest.raises(DecodeError, match="corrupt or truncated"):
            fetch_image({"image": str(path)}, patch)
        return
    got = ours(str(path), patch)
    if name in NEEDS_PLUGIN:
        reference = qwen(opened(path, "RGB"), patch)
        np.testing.assert_array_equal(got, reference)
        return
    if name in EXIF_ROTATED:
        # Deviation: displayed orientation. Same as qwen on the transposed picture ...
        upright = ImageOps.exif_transpose(opened(path))
        np.testing.assert_array_equal(got, qwen(upright, patch))
        # ... and exif_transpose=False restores qwen-vl-utils' result exactly.
        np.testing.assert_array_equal(
            ours(str(path), patch, ImageOptions(exif_transpose=False)), qwen(str(path), patch)
        )
        return
    if name in TRANSPARENT_NON_RGBA:
        # Deviation: every transparent mode goes through the RGBA-on-white path.
        rgba = opened(path, "RGBA")
        np.testing.assert_array_equal(got, qwen(rgba, patch))
        return
    np.testing.assert_array_equal(got, qwen(str(path), patch))


def test_orientation_6_turns_landscape_into_portrait(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    path.write_bytes(encode(photo(400, 200), "JPEG", exif=exif.tobytes()))
    assert fetch_image({"image": str(path)}).size == (196, 392)  # (w, h): portrait
    assert qv.fetch_image({"image": str(path)}).size == (392, 196)
    assert fetch_image({"image": str(path)}, image_options=ImageOptions(exif_transpose=False)).size == (
        392,
        196,
    )


SIZES = [
    (4032, 3024),
    (1920, 1080),
    (640, 480),
    (333, 501),
    (17, 900),
    (3000, 15),
    (1, 1),
    (29, 57),
    (2000, 2000),
]
BOUNDS: list[dict[str, Any]] = [
    {},
    {"max_pixels": 1280 * 28 * 28},
    {"min_pixels": 256 * 28 * 28, "max_pixels": 1280 * 28 * 28},
    {"min_pixels": 512 * 28 * 28},
    {"resized_height": 280, "resized_width": 420},
    {"resized_height": 1000},
]


@pytest.mark.parametrize(
    ("width", "height", "fmt"),
    [(w, h, "JPEG") for w, h in SIZES] + [(w, h, "PNG") for w, h in SIZES if w * h < 1_000_000],
)
def test_generated_photos_all_bounds(tmp_path: Path, width: int, height: int, fmt: str) -> None:
    path = tmp_path / f"p.{fmt.lower()}"
    path.write_bytes(encode(photo(width, height, seed=width), fmt))
    for patch in (14, 16):
        for ele in BOUNDS:
            np.testing.assert_array_equal(
                ours(str(path), patch, **ele),
                qwen(str(path), patch, **ele),
                err_msg=str((patch, ele)),
            )


def test_every_source_form_gives_the_same_pixels(tmp_path: Path) -> None:
    picture = photo(300, 200, seed=3)
    data = encode(picture, "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    expected = qwen(str(path), 14)
    forms: list[dict[str, Any]] = [
        {"image": str(path)},
        {"image": path.as_uri()},
        {"image": f"data:image/png;base64,{b64}"},
        {"image": f"data:image;base64,{b64}"},
        {"image_url": str(path)},
        {"image_url": {"url": f"data:image/png;base64,{b64}"}},
        {"type": "image_url", "image_url": {"url": str(path)}},
        {"image": data},
        {"image": Image.open(io.BytesIO(data))},
        {"image": np.asarray(picture)},
        {"image": torch.from_numpy(np.array(picture)).permute(2, 0, 1)},
    ]
    for ele in forms:
        np.testing.assert_array_equal(as_array(fetch_image(ele)), expected, err_msg=str(list(ele)))
    assert expected.shape == (196, 308, 3)


def test_gray_and_rgba_arrays() -> None:
    gray = np.full((50, 60), 128, np.uint8)
    assert fetch_image({"image": gray}).getpixel((0, 0)) == (128, 128, 128)
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[..., 0] = 255
    out = fetch_image({"image": rgba})
    assert out.size == (112, 112)
    np.testing.assert_array_equal(as_array(out), qwen(Image.fromarray(rgba), 14))
    assert out.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 5), np.uint8), "channels"),
        (torch.zeros((3, 10, 10), dtype=torch.float32), "uint8"),
        (torch.zeros((10, 10, 3), dtype=torch.uint8), "CHW"),
        (12345, "unsupported image source"),
    ],
)
def test_bad_array_sources(value: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        fetch_image({"image": value})


def test_lone_resized_height_is_ignored_like_qwen(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(encode(photo(300, 200), "PNG"))
    assert fetch_image({"image": str(path), "resized_height": 1000}).size == (308, 196)


@pytest.mark.parametrize(
    ("ele", "match"),
    [
        ({}, "'image' or 'image_url'"),
        ({"image": "x.png", "min_pixels": 10, "max_pixels": 5}, "min_pixels"),
        ({"image": "x.png", "max_pixels": "big"}, "must be a number"),
        ({"image": "x.png", "resized_height": 0, "resized_width": 10}, "> 0"),
        ({"image": "x.png", "video": "y.mp4"}, "both"),
        ({"image_url": {"href": "x"}}, "'url'"),
    ],
)
def test_element_errors(ele: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        fetch_image(ele)


def test_image_patch_size_checked() -> None:
    with pytest.raises(InvalidInputError):
        fetch_image({"image": np.zeros((4, 4, 3), np.uint8)}, image_patch_size=0)
