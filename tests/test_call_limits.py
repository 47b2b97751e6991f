"""Nothing bounded the total cost of one call (red-team finding 2).

200 copies of one 46 KB ``data:`` URI (a 2600x2600 PNG, each resized to 2604x2604) cost
+4-5 GiB; a 16-32 item frame list of one 257 KB 9400x9400 PNG held 16 full-size frames
before resizing (+8 GiB here); a frame list of 768 slow URLs took 768 / 8 workers x 30 s =
48 minutes. :class:`vlprep.CallLimits` caps items (before any fetch), output pixels (from
each item's plan, before it is allocated) and the call's time; frame lists decode and
resize each frame in the worker that fetched it, large ones one at a time.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import vlprep._image as image_module
import vlprep._video as video_module
from tests.conftest import encode, photo
from tests.media_server import serving
from tests.videos import write_clip
from vlprep import (
    CallLimits,
    DecodeError,
    FetchPolicy,
    FetchTimeoutError,
    InvalidInputError,
    ResourceLimitError,
    build_inputs,
    fetch_video,
    process_vision_info,
)
from vlprep._limits import CallBudget
from vlprep.testing import make_processor


def _chat(*elements: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(elements)}]


def _no_fetch(*args: object, **kwargs: object) -> object:
    raise AssertionError("a source was fetched")


@pytest.fixture(scope="module")
def blocky_png() -> bytes:
    """A 2600x2600 PNG of 48 KB: the red team's 46 KB image that resizes to 2604x2604."""
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 255, (65, 65, 3), dtype=np.uint8)
    return encode(Image.fromarray(cells).resize((2600, 2600), Image.Resampling.NEAREST), "PNG")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=24, fps=12)


def test_limits_are_validated_and_strict_is_tighter() -> None:
    for bad in ({"max_items": 0}, {"max_total_pixels": -1}, {"max_items": True}):
        with pytest.raises(InvalidInputError, match=r"CallLimits\.max_"):
            CallLimits(**bad)  # type: ignore[arg-type]
    for deadline in (0, float("nan"), float("inf"), "5"):
        with pytest.raises(InvalidInputError, match=r"CallLimits\.deadline"):
            CallLimits(deadline=deadline)  # type: ignore[arg-type]
    default, strict = CallLimits(), CallLimits.strict()
    assert (default.max_items, default.max_total_pixels, default.deadline) == (1024, 2**30, None)
    assert (strict.max_items, strict.max_total_pixels, strict.deadline) == (128, 2**28, 300.0)
    assert CallLimits(max_items=None, max_total_pixels=None).replace(deadline=2).deadline == 2
    with pytest.raises(InvalidInputError, match="limits must be a CallLimits"):
        process_vision_info(_chat({"image": photo(8, 8)}), limits=5)  # type: ignore[arg-type]


def test_200_copies_refused_before_any_fetch_under_strict(
    blocky_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = "data:image/png;base64," + base64.b64encode(blocky_png).decode()
    conversation = _chat(*[{"type": "image", "image": uri}] * 200)
    monkeypatch.setattr(image_module, "fetch", _no_fetch)
    with pytest.raises(ResourceLimitError, match=r"200 vision items.*128 \(CallLimits.max_items\)"):
        process_vision_info(conversation, limits=CallLimits.strict())


def test_default_item_cap_counts_frame_list_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_module, "fetch", _no_fetch)
    frames = ["https://example.com/f.jpg"] * 768
    conversation = _chat(
        {"type": "video", "video": frames}, *[{"type": "image", "image": "x.png"}] * 257
    )
    with pytest.raises(ResourceLimitError, match=r"1,025 vision items.*1,024"):
        process_vision_info(conversation)
    with pytest.raises(ResourceLimitError, match=r"5 vision items.*CallLimits.max_items"):
        fetch_video({"video": frames[:5]}, limits=CallLimits(max_items=4))


def test_the_200_copies_case_is_bounded_by_the_default_pixel_total(blocky_png: bytes) -> None:
    # 200 x 2604 x 2604 = 1.36 G output pixels (4 GiB of RGB): above the default total, so
    # the call stops at the 159th copy; the same copies in a tighter budget stop early.
    assert CallLimits().max_total_pixels < 200 * 2604 * 2604  # type: ignore[operator]
    uri = "data:image/png;base64," + base64.b64encode(blocky_png).decode()
    conversation = _chat(*[{"type": "image", "image": uri}] * 200)
    limits = CallLimits(max_total_pixels=3 * 2604 * 2604)
    started = time.perf_counter()
    with pytest.raises(ResourceLimitError) as caught:
        process_vision_info(conversation, limits=limits, workers=1)
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "the image (6,780,816 output pixels) would bring the call to 27,123,264" in message
    assert "CallLimits.max_total_pixels" in message and "20,342,448 already loaded" in message
    assert "base64" not in message and "while loading vision item 4 of 200" in str(
        caught.value.__notes__
    )
    images, _ = process_vision_info(_chat(*[{"image": uri}] * 3), limits=limits)  # fits
    assert images is not None


def test_pixel_total_spans_images_and_videos(clip: Path) -> None:
    elements = [
        {"type": "image", "image": photo(56, 56), "resized_height": 56, "resized_width": 56},
        {
            "type": "video",
            "video": str(clip),
            "nframes": 4,
            "resized_height": 56,
            "resized_width": 56,
        },
        {"type": "video", "video": [photo(56, 56)] * 2, "resized_height": 56, "resized_width": 56},
    ]
    exact = 56 * 56 * (1 + 4 + 2)
    images, videos = process_vision_info(
        _chat(*elements), limits=CallLimits(max_total_pixels=exact)
    )
    assert images is not None and videos is not None and len(videos) == 2
    for cut in (1, 5):  # the container clip or then the frame list crosses the total
        with pytest.raises(ResourceLimitError, match=r"CallLimits\.max_total_pixels"):
            process_vision_info(
                _chat(*elements), limits=CallLimits(max_total_pixels=56 * 56 * cut), workers=1
            )
    with pytest.raises(ResourceLimitError, match=r"video \(6,272 output pixels\)"):
        fetch_video(elements[2], limits=CallLimits(max_total_pixels=56 * 56))


def test_build_inputs_takes_the_same_limits() -> None:
    processor = make_processor("qwen2-vl")
    conversation = _chat(
        {"type": "image", "image": photo(64, 64)},
        {"type": "image", "image": photo(64, 64, seed=1)},
        {"type": "text", "text": "Two pictures."},
    )
    inputs = build_inputs(conversation, processor, limits=CallLimits.strict())
    assert inputs["image_grid_thw"].shape == (2, 3)
    with pytest.raises(ResourceLimitError, match="2 vision items"):
        build_inputs(conversation, processor, limits=CallLimits(max_items=1))
    with pytest.raises(ResourceLimitError, match=r"CallLimits\.max_total_pixels"):
        build_inputs(conversation, processor, limits=CallLimits(max_total_pixels=5000))


def test_a_frame_list_of_slow_urls_stops_at_the_call_deadline() -> None:
    frame = encode(photo(32, 32), "PNG")
    with serving({"f.png": frame}) as server:
        url = server.url("slow", "f.png")  # each answers after 0.5 s
        ele = {"type": "video", "video": [url] * 768}
        started = time.perf_counter()
        with pytest.raises(FetchTimeoutError, match=r"call deadline of 1\.5 s \(CallLimits"):
            process_vision_info(_chat(ele), limits=CallLimits(deadline=1.5))
        elapsed = time.perf_counter() - started
        # Without it: 768 / 8 workers x 0.5 s = 48 s here, 48 minutes at 30 s a fetch.
        assert elapsed < 5, elapsed
        assert len(server.paths) < 100
        requests = len(server.paths)
        time.sleep(0.6)
        assert len(server.paths) == requests  # nothing left running after the call


def test_items_not_started_by_the_deadline_are_refused() -> None:
    picture = encode(photo(32, 32), "PNG")
    with serving({"p.png": picture}) as server:
        elements = [{"type": "image", "image": server.url("slow", "p.png")}] * 6
        started = time.perf_counter()
        with pytest.raises(FetchTimeoutError, match=r"CallLimits\.deadline") as caught:
            process_vision_info(_chat(*elements), limits=CallLimits(deadline=1.2), workers=1)
        assert time.perf_counter() - started < 3
        assert "while fetching" in str(caught.value) and "vision item 3 of 6" in str(
            caught.value.__notes__
        )
        assert len(server.paths) == 3
        images, _ = process_vision_info(_chat(elements[0]), limits=CallLimits(deadline=5))
        assert images is not None
    policy = FetchPolicy(image_deadline=30.0)
    budget = CallBudget(CallLimits(deadline=0.05))
    time.sleep(0.1)
    with pytest.raises(FetchTimeoutError, match="before the item started"):
        budget.policy(policy)


def test_no_frame_list_decode_starts_after_the_call_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each frame-list frame counts as an item, and the deadline refuses "items not started
    # by then". Frames above _WORKER_PIXELS are fetched by the pool but decoded by the
    # calling thread, in order: before the fix there was no deadline check between them
    # (24 copies of a 9400x9400 PNG with deadline=1.0 raised after 57 s, 16 frames decoded
    # and resized after the deadline); now no decode starts after it.
    uri = "data:image/png;base64," + base64.b64encode(encode(photo(32, 32), "PNG")).decode()
    monkeypatch.setattr(video_module, "_WORKER_PIXELS", 0)  # every frame is a "large" one
    opened = video_module.open_pending
    decodes: list[float] = []

    def slow_open(*args: Any, **kwargs: Any) -> image_module.PendingImage:
        pending = opened(*args, **kwargs)

        def finish() -> Image.Image:
            decodes.append(time.perf_counter())
            time.sleep(0.2)  # a large frame's decode
            return pending.finish()

        return image_module.PendingImage(pending.pixels, finish)

    monkeypatch.setattr(video_module, "open_pending", slow_open)
    started = time.perf_counter()
    with pytest.raises(FetchTimeoutError, match=r"CallLimits\.deadline"):
        process_vision_info(
            _chat({"type": "video", "video": [uri] * 64}), limits=CallLimits(deadline=0.5)
        )
    late = [t for t in decodes if t - started > 0.5]
    assert len(late) <= 1, f"{len(late)} frame decodes started after the 0.5 s call deadline"


def test_large_frames_are_decoded_by_the_caller_with_the_same_pixels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    widths = (104, 112, 96)  # item 0 in the middle: 7,488 pixels
    frames = [photo(widths[i % 3], 72, seed=i) for i in range(11)]
    ele = {"video": frames, "resized_height": 56, "resized_width": 84}
    reference = fetch_video(ele)  # every frame on a worker
    # all on the caller / item 0 and the widest on the caller / only the widest
    for threshold in (0, 7000, 7700):
        monkeypatch.setattr(video_module, "_WORKER_PIXELS", threshold)
        assert torch.equal(fetch_video(ele), reference)
    truncated = encode(photo(104, 72), "PNG")[:300]  # the header reads, the pixels fail
    for threshold in (0, 10**9):  # a failing item 0 never leaves the others waiting
        monkeypatch.setattr(video_module, "_WORKER_PIXELS", threshold)
        for broken in (b"not an image", truncated):
            with pytest.raises(DecodeError, match="frame 0 of the frame list"):
                fetch_video({"video": [broken, *frames]})


_CHILD = """
import resource, sys
from PIL import Image
from vlprep import VideoOptions
from vlprep._video import fetch_video
fetch_video({"video": [Image.new("RGB", (64, 64))] * 2})  # threads and torch warmed up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fetch_video({"video": [sys.argv[1]] * 16}, video_options=VideoOptions(resize="fast"))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_frame_list_memory_is_one_full_size_frame_not_the_window(tmp_path: Path) -> None:
    path = tmp_path / "solid.png"
    Image.new("RGB", (4000, 4000), (200, 30, 60)).save(path)  # 48 MB decoded, 50 KB file
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mib = int(done.stdout.split()[-1])
    # Measured: 1,304 MiB before (the window held 16-17 decoded frames), 303 MiB after.
    assert peak_mib < 640, peak_mib
