"""vlprep.planning: one answer for the upright size, the resized size and the frame plan.

Every path that sizes an element (the loaders, ``vlprep.inspect``, the device path,
grounding) goes through the planner, so they agree; these tests feed them the same
sources and compare.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

import vlprep
from tests.conftest import encode, media_dir, photo
from vlprep import device_images as dev
from vlprep import grounding as g
from vlprep.decode.image import ImageOptions, decode_image, probe_header
from vlprep.image import HEADER_PREFIX, fetch_image_for, load_image, read_header
from vlprep.planning import upright_size
from vlprep.presets import QWEN2_5_VL, QWEN3_VL, Preset


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def late_exif_png(upright: Image.Image, orientation: int = 6) -> bytes:
    """A PNG whose only ``eXIf`` chunk (``orientation``) follows the pixel data."""
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    data = encode(stored, "PNG")
    exif = Image.Exif()
    exif[0x0112] = orientation
    assert data[-12:-8] == b"\x00\x00\x00\x00" and data[-8:-4] == b"IEND"
    return data[:-12] + _chunk(b"eXIf", exif.tobytes()) + data[-12:]


def _sources(tmp_path: Path) -> list[tuple[str, object]]:
    big = late_exif_png(photo(300, 200, seed=5))  # noise: well past the 64 KiB prefix
    assert len(big) > HEADER_PREFIX
    path = tmp_path / "late.png"
    path.write_bytes(big)
    small = late_exif_png(Image.new("RGB", (90, 40), (10, 200, 30)))
    named = [
        ("late-exif-png-path", str(path)),
        ("late-exif-png-bytes", big),
        ("late-exif-png-small", small),
        ("imagemagick-png", str(media_dir() / "images" / "exif_imagemagick_orientation.png")),
    ]
    named += [
        (f"jpeg-{o}", str(media_dir() / "images" / f"hopper_orientation_{o}.jpg"))
        for o in range(2, 9)
    ]
    named.append(("jpeg-6-rect", encode(photo(120, 60, seed=2).rotate(90, expand=True), "JPEG")))
    return named


def test_late_exif_png_header_equals_decode() -> None:
    data = late_exif_png(photo(300, 200, seed=5))
    header = probe_header(data)
    assert header.orientation == 6
    assert header.display_size == (200, 300)
    assert decode_image(data).size == (300, 200)
    # With exif_transpose off neither the header nor the decode turns it.
    off = ImageOptions(exif_transpose=False)
    assert probe_header(data, off).display_size == (300, 200)
    assert decode_image(data, off).size == (200, 300)


def test_cut_png_needs_the_whole_file(tmp_path: Path) -> None:
    data = late_exif_png(photo(300, 200, seed=5))
    # The first bytes alone show no orientation: read_header goes on to IEND.
    assert probe_header(data[: HEADER_PREFIX + 100]).orientation == 1
    path = tmp_path / "late.png"
    path.write_bytes(data)
    found = read_header(str(path), prefix=HEADER_PREFIX)
    assert upright_size(found) == (200, 300)


@pytest.mark.parametrize("p", [QWEN2_5_VL, QWEN3_VL], ids=lambda p: p.name)
def test_every_path_gives_one_upright_and_resized_size(tmp_path: Path, p: Preset) -> None:
    named = _sources(tmp_path)
    elements = [{"image": source, "max_pixels": 200_000} for _, source in named]
    device_values, device_grid = dev.images_to_device(elements, p, "cpu")
    for row, ((name, source), ele) in enumerate(zip(named, elements, strict=True)):
        decoded = load_image(source)
        upright = (decoded.height, decoded.width)
        fetched = fetch_image_for(ele, p)
        resized = (fetched.height, fetched.width)
        est = vlprep.inspect(ele, p)
        assert (est.original_height, est.original_width) == upright, name
        assert (est.height, est.width) == resized, name
        original, grounded = g.image_sizes(ele, p)
        assert original == upright, name
        assert grounded == resized, name
        grid = tuple(int(v) for v in device_grid[row])
        assert grid == est.grid, name
        assert upright_size(read_header(source, prefix=HEADER_PREFIX)) == upright, name
        data = source if isinstance(source, bytes) else Path(str(source)).read_bytes()
        lazy = Image.open(io.BytesIO(data))
        assert upright_size(lazy) == upright, name
    assert device_values.shape[0] == sum(int(r[1]) * int(r[2]) for r in device_grid)
