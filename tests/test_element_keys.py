"""Misspelled or misplaced element keys are not ignored silently (red-team finding 9)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import encode, photo
from vlprep import process_vision_info
from vlprep._specs import _WARNED, IMAGE_KEYS, VIDEO_KEYS, warn_unknown_keys


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    _WARNED.clear()
    yield
    _WARNED.clear()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vlprep._specs"]


def test_misspelled_key_warns_once_with_the_closest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(encode(photo(64, 48)))
    ele = {"type": "image", "image": str(path), "max_pixel": 4096}
    with caplog.at_level(logging.WARNING, logger="vlprep._specs"):
        process_vision_info([{"role": "user", "content": [ele, dict(ele)]}])
    messages = _warnings(caplog)
    assert messages == [
        "image element key 'max_pixel' is not one vlprep reads, ignored; did you mean 'max_pixels'?"
    ]


def test_unknown_type_and_other_modality_keys(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vlprep._specs"):
        warn_unknown_keys({"type": "imgae", "image": "x", "fps": 2}, "image")
        warn_unknown_keys({"type": "video", "video": "v", "nframe": 4}, "video")
    messages = _warnings(caplog)
    assert "image elements ignore 'fps' (a video key there)" in messages
    assert any("'imgae' is unknown" in m and "'image'" in m for m in messages)
    assert any("'nframe'" in m and "did you mean 'nframes'" in m for m in messages)


def test_valid_keys_are_silent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vlprep._specs"):
        warn_unknown_keys(dict.fromkeys(IMAGE_KEYS, 1) | {"type": "image"}, "image")
        warn_unknown_keys(dict.fromkeys(VIDEO_KEYS, 1) | {"type": "video_url"}, "video")
    assert _warnings(caplog) == []


def test_the_warned_keys_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    from vlprep import _specs as specs

    _WARNED.clear()
    try:
        with caplog.at_level("WARNING", logger="vlprep._specs"):
            for i in range(specs._WARNED_MAX + 50):
                warn_unknown_keys({"image": "x.png", f"invented_{i}": 1}, "image")
        assert len(_WARNED) == specs._WARNED_MAX + 1
        assert len(caplog.records) == specs._WARNED_MAX + 1
        assert "further ones are not" in caplog.records[-1].getMessage()
    finally:
        _WARNED.clear()
