"""Qwen3-VL timestamps (vlprep._expansion.video_timestamps) with and without frame times."""

from __future__ import annotations

import pytest

from vlprep import InvalidInputError
from vlprep._expansion import PTS_TOLERANCE, video_timestamps


def test_index_over_fps_is_the_processors_formula() -> None:
    # transformers' Qwen3VLProcessor._calculate_timestamps: pad with the last, mean per pair
    assert video_timestamps([0, 15, 30], 30.0) == [0.25, 1.0]


def test_frame_seconds_are_used_where_they_differ_from_index_over_fps() -> None:
    indices, fps = [0, 1, 59, 60, 61], 20.0
    real = [0.0, 1 / 30, 2.9333, 3.0, 3.5333]  # a variable-rate stretch
    assert video_timestamps(indices, fps, frame_seconds=real) == [
        pytest.approx((real[0] + real[1]) / 2),
        pytest.approx((real[2] + real[3]) / 2),
        pytest.approx(real[4]),
    ]


def test_constant_rate_times_keep_the_index_text_bit_for_bit() -> None:
    indices, fps = [0, 3, 30, 33], 30000 / 1001
    exact = video_timestamps(indices, fps)
    # millisecond timestamps (Matroska) of a 29.97 fps stream: within the tolerance
    rounded = [round(i / fps, 3) for i in indices]
    assert max(abs(t - i / fps) for t, i in zip(rounded, indices, strict=True)) < PTS_TOLERANCE
    assert video_timestamps(indices, fps, frame_seconds=rounded) == exact


def test_frame_seconds_are_validated() -> None:
    with pytest.raises(InvalidInputError, match="one finite time per sampled frame"):
        video_timestamps([0, 1], 2.0, frame_seconds=[0.0])
    with pytest.raises(InvalidInputError, match="one finite time per sampled frame"):
        video_timestamps([0, 1], 2.0, frame_seconds=[0.0, float("nan")])
