"""Element keys cannot get past the output size (red-team finding 1).

A 69-byte 1x1 PNG with ``"min_pixels": 4e8`` used to return a 20020x20020 image (+1.5 GiB),
``1e12`` a bare MemoryError and ``1e308`` an OverflowError; a tiny clip with ``nframes`` and
a large ``resized_height``/``resized_width`` asked for a tensor of tens of GB. Output limits
in the options are now checked from the plan, before anything is allocated.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import encode, photo
from tests.videos import write_clip
from vlprep import ImageOptions, ResourceLimitError, VideoOptions, process_vision_info
from vlprep._image import fetch_image
from vlprep._video import fetch_video


def _chat(*elements: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(elements)}]


@pytest.fixture(scope="module")
def tiny_png(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("png") / "one.png"
    path.write_bytes(encode(photo(1, 1), "PNG"))
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=48, fps=24)


@pytest.mark.parametrize("value", [4e8, 1e12, 1e308])
def test_min_pixels_above_the_output_limit_is_refused_before_allocating(
    tiny_png: str, value: float
) -> None:
    ele = {"type": "image", "image": tiny_png, "min_pixels": value, "max_pixels": value}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ResourceLimitError, match=r"'min_pixels'.*ImageOptions\.max_output_pixels"):
        process_vision_info(_chat(ele))
    assert time.perf_counter() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_resized_keys_and_results_are_checked(tiny_png: str) -> None:
    with pytest.raises(ResourceLimitError, match="'resized_height' x 'resized_width'"):
        fetch_image({"image": tiny_png, "resized_height": 9000, "resized_width": 9000})
    small = ImageOptions(max_output_pixels=10_000)
    with pytest.raises(ResourceLimitError, match=r"resized to \d+x\d+ = [\d,]+ pixels"):
        fetch_image({"image": tiny_png, "min_pixels": 9_000}, image_options=small)
    image = fetch_image({"image": tiny_png, "min_pixels": 4_000}, image_options=small)
    assert image.width * image.height <= 10_000
    raised = ImageOptions(max_output_pixels=1 << 26)
    assert fetch_image({"image": tiny_png, "resized_height": 28, "resized_width": 28}, image_options=raised)


def test_video_frame_and_clip_limits(clip: Path) -> None:
    big_frames = {"video": str(clip), "nframes": 8, "resized_height": 8192, "resized_width": 8192}
    with pytest.raises(ResourceLimitError, match=r"VideoOptions\.max_output_frame_pixels"):
        fetch_video(big_frames)
    clip_ele = {"video": str(clip), "nframes": 48, "resized_height": 3584, "resized_width": 3584}
    started = time.perf_counter()
    with pytest.raises(ResourceLimitError, match=r"48 frames of 3584x3584.*max_output_pixels"):
        fetch_video(clip_ele)
    assert time.perf_counter() - started < 10
    with pytest.raises(ResourceLimitError, match="'min_pixels'"):
        fetch_video({"video": str(clip), "nframes": 4, "min_pixels": 1e12})
    options = VideoOptions(max_output_pixels=4 * 56 * 56)
    with pytest.raises(ResourceLimitError, match="max_output_pixels"):
        fetch_video({"video": str(clip), "nframes": 8, "resized_height": 56, "resized_width": 56}, video_options=options)
    video = fetch_video(
        {"video": str(clip), "nframes": 4, "resized_height": 56, "resized_width": 56}, video_options=options
    )
    assert tuple(video.shape) == (4, 3, 56, 56)


def test_frame_lists_are_checked_too(tiny_png: str) -> None:
    ele = {"video": [tiny_png] * 4, "resized_height": 9000, "resized_width": 9000}
    with pytest.raises(ResourceLimitError, match="max_output_frame_pixels"):
        fetch_video(ele)


def test_limits_are_validated() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_output_pixels"):
            ImageOptions(max_output_pixels=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_output_frame_pixels"):
            VideoOptions(max_output_frame_pixels=bad)  # type: ignore[arg-type]


def test_estimates_refuse_the_same(tiny_png: str) -> None:
    import vlprep

    ele = {"type": "image", "image": tiny_png, "min_pixels": 4e8}
    with pytest.raises(ResourceLimitError, match="'min_pixels'"):
        vlprep.inspect(ele)
