"""vlprep._planning: one answer for the upright size, the resized size and the frame plan.

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
from tests.hf_fixtures import load_processor
from tests.videos import write_clip
from vlprep import _device_images as dev
from vlprep import grounding as g
from vlprep._decode.image import ImageOptions, decode_image, probe_header
from vlprep._image import HEADER_PREFIX, fetch_image_for, load_image, read_header
from vlprep._planning import qwen_vl_utils_preset, upright_size
from vlprep._presets import QWEN2_5_VL, QWEN2_VL, QWEN3_VL, Preset
from vlprep._video import fetch_video


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


# ------------------------------------------------------------------ presets drive videos


def _loaded_with(
    ele: dict[str, object], preset: Preset
) -> tuple[tuple[int, ...], list[int], float]:
    (video, meta), sample_fps = fetch_video(ele, 14, True, True, preset=preset)
    return tuple(video.shape), list(meta["frames_indices"]), float(sample_fps)


def _estimated(ele: dict[str, object], preset: Preset) -> tuple[tuple[int, ...], list[int], float]:
    est = vlprep.inspect(ele, preset)
    return (est.frames or 0, 3, est.height, est.width), list(est.frame_indices), est.sample_fps or 0


def test_preset_video_bounds_change_fetch_video_and_inspect_alike(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", width=640, height=480, fps=30, frames=150)
    ele: dict[str, object] = {"video": str(clip)}
    changed = QWEN2_5_VL.replace(
        name="slow-small", fps=1.0, max_frames=8, video_max_pixels=200 * 28 * 28
    )
    default = _loaded_with(ele, QWEN2_5_VL)
    # QWEN2_5_VL's video numbers are qwen-vl-utils' defaults: the drop-in's result.
    assert default[:2] == (tuple(fetch_video(ele, 14).shape), default[1])
    assert default == _estimated(ele, QWEN2_5_VL)
    ours = _loaded_with(ele, changed)
    assert ours == _estimated(ele, changed)
    assert ours[0][0] < default[0][0]  # 1 fps: 4 frames of 5 s, not 10
    assert ours[0][0] == 4 and ours[0][2] * ours[0][3] <= 200 * 28 * 28
    assert default[0][2] * default[0][3] > 200 * 28 * 28
    est = vlprep.inspect(ele, changed)
    assert est.grid == (ours[0][0] // 2, ours[0][2] // 14, ours[0][3] // 14)
    # max_frames caps, min_frames floors, video_total_pixels spreads over the frames.
    capped = QWEN2_5_VL.replace(name="capped", fps=30.0, max_frames=8)
    assert _loaded_with(ele, capped)[0][0] == 8 == _estimated(ele, capped)[0][0]
    floored = QWEN2_5_VL.replace(name="floored", fps=0.1, min_frames=6)
    assert _loaded_with(ele, floored)[0][0] == 6 == _estimated(ele, floored)[0][0]
    tight = QWEN2_5_VL.replace(name="tight", video_total_pixels=10 * 128 * 28 * 28)
    shape = _loaded_with(ele, tight)[0]
    assert (
        shape == _estimated(ele, tight)[0] and shape[2] * shape[3] < default[0][2] * default[0][3]
    )
    # Element keys still win over the preset's defaults.
    keyed = {**ele, "fps": 2.0, "max_frames": 768}
    assert _loaded_with(keyed, changed)[0][0] == default[0][0] == _estimated(keyed, changed)[0][0]


def test_preset_video_bounds_size_frame_lists_alike() -> None:
    frames = [photo(640, 480, seed=i) for i in range(3)]
    ele: dict[str, object] = {"video": frames}
    small = QWEN2_5_VL.replace(name="small", video_max_pixels=200 * 28 * 28)
    ours = _loaded_with(ele, small)
    assert ours == _estimated(ele, small)
    assert ours[0][0] == 4 and ours[0][2] * ours[0][3] <= 200 * 28 * 28
    assert _loaded_with(ele, QWEN2_5_VL) == _estimated(ele, QWEN2_5_VL)


def test_build_inputs_reads_the_preset_video_bounds(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", width=320, height=240, fps=30, frames=90)
    changed = QWEN2_5_VL.replace(name="qwen2.5-vl-slow", fps=1.0, video_max_pixels=200 * 28 * 28)
    messages = [{"role": "user", "content": [{"type": "video", "video": str(clip)}]}]
    est = vlprep.inspect({"video": str(clip)}, changed)
    processor = load_processor("qwen2.5-vl", tmp_path / "processor")
    loaded = vlprep.build_inputs(messages, processor, preset=changed)
    assert tuple(int(v) for v in loaded["video_grid_thw"][0]) == est.grid
    assert est.grid != vlprep.inspect({"video": str(clip)}, QWEN2_5_VL).grid


def test_qwen_vl_utils_preset_numbers() -> None:
    for patch, preset in ((14, QWEN2_5_VL), (16, QWEN3_VL)):
        f = patch * 2
        assert qwen_vl_utils_preset(patch) is preset
        assert (preset.video_min_pixels, preset.video_max_pixels) == (128 * f * f, 768 * f * f)
        assert preset.video_total_pixels == 128000 * f * f * 0.9
        assert (preset.fps, preset.min_frames, preset.max_frames) == (2.0, 4, 768)
    other = qwen_vl_utils_preset(10)
    assert (other.factor, other.video_min_pixels, other.video_max_pixels) == (20, 51_200, 307_200)
    assert other.video_total_pixels == 128000 * 400 * 0.9


def test_video_cache_key_is_what_the_plan_reads(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", width=160, height=120, fps=10, frames=60)
    cache = vlprep.MediaCache(100_000_000)
    ele = {"video": str(clip)}
    first = fetch_video(ele, 14, cache=cache)
    # Qwen2-VL plans videos with the numbers of the drop-in's QWEN2_5_VL: a hit.
    again = fetch_video(ele, preset=QWEN2_VL, cache=cache)
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    assert again.shape == first.shape
    slow = fetch_video(ele, preset=QWEN2_VL.replace(name="slow", fps=1.0), cache=cache)
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)
    assert slow.shape[0] < first.shape[0]
