"""vlprep.inspect against what the loaders and build_inputs really produce.

Every shared image and video, plus generated media, is estimated without decoding and then
loaded for real; sizes, grids, frame plans and token counts must agree exactly.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import vlprep
from tests.conftest import IMAGES, encode, media_dir, photo
from tests.hf_fixtures import FAMILIES, Family, load_processor
from tests.videos import write_clip
from vlprep import (
    DecodeError,
    InvalidInputError,
    MediaEstimate,
    SourceNotFoundError,
    UnsupportedFormatError,
    VideoOptions,
    get_preset,
)
from vlprep._estimates import HEADER_PREFIX, element_for, kind_of
from vlprep._image import fetch_image, fetch_image_for, load_image
from vlprep._inputs import build_inputs
from vlprep._video import fetch_video

VIDEOS = sorted(p for p in (media_dir() / "videos").iterdir() if p.suffix in (".mp4", ".mkv"))
TRUNCATED = {"ultrahdr.jpg"}  # header fine, pixel data cut short: only a decode can tell
DECODABLE = [p for p in IMAGES if p.name not in TRUNCATED]
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*cap_pixels_per_frame.*"),
    pytest.mark.filterwarnings("ignore:.*per-frame pixel cap.*"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("processors")


def _pads(inputs: Any, processor: Any, token: str) -> int:
    token_id = processor.tokenizer.convert_tokens_to_ids(token)
    return int((inputs["input_ids"] == token_id).sum())


def _user(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*elements, {"type": "text", "text": "?"}]}]


# --------------------------------------------------------------------------- images


def test_shared_media_lists_are_complete() -> None:
    assert len(IMAGES) >= 30 and {p.name for p in IMAGES} >= TRUNCATED
    assert {p.name for p in VIDEOS} >= {"nasa_13013.mp4", "var_fps_video.mp4", "av1_video.mkv"}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("path", DECODABLE, ids=lambda p: p.name)
def test_image_estimate_equals_loaders(path: Path, family: Family) -> None:
    preset = get_preset(family)
    est = vlprep.inspect(str(path), family)
    assert isinstance(est, MediaEstimate) and est.kind == "image" and est.source == str(path)
    loaded = fetch_image_for({"image": str(path)}, preset)
    assert (est.height, est.width) == (loaded.height, loaded.width)
    assert est.grid == (1, est.height // preset.patch_size, est.width // preset.patch_size)
    assert est.tokens == est.grid[1] * est.grid[2] // 4
    # The original size is the decoded (EXIF-rotated) size.
    raw = load_image(str(path))
    assert (est.original_height, est.original_width) == (raw.height, raw.width)
    # qwen-vl-utils' fetch_image with the preset's bounds in the element gives the same.
    bounds = {"min_pixels": preset.image_min_pixels, "max_pixels": preset.image_max_pixels}
    qwen = fetch_image({"image": str(path), **bounds}, preset.patch_size)
    assert qwen.size == (est.width, est.height)


def test_truncated_image_estimates_from_header_but_fails_to_load() -> None:
    path = media_dir() / "images" / "ultrahdr.jpg"
    est = vlprep.inspect(path)
    assert (est.original_height, est.original_width) == (2688, 1512)
    with pytest.raises(DecodeError, match="corrupt or truncated"):
        fetch_image_for({"image": str(path)}, get_preset("qwen2.5-vl"))


@pytest.mark.parametrize("family", FAMILIES)
def test_image_tokens_equal_build_inputs(family: Family, root: Path) -> None:
    """One conversation with every decodable shared image and generated ones, per family."""
    elements: list[dict[str, Any]] = [{"type": "image", "image": str(p)} for p in DECODABLE]
    elements += [
        {"type": "image", "image": str(DECODABLE[0]), "max_pixels": 1000},
        {"type": "image", "image": str(DECODABLE[3]), "min_pixels": 500_000},
        {"type": "image", "image": str(DECODABLE[5]), "resized_height": 99, "resized_width": 301},
    ]
    processor = load_processor(family, root)
    estimates = [vlprep.inspect(ele, family) for ele in elements]
    inputs = build_inputs(_user(elements), processor)
    grids = [tuple(g) for g in inputs["image_grid_thw"].tolist()]
    assert grids == [e.grid for e in estimates]
    assert _pads(inputs, processor, "<|image_pad|>") == sum(e.tokens for e in estimates)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", range(12))
def test_generated_images(tmp_path: Path, family: Family, seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(20, 1600, size=2))
    orientation = int(rng.integers(1, 9))
    exif = Image.Exif()
    exif[0x0112] = orientation
    fmt = ("JPEG", "PNG", "WEBP")[seed % 3]
    path = tmp_path / f"g{seed}.{fmt.lower()}"
    path.write_bytes(encode(photo(width, height, seed), fmt, exif=exif.tobytes()))
    keys: dict[str, Any] = [
        {},
        {"max_pixels": int(rng.integers(4000, 400_000))},
        {"min_pixels": int(rng.integers(100_000, 2_000_000))},
    ][seed % 3]
    ele = {"image": str(path), **keys}
    preset = get_preset(family)
    est = vlprep.inspect(ele, family)
    loaded = fetch_image_for(ele, preset)
    assert (est.height, est.width) == (loaded.height, loaded.width)
    swapped = orientation in (5, 6, 7, 8)
    assert (est.original_height, est.original_width) == (
        (width, height) if swapped else (height, width)
    )


def test_header_beyond_the_prefix_is_read_in_full(tmp_path: Path) -> None:
    """A JPEG whose ICC profile puts the frame header past the first 64 KiB."""
    path = tmp_path / "icc.jpg"
    path.write_bytes(encode(photo(300, 200), "JPEG", icc_profile=bytes(3 * HEADER_PREFIX)))
    head = path.read_bytes()[:HEADER_PREFIX]
    with pytest.raises(DecodeError):
        vlprep.inspect(head, kind="image")
    est = vlprep.inspect(path)
    assert (est.original_height, est.original_width) == (200, 300)


def test_sources_bytes_data_uri_pil_array() -> None:
    data = encode(photo(640, 480))
    uri = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    expected = vlprep.inspect({"image": data})
    for source in (uri, Image.open(io.BytesIO(data)), np.asarray(photo(640, 480))):
        est = vlprep.inspect(source)
        assert (est.height, est.width, est.tokens) == (expected.height, expected.width, 391)
    assert vlprep.inspect(uri).source.startswith("data:image/jpeg;base64,<")
    assert base64.b64encode(data).decode()[:40] not in vlprep.inspect(uri).source


def test_kind_of() -> None:
    assert kind_of("x/a.JPG") == "image" and kind_of("http://h/v.mp4?x=1") == "video"
    assert kind_of("data:video/mp4;base64,AAAA") == "video"
    assert kind_of(encode(photo(20, 20), "PNG")) == "image"
    assert kind_of([b"a", b"b"]) == "video"
    assert kind_of(np.zeros((4, 8, 8, 3), np.uint8)) == "video"
    with pytest.raises(UnsupportedFormatError, match="neither"):
        kind_of(b"just some text")
    with pytest.raises(SourceNotFoundError):
        kind_of("/no/such/file")


def test_element_for_fills_only_missing_keys() -> None:
    ele = element_for({"image": "a.jpg", "max_pixels": 10}, min_pixels=5, max_pixels=99)
    assert ele == {"image": "a.jpg", "max_pixels": 10, "min_pixels": 5}
    video = element_for("v.mp4", fps=1, total_pixels=7, max_pixels=None)
    assert video == {"video": "v.mp4", "fps": 1, "total_pixels": 7}
    assert element_for({"video": "v.mp4", "nframes": 8}, fps=3) == {"video": "v.mp4", "nframes": 8}
    assert "total_pixels" not in element_for("a.png", total_pixels=5, fps=2)
    with pytest.raises(InvalidInputError, match="not both"):
        element_for("v.mp4", fps=1, nframes=4)
    with pytest.raises(InvalidInputError, match="> 0"):
        element_for("v.mp4", fps=-1)
    with pytest.raises(InvalidInputError, match="needs an 'image'"):
        vlprep.inspect({"type": "image"})


def test_loader_errors_are_the_same_typed_errors(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    for source in (str(tmp_path / "missing.jpg"), str(tmp_path / "x.txt")):
        with pytest.raises(vlprep.VlprepError) as estimated:
            vlprep.inspect({"image": source})
        with pytest.raises(vlprep.VlprepError) as loaded:
            fetch_image({"image": source})
        assert type(estimated.value) is type(loaded.value)
    for hostile in sorted((media_dir() / "hostile").iterdir()):
        try:
            fetch_image({"image": str(hostile)})
        except vlprep.VlprepError as exc:
            expected: type[Exception] | None = type(exc)
        else:
            expected = None
        if expected in (None, DecodeError):  # pixel errors are invisible to a header read
            continue
        with pytest.raises(expected):
            vlprep.inspect({"image": str(hostile)})


# --------------------------------------------------------------------------- videos


def _loaded(ele: dict[str, Any], patch: int) -> tuple[torch.Tensor, dict[str, Any], float]:
    (video, meta), sample_fps = fetch_video(ele, patch, True, True)
    return video, meta, sample_fps


def _check_video(ele: dict[str, Any], family: Family) -> MediaEstimate:
    preset = get_preset(family)
    est = vlprep.inspect(ele, family)
    video, meta, sample_fps = _loaded(ele, preset.patch_size)
    assert est.kind == "video"
    assert tuple(video.shape) == (est.frames, 3, est.height, est.width)
    assert list(est.frame_indices) == list(meta["frames_indices"])
    assert est.sample_fps == pytest.approx(sample_fps, rel=1e-12)
    assert est.native_fps == pytest.approx(meta["fps"], rel=1e-12)
    patch = preset.patch_size
    assert est.grid == (-(-est.frames // 2), est.height // patch, est.width // patch)
    return est


@pytest.mark.parametrize("path", VIDEOS, ids=lambda p: p.name)
def test_shared_videos_equal_fetch_video(path: Path) -> None:
    for family, keys in (("qwen2.5-vl", {}), ("qwen3-vl", {"fps": 1.0, "max_pixels": 200_000})):
        est = _check_video({"video": str(path), **keys}, family)  # type: ignore[arg-type]
        assert est.duration is not None and est.duration > 0
        assert len(est.timestamps) == est.frames


def test_video_stream_choice_is_estimated_as_loaded() -> None:
    """The header-only estimate reads the stream the loader reads (element key or option)."""
    path = str(media_dir() / "videos" / "nasa_13013.mp4")
    default = _check_video({"video": path}, "qwen2.5-vl")
    other = _check_video({"video": path, "video_stream": 0}, "qwen2.5-vl")
    assert (default.original_width, default.native_fps) == (480, pytest.approx(30000 / 1001))
    assert (other.original_width, other.original_height, other.native_fps) == (320, 180, 25.0)
    assert other.tokens != default.tokens
    by_option = vlprep.inspect(path, video_options=VideoOptions(stream=0))
    assert by_option == other
    with pytest.raises(InvalidInputError, match="its video streams"):
        vlprep.inspect({"video": path, "video_stream": 2})
    with pytest.raises(InvalidInputError, match="frame list"):
        vlprep.inspect({"video": [photo(32, 32)] * 2, "video_stream": 0})


@pytest.mark.parametrize("family", FAMILIES)
def test_video_tokens_equal_build_inputs(family: Family, root: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", width=200, height=120, frames=40, fps=10)
    elements: list[dict[str, Any]] = [{"type": "video", "video": str(p)} for p in VIDEOS]
    elements += [
        {"type": "video", "video": str(clip), "nframes": 6, "min_pixels": 20_000},
        {"type": "video", "video": str(clip), "fps": 5, "video_start": 1.0, "video_end": 3.0},
        {"type": "video", "video": str(clip), "total_pixels": 300_000},
    ]
    processor = load_processor(family, root)
    estimates = [vlprep.inspect(ele, family) for ele in elements]
    inputs = build_inputs(_user(elements), processor)
    grids = [tuple(g) for g in inputs["video_grid_thw"].tolist()]
    assert grids == [e.grid for e in estimates]
    assert _pads(inputs, processor, "<|video_pad|>") == sum(e.tokens for e in estimates)


@pytest.mark.parametrize(
    "keys",
    [
        {},
        {"fps": 0.5},
        {"nframes": 7},
        {"fps": 30, "max_frames": 12},
        {"min_frames": 20},
        {"video_start": 0.5, "video_end": 2.2},
        {"resized_height": 100, "resized_width": 150},
        {"total_pixels": 200_000, "min_pixels": 3000},
        {"max_pixels": 150_000},
    ],
    ids=str,
)
def test_generated_clip_keys(tmp_path: Path, keys: dict[str, Any]) -> None:
    clip = write_clip(tmp_path / "clip.mp4", width=256, height=144, frames=75, fps=25)
    for family in ("qwen2-vl", "qwen3-vl"):
        _check_video({"video": str(clip), **keys}, family)  # type: ignore[arg-type]


def test_frame_list_and_array_videos(tmp_path: Path) -> None:
    frames = []
    for i in range(5):
        path = tmp_path / f"f{i}.jpg"
        path.write_bytes(encode(photo(300, 170, seed=i)))
        frames.append(str(path))
    for ele in (
        {"video": frames, "sample_fps": 3},
        {"video": frames, "max_pixels": 120_000, "raw_fps": 30},
        {"video": np.zeros((3, 70, 90, 3), np.uint8)},
    ):
        est = _check_video(ele, "qwen2.5-vl")
        assert est.frames == 6 if isinstance(ele["video"], list) else est.frames == 4
    with pytest.raises(InvalidInputError, match="at least one frame"):
        vlprep.inspect({"video": []})


def test_video_defaults_apply_where_the_element_is_silent(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=90, fps=30)
    est = vlprep.inspect(str(clip), "qwen2-vl", fps=4, max_pixels=110_000)
    assert est.frames == 12 and est.height * est.width <= 110_000
    fixed = vlprep.inspect({"video": str(clip), "nframes": 4}, fps=4)
    assert fixed.frames == 4
