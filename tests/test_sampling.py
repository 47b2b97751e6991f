"""smart_nframes and frame_range: golden table (reference section 9.2) and a Hypothesis oracle."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen_vl_utils import vision_process as qv

from vlprep import InvalidInputError, smart_nframes
from vlprep.sampling import frame_range

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
    with caplog.at_level(logging.WARNING, logger="vlprep.sampling"):
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
