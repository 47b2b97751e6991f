"""vlprep.fit: Hypothesis properties over random conversations, checked against build_inputs.

Conversations of 1-60 images (16 px to 8k px a side) and 0-4 videos (random lengths and frame
rates), random text, budgets, reserves, strategies and element keys, for the three families.
Images up to 640 px a side are real PNGs; larger ones are PNG headers that claim the size
(a fit reads headers only): ``build_inputs`` is run on the fitted conversation with those
replaced by a small real image, and their tokens added from ``vlprep.inspect`` of the fitted
element. Videos are real clips written with PyAV. Checked: the fitted total equals
``len(input_ids)``, is within ``max_tokens - reserve``, every item is on the grid and within
its bounds, no item can be raised by one grid step (or, for a video at its frame floor, one
frame-pair) without breaking the budget, and infeasible cases raise ``BudgetError`` with the
deficit of the conversation at its floors.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

import vlprep
from tests.videos import write_clip
from vlprep._sampling import video_frame_pixels
from vlprep.testing import make_processor

FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")
REAL_SIDE = 640  # images up to this side are real PNGs (decoded by build_inputs)


@functools.cache
def processor(family: str) -> Any:
    return make_processor(family)  # type: ignore[arg-type]


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR says ``width x height`` (no pixel data): enough for a header read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


class Media:
    """Generated files, written once per parameters in a module temp directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sizes: dict[str, tuple[int, int]] = {}  # path -> (height, width)
        self.real: set[str] = set()

    def image(self, height: int, width: int, shade: int) -> str:
        real = max(height, width) <= REAL_SIDE
        path = self.root / f"i{height}x{width}{'r' if real else 'h'}{shade % 8}.png"
        if not path.exists():
            if real:
                Image.new("RGB", (width, height), (shade * 31 % 256, 90, 160)).save(path)
            else:
                path.write_bytes(png_header(width, height))
        self.sizes[str(path)] = (height, width)
        if real:
            self.real.add(str(path))
        return str(path)

    def clip(self, size: tuple[int, int], fps: int, seconds: float) -> str:
        height, width = size
        frames = max(2, round(seconds * fps))
        path = self.root / f"v{height}x{width}f{fps}n{frames}.mp4"
        if not path.exists():
            write_clip(path, width=width, height=height, fps=fps, frames=frames, gop=8)
        self.sizes[str(path)] = (height, width)
        return str(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("fit-media"))


WORDS = st.text(alphabet="abcdefghij klmnopqrstuvwxyz.,?!éü", min_size=0, max_size=40)


@st.composite
def image_element(draw: st.DrawFn, media: Media) -> dict[str, Any]:
    side = st.integers(16, 8000)
    height = draw(side)
    width = draw(side.filter(lambda w: max(w, height) / min(w, height) <= 200))
    if draw(st.booleans()):  # mostly modest sizes: the ones build_inputs decodes
        height, width = max(16, height % 640), max(16, width % 640)
        if max(height, width) / min(height, width) > 200:
            width = height
    ele: dict[str, Any] = {
        "type": "image",
        "image": media.image(height, width, draw(st.integers(0, 7))),
    }
    if draw(st.integers(0, 4)) == 0:
        ele["max_pixels"] = draw(st.integers(64 * 64, 2048 * 2048))
    if draw(st.integers(0, 4)) == 0:
        ele["min_pixels"] = draw(st.integers(32 * 32, 512 * 512))
        if "max_pixels" in ele and ele["min_pixels"] > ele["max_pixels"]:
            del ele["min_pixels"]
    if draw(st.integers(0, 5)) == 0:
        ele["min_tokens"] = draw(st.integers(0, 800))
    if draw(st.integers(0, 4)) == 0:
        ele["priority"] = draw(st.sampled_from([-1, 0, 1, 2.5]))
    return ele


@st.composite
def video_element(draw: st.DrawFn, media: Media) -> dict[str, Any]:
    size = draw(st.sampled_from([(96, 128), (360, 640)]))
    fps = draw(st.sampled_from([8, 24]))
    seconds = draw(st.sampled_from([1.5, 4.0, 9.0]))
    ele: dict[str, Any] = {"type": "video", "video": media.clip(size, fps, seconds)}
    pick = draw(st.integers(0, 5))
    if pick == 0:
        ele["fps"] = draw(st.sampled_from([1, 4]))
    elif pick == 1:
        ele["nframes"] = draw(st.sampled_from([4, 6]))
    if draw(st.integers(0, 3)) == 0:
        ele["min_frames"] = draw(st.sampled_from([2, 6]))
    if draw(st.integers(0, 4)) == 0:
        ele["min_tokens"] = draw(st.integers(0, 600))
    if draw(st.integers(0, 4)) == 0:
        ele["priority"] = draw(st.sampled_from([-1, 0, 1]))
    return ele


@st.composite
def conversation(draw: st.DrawFn, media: Media) -> list[dict[str, Any]]:
    images = draw(st.integers(1, 60))
    videos = draw(st.integers(0, 4))
    kinds = ["image"] * images + ["video"] * videos
    kinds = draw(st.permutations(kinds))
    messages: list[dict[str, Any]] = []
    i = 0
    while i < len(kinds):
        take = draw(st.integers(1, 3))
        content: list[dict[str, Any]] = []
        for kind in kinds[i : i + take]:
            ele = draw(image_element(media) if kind == "image" else video_element(media))
            content.append(ele)
            if draw(st.booleans()):
                content.append({"type": "text", "text": draw(WORDS)})
        i += take
        messages.append({"role": "user", "content": content})
        if draw(st.booleans()):
            messages.append({"role": "assistant", "content": draw(WORDS)})
    return messages


# ------------------------------------------------------------------------ the checks


def _bounds(ele: dict[str, Any], preset: vlprep.Preset) -> tuple[float, float]:
    """``(low, high)`` of an image element, as the planner reads them."""
    low = ele.get("min_pixels", preset.image_min_pixels)
    high = ele.get("max_pixels", preset.image_max_pixels)
    if "min_pixels" not in ele:
        low = min(low, high)
    if "max_pixels" not in ele:
        high = max(high, low)
    return low, high


def _next_size(
    size_at: Callable[[int], tuple[int, int]], current: int, high: float
) -> tuple[int, int] | None:
    """The size at the smallest integer ``max_pixels`` above ``current`` (up to ``high``)
    where the size differs from ``size_at(current)``: a bisection (sizes grow with it)."""
    here = size_at(current)
    lo, hi = current + 1, math.floor(high)
    if lo > hi or size_at(hi) == here:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if size_at(mid) != here:
            hi = mid
        else:
            lo = mid + 1
    return size_at(lo)


def _tokens(size: tuple[int, int], factor: int) -> int:
    return (size[0] // factor) * (size[1] // factor)


def _stamp_text(path: str, ele: dict[str, Any], frames: int, preset: vlprep.Preset) -> int:
    """Qwen3-VL block text tokens of a clip at ``frames`` frames (the byte-level test
    tokenizer: one token per byte, three special tokens per block)."""
    estimate = vlprep.inspect({**ele, "nframes": frames, "fps": None}, preset)
    indices, fps = estimate.frame_indices, estimate.native_fps
    assert fps is not None and len(indices) == frames
    stamps = [(indices[k] + indices[k + 1]) / 2 / fps for k in range(0, frames, 2)]
    return sum(len(f"<{t:.1f} seconds>".encode()) + 2 for t in stamps)


def _built_total(conv: list[dict[str, Any]], proc: Any, media: Media, preset: vlprep.Preset) -> int:
    """``len(input_ids)`` of build_inputs on ``conv``; header-only images are built as a
    small real image and their tokens taken from ``vlprep.inspect`` of the element."""
    stand_in = media.image(56, 56, 0)
    swapped: list[dict[str, Any]] = []
    extra = 0
    for message in conv:
        content = message["content"]
        if not isinstance(content, list):
            swapped.append(message)
            continue
        parts = []
        for part in content:
            if "image" in part and part["image"] not in media.real:
                small = {"type": "image", "image": stand_in, "max_pixels": 64 * 64}
                extra += vlprep.inspect(part, preset).tokens
                extra -= vlprep.inspect(small, preset).tokens
                parts.append(small)
            else:
                parts.append(part)
        swapped.append({**message, "content": parts})
    built = vlprep.build_inputs(swapped, proc, workers=2)
    return int(built["input_ids"].shape[1]) + extra


def check_infeasible(
    conv: list[dict[str, Any]],
    exc: vlprep.BudgetError,
    budget: int,
    reserve: int,
    strategy: str,
    media: Media,
    proc: Any,
    preset: vlprep.Preset,
) -> None:
    """The deficit is what the conversation needs at its floors minus the budget: with
    exactly ``needed`` tokens every item sits at its floor (built: ``needed`` tokens), with
    one fewer the fit fails by one token."""
    assert exc.deficit == exc.needed - budget > 0
    assert exc.binding in ("text", "fixed", "floors")
    (tight,) = vlprep.fit(
        conv,
        exc.needed + reserve,
        processor=proc,
        reserve=reserve,
        strategy=strategy,  # type: ignore[arg-type]
    )
    assert tight.total == exc.needed
    assert all(item.tokens == item.floor_tokens for item in tight.items)
    assert _built_total(tight.apply(conv), proc, media, preset) == exc.needed
    with pytest.raises(vlprep.BudgetError) as again:
        vlprep.fit(conv, exc.needed - 1 + reserve, processor=proc, reserve=reserve)
    assert again.value.deficit == 1
    f = preset.factor
    elements = [p for m in conv if isinstance(m["content"], list) for p in m["content"]]
    elements = [p for p in elements if "image" in p or "video" in p]
    for item, ele in zip(tight.items, elements, strict=True):
        if item.kind != "image" or ele.get("min_tokens"):
            continue
        height, width = media.sizes[ele["image"]]
        low, _ = _bounds(ele, preset)
        lowest = vlprep.smart_resize(height, width, f, low, math.ceil(low))
        assert item.floor_tokens == min(item.before_tokens, _tokens(lowest, f))


def check_fit(
    conv: list[dict[str, Any]],
    family: str,
    fraction: float,
    reserve: int,
    strategy: str,
    media: Media,
) -> None:
    proc = processor(family)
    preset = vlprep.preset_from_processor(proc)
    (free,) = vlprep.fit(conv, 10**9, processor=proc)
    assert free.total == free.total_before and not free.shrunk
    if fraction <= 1.2:  # a share of what the conversation needs unfitted
        wanted = int(free.total_before * fraction)
    else:  # near what it needs at its floors (fraction - 2 in [-0.5, 0.5])
        floors = (free.text_tokens or 0) + sum(i.floor_tokens for i in free.items)
        wanted = int(floors * (1 + (fraction - 2) / 5))
    max_tokens = max(reserve + 1, wanted + reserve)
    budget = max_tokens - reserve
    try:
        (result,) = vlprep.fit(
            conv,
            max_tokens,
            processor=proc,
            reserve=reserve,
            strategy=strategy,  # type: ignore[arg-type]
        )
    except vlprep.BudgetError as exc:
        check_infeasible(conv, exc, budget, reserve, strategy, media, proc, preset)
        return
    assert result.total <= budget
    applied = result.apply(conv)
    assert _built_total(applied, proc, media, preset) == result.total
    elements = [p for m in conv if isinstance(m["content"], list) for p in m["content"]]
    elements = [p for p in elements if "image" in p or "video" in p]
    f = preset.factor
    for item, ele in zip(result.items, elements, strict=True):
        assert item.size[0] % f == 0 and item.size[1] % f == 0
        assert item.tokens <= item.before_tokens
        assert item.tokens >= min(ele.get("min_tokens", 0), item.before_tokens)
        height, width = media.sizes[ele.get("image") or ele["video"]]
        slack = budget - result.total
        if item.kind == "image":
            low, high = _bounds(ele, preset)
            # within its bounds: the planner's size for a max_pixels in [low, high]; a shrunk
            # size's area is within that max_pixels (unless a thin image's short side is
            # held at the factor)
            assert low <= item.keys.get("max_pixels", high) <= high
            if item.shrunk:
                area = item.size[0] * item.size[1]
                assert area <= item.keys["max_pixels"] or min(item.size) == f
            estimate = vlprep.inspect({**ele, **item.keys}, preset)
            assert (estimate.height, estimate.width) == item.size
            if "max_pixels" not in item.keys:
                continue  # at its unfitted size: nothing to raise
            current = item.keys["max_pixels"]

            def image_size(m: int, low: float = low) -> tuple[int, int]:
                return vlprep.smart_resize(height, width, f, low, m)

            nxt = _next_size(image_size, current, high)
            gain = item.before_tokens - item.tokens
            if nxt is not None and _tokens(nxt, f) < item.before_tokens:
                gain = _tokens(nxt, f) - item.tokens
            assert gain > slack, (item, nxt, slack)
        else:
            estimate = vlprep.inspect(
                {**ele, **item.keys, **({"fps": None} if "nframes" in item.keys else {})}, preset
            )
            assert (estimate.height, estimate.width) == item.size
            assert estimate.frames == item.frames and estimate.tokens == item.tokens
            assert item.frames is not None and item.before_frames is not None
            per_pair = _tokens(item.size, f)
            if item.frames < item.before_frames:
                # frames go only once the frame size is at its floor: one more pair
                gain = per_pair
                if family == "qwen3-vl":
                    path = ele["video"]
                    gain += _stamp_text(path, ele, item.frames + 2, preset) - _stamp_text(
                        path, ele, item.frames, preset
                    )
                assert gain > slack, (item, slack)
                continue
            if "max_pixels" not in item.keys:
                continue
            low_v, high_v = video_frame_pixels(
                item.frames,
                f,
                ele.get("min_pixels"),
                ele.get("max_pixels"),
                ele.get("total_pixels"),
                defaults=(
                    preset.video_min_pixels,
                    preset.video_max_pixels,
                    preset.video_total_pixels,
                ),
            )

            def frame_size(m: int, low: float = low_v) -> tuple[int, int]:
                return vlprep.smart_resize(height, width, f, low, m)

            nxt = _next_size(frame_size, item.keys["max_pixels"], high_v)
            pairs = item.frames // 2
            gain = item.before_tokens - item.tokens
            if nxt is not None and pairs * _tokens(nxt, f) < item.before_tokens:
                gain = pairs * (_tokens(nxt, f) - per_pair)
            assert gain > slack, (item, nxt, slack)


@settings(
    max_examples=6,
    deadline=None,
    # no shrinking: an example is up to 60 images and 4 clips, each step a build_inputs
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
@pytest.mark.parametrize("family", FAMILIES)
def test_fit_is_exact_within_budget_and_maximal(
    family: str, media: Media, data: st.DataObject
) -> None:
    conv = data.draw(conversation(media), label="conversation")
    fraction = data.draw(st.floats(0.02, 1.2) | st.floats(1.5, 2.5), label="fraction")
    reserve = data.draw(st.integers(0, 64), label="reserve")
    strategy = data.draw(st.sampled_from(["uniform", "recent"]), label="strategy")
    check_fit(conv, family, fraction, reserve, strategy, media)
