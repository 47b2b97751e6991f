"""smart_nframes and frame_range: golden table (reference section 9.2) and a Hypothesis oracle."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen_vl_utils import vision_process as qv

from vlprep import InvalidInputError, smart_nframes
from vlprep._sampling import frame_indices, frame_range, plan_frames, video_frame_pixels

GOLDEN = [
    ({}, 300, 30, 20),
    ({}, 75, 25, 6),
    ({}, 30, 30, 4),
    ({}, 90, 30, 6),
    ({}, 100, 30, 6),
    ({}, 108, 30, 6),
    ({}, 45, 29.97, 4),
    ({}, 1440, 24, 120),
    ({}, 18000, 30, 768),
    ({}, 216000, 30, 768),
    ({}, 3, 30, 2),
    ({"fps": 1}, 300, 30, 10),
    ({"fps": 0.5}, 300, 30, 4),
    ({"fps": 4}, 30, 30, 4),
    ({"fps": 60}, 30, 30, 30),
    ({"fps": 60, "max_frames": 100}, 30, 30, 30),
    ({"nframes": 5}, 300, 30, 4),
    ({"nframes": 7}, 300, 30, 8),
    ({"nframes": 9}, 300, 30, 8),
    ({"fps": 2, "min_frames": 16}, 60, 30, 16),
    ({"fps": 2, "min_frames": 5}, 60, 30, 6),
    ({"fps": 2, "max_frames": 33}, 3000, 30, 32),
]


@pytest.mark.parametrize(("ele", "total", "fps", "expected"), GOLDEN)
def test_golden(ele: dict[str, Any], total: int, fps: float, expected: int) -> None:
    assert smart_nframes(ele, total, fps) == expected


def test_fps_above_native_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vlprep._sampling"):
        assert smart_nframes({"fps": 60}, 30, 30) == 30
    assert "exceeds" in caplog.text


@pytest.mark.parametrize(
    ("ele", "total", "match"),
    [
        ({}, 1, r"\[2, 1\], but got 0"),
        ({"nframes": 1}, 300, "got 0"),
        ({"nframes": 400}, 300, "got 400"),
        ({"fps": 2, "nframes": 8}, 300, "either 'fps' or 'nframes'"),
        ({"fps": "1"}, 300, "'fps' must be a finite number"),
        ({"nframes": float("nan")}, 300, "'nframes' must be a finite number"),
    ],
)
def test_errors_are_value_errors(ele: dict[str, Any], total: int, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        smart_nframes(ele, total, 30)
    with pytest.raises(ValueError):
        smart_nframes(ele, total, 30)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (2.0, 5.0, (60, 150, 91)),
        (1.01, None, (31, 299, 269)),
        (-3, 4.99, (0, 149, 150)),
        (None, 100, (0, 299, 300)),
        (None, None, (0, 299, 300)),
    ],
)
def test_frame_range_golden(
    start: float | None, end: float | None, expected: tuple[int, int, int]
) -> None:
    assert frame_range(300, 30, start, end) == expected


@pytest.mark.parametrize(
    ("start", "end"), [(9.99, None), (5, 5), (float("nan"), None), (None, float("inf"))]
)
def test_frame_range_errors(start: float | None, end: float | None) -> None:
    with pytest.raises(InvalidInputError):
        frame_range(300, 30, start, end)


elements = st.fixed_dictionaries(
    {},
    optional={
        "fps": st.floats(min_value=0.05, max_value=120, allow_nan=False),
        "min_frames": st.integers(min_value=1, max_value=64),
        "max_frames": st.integers(min_value=2, max_value=1000),
    },
) | st.fixed_dictionaries({"nframes": st.integers(min_value=0, max_value=2000)})


@settings(max_examples=1500, deadline=None)
@given(
    ele=elements,
    total=st.integers(min_value=1, max_value=300_000),
    fps=st.floats(min_value=0.5, max_value=240),
)
def test_smart_nframes_equals_qwen(ele: dict[str, Any], total: int, fps: float) -> None:
    logging.getLogger("qwen_vl_utils.vision_process").setLevel(logging.ERROR)
    try:
        expected = qv.smart_nframes(ele, total_frames=total, video_fps=fps)
    except (ValueError, AssertionError):
        with pytest.raises(InvalidInputError):
            smart_nframes(ele, total, fps)
        return
    assert smart_nframes(ele, total, fps) == expected


@settings(max_examples=1000, deadline=None)
@given(
    total=st.integers(min_value=1, max_value=100_000),
    fps=st.floats(min_value=0.5, max_value=240),
    start=st.none() | st.floats(min_value=-10, max_value=5000),
    end=st.none() | st.floats(min_value=-10, max_value=5000),
)
def test_frame_range_equals_qwen(
    total: int, fps: float, start: float | None, end: float | None
) -> None:
    ele = {k: v for k, v in (("video_start", start), ("video_end", end)) if v is not None}
    try:
        expected = qv.calculate_video_frame_range(ele, total, fps)
    except ValueError:
        with pytest.raises(InvalidInputError):
            frame_range(total, fps, start, end)
        return
    assert frame_range(total, fps, start, end) == expected


@settings(max_examples=1500, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=50_000),
    length=st.integers(min_value=0, max_value=400_000),
    n=st.integers(min_value=1, max_value=1000),
)
def test_frame_indices_equal_torch_linspace(start: int, length: int, n: int) -> None:
    import torch

    end = start + length
    assert frame_indices(start, end, n) == torch.linspace(start, end, n).round().long().tolist()


@pytest.mark.parametrize(
    ("total", "n", "expected"),
    [
        (
            300,
            20,
            [
                0,
                16,
                31,
                47,
                63,
                79,
                94,
                110,
                126,
                142,
                157,
                173,
                189,
                205,
                220,
                236,
                252,
                268,
                283,
                299,
            ],
        ),
        (75, 6, [0, 15, 30, 44, 59, 74]),
        (30, 4, [0, 10, 19, 29]),
        (3, 2, [0, 2]),
    ],
)
def test_frame_indices_golden(total: int, n: int, expected: list[int]) -> None:
    assert frame_indices(0, total - 1, n) == expected


def test_plan_matches_reference_cases() -> None:
    plan = plan_frames(300, 30, video_start=2.0, video_end=5.0)
    assert plan.indices == (60, 78, 96, 114, 132, 150)
    assert plan.clip_frames == 91
    assert plan.sample_fps == pytest.approx(1.978021978)
    plan = plan_frames(300, 30, nframes=8)
    assert plan.indices == (0, 43, 85, 128, 171, 214, 256, 299)
    assert plan.sample_fps == pytest.approx(0.8)
    assert plan_frames(30, 30).sample_fps == 4.0


def test_plan_pads_short_clips_instead_of_failing(caplog: pytest.LogCaptureFixture) -> None:
    # Deviation: qwen-vl-utils raises "nframes should in interval [2, 1], but got 0".
    with pytest.raises(ValueError):
        qv.smart_nframes({}, total_frames=1, video_fps=30)
    plan = plan_frames(1, 30)
    assert plan.indices == (0, 0)
    assert plan.clip_frames == 1
    assert plan_frames(3, 30, nframes=8).indices == (0, 1, 2, 2)
    assert "fewer than requested" in caplog.text
    with pytest.raises(InvalidInputError):
        plan_frames(300, 30, nframes=1)
    with pytest.raises(InvalidInputError):
        plan_frames(300, 30, max_frames=1)
    with pytest.raises(InvalidInputError):
        plan_frames(300, 30, fps=2, nframes=8)


@pytest.mark.parametrize(
    ("t", "factor", "hw", "expected_max", "expected_size"),
    [
        (4, 28, (1080, 1920), 602112, (560, 1008)),
        (20, 28, (360, 640), 602112, (364, 644)),
        (20, 32, (360, 640), 786432, (352, 640)),
        (302, 28, (1080, 1920), 598124.5, (560, 1008)),
        (302, 32, (1080, 1920), 781223.8, (640, 1152)),
        (768, 28, (1080, 1920), 235200, (336, 644)),
        (768, 32, (1080, 1920), 307200, (384, 736)),
        (768, 28, (360, 640), 235200, (364, 644)),
    ],
)
def test_video_budget_table(
    t: int, factor: int, hw: tuple[int, int], expected_max: float, expected_size: tuple[int, int]
) -> None:
    from vlprep import smart_resize

    low, high = video_frame_pixels(t, factor)
    assert low == 128 * factor * factor
    assert high == pytest.approx(expected_max, rel=1e-6)
    assert smart_resize(*hw, factor, low, high) == expected_size


def test_video_budget_user_max_only_lowers() -> None:
    assert video_frame_pixels(4, 28, max_pixels=10**9)[1] == 602112
    assert video_frame_pixels(4, 28, max_pixels=200_000)[1] == 200_000
    _, high = video_frame_pixels(
        768, 32, min_pixels=4 * 32 * 32, max_pixels=256 * 32 * 32, total_pixels=20480 * 32 * 32
    )
    assert int(high) == 54613
