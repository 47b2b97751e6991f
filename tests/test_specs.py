"""Element parsing: every key validated once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vlprep import InvalidInputError
from vlprep._specs import parse_image_element, parse_video_element


def test_video_element_fields() -> None:
    spec = parse_video_element(
        {
            "type": "video",
            "video": "a.mp4",
            "fps": 1,
            "min_pixels": 10,
            "max_pixels": 20,
            "video_start": -1,
            "video_end": 4.5,
        }
    )
    assert (spec.source, spec.fps, spec.min_pixels, spec.video_start, spec.video_end) == (
        "a.mp4",
        1,
        10,
        -1.0,
        4.5,
    )
    assert (
        parse_video_element({"video_url": {"url": "https://x/v.mp4"}}).source == "https://x/v.mp4"
    )
    assert (
        parse_video_element({"video": ["a.jpg"], "sample_fps": "1", "raw_fps": 30}).sample_fps
        == 1.0
    )


@pytest.mark.parametrize(
    ("ele", "match"),
    [
        ({}, "'video' or 'video_url'"),
        ({"video": "a.mp4", "fps": 2, "nframes": 8}, "either 'fps' or 'nframes'"),
        ({"video": "a.mp4", "fps": "fast"}, "must be a number"),
        ({"video": "a.mp4", "nframes": 0}, "> 0"),
        ({"video": "a.mp4", "video_start": 5, "video_end": 5}, "before video_end"),
        ({"video": "a.mp4", "video_start": float("nan")}, "finite number of seconds"),
        ({"video": "a.mp4", "min_pixels": 100, "max_pixels": 10}, "min_pixels"),
        ({"video": ["a.jpg"], "sample_fps": "one"}, "'sample_fps' must be a number"),
        ({"video": ["a.jpg"], "raw_fps": -3}, "> 0"),
        ({"video": "a.mp4", "video_stream": -1}, "'video_stream' must be"),
        ({"video": "a.mp4", "video_stream": True}, "'video_stream' must be"),
        ({"video": "a.mp4", "video_stream": 1.5}, "'video_stream' must be"),
        ({"video": "a.mp4", "video_stream": "3"}, "'video_stream' must be"),
        ("a.mp4", "must be a dict"),
    ],
)
def test_video_element_errors(ele: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        parse_video_element(ele)


def test_video_stream_key() -> None:
    assert parse_video_element({"video": "a.mp4"}).video_stream is None
    assert parse_video_element({"video": "a.mp4", "video_stream": 3}).video_stream == 3
    assert parse_video_element({"video": "a.mp4", "video_stream": np.int64(0)}).video_stream == 0


def test_lone_resized_side_ignored() -> None:
    assert parse_video_element({"video": "a.mp4", "resized_height": 100}).resized_height is None
    assert parse_image_element({"image": "a.png", "resized_width": 100}).resized_width is None
