"""extract_vision_info / process_vision_info behave like qwen-vl-utils for images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from qwen_vl_utils import vision_process as qv

from tests.conftest import encode, photo
from vlprep import InvalidInputError, extract_vision_info, process_vision_info


@pytest.fixture
def pictures(tmp_path: Path) -> list[str]:
    paths = []
    for i, (w, h) in enumerate([(640, 480), (300, 1000)]):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(encode(photo(w, h, seed=i)))
        paths.append(str(p))
    return paths


def conversation(paths: list[str]) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are helpful."},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": paths[0]},
                {"type": "text", "text": "and"},
                {"type": "image", "image": paths[1], "max_pixels": 256 * 28 * 28},
            ],
        },
        {"role": "assistant", "content": [{"text": "no type key"}]},
    ]


def same_images(ours: list[Image.Image] | None, theirs: list[Image.Image] | None) -> None:
    assert ours is not None and theirs is not None
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("patch", [14, 16])
def test_single_and_batch_match_qwen(pictures: list[str], patch: int) -> None:
    conv = conversation(pictures)
    images, videos = process_vision_info(conv, image_patch_size=patch)
    ref_images, ref_videos = qv.process_vision_info(conv, image_patch_size=patch)
    same_images(images, ref_images)
    assert videos is None and ref_videos is None
    batch = [conv, conversation(pictures[::-1])]
    images, _ = process_vision_info(batch, image_patch_size=patch)
    ref_images, _ = qv.process_vision_info(batch, image_patch_size=patch)
    same_images(images, ref_images)
    assert images is not None and len(images) == 4


def test_video_kwargs_shape_matches_qwen(pictures: list[str]) -> None:
    conv = conversation(pictures)
    ours = process_vision_info(conv, return_video_kwargs=True)
    theirs = qv.process_vision_info(conv, return_video_kwargs=True)
    assert len(ours) == len(theirs) == 3
    assert ours[2] == theirs[2] == {"do_sample_frames": False, "fps": []}
    ours = process_vision_info(conv, return_video_kwargs=True, return_video_metadata=True)
    theirs = qv.process_vision_info(conv, return_video_kwargs=True, return_video_metadata=True)
    assert ours[2] == theirs[2] == {"do_sample_frames": False}


def test_extract_matches_qwen() -> None:
    content = [
        {"image": "x"},
        {"text": "t"},
        {"type": "video", "video": "y"},
        {"type": "image_url", "image_url": "z"},
        {"type": "text", "text": "u"},
    ]
    conv = [{"role": "user", "content": content}, {"role": "user", "content": "plain string"}]
    assert extract_vision_info(conv) == qv.extract_vision_info(conv)
    assert len(extract_vision_info([conv, conv])) == 6


def test_video_url_elements_are_recognised() -> None:
    # Deviation: qwen-vl-utils drops {"type": "video_url"} silently.
    conv = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "v.mp4"}}]}]
    assert extract_vision_info(conv) == conv[0]["content"]


def test_text_only_and_empty() -> None:
    assert process_vision_info([{"role": "user", "content": "hello"}]) == (None, None)
    assert process_vision_info([]) == (None, None)


def test_missing_source_is_a_value_error() -> None:
    with pytest.raises(InvalidInputError, match="'image', 'image_url' or 'video'"):
        process_vision_info([{"role": "user", "content": [{"type": "image"}]}])
    with pytest.raises(ValueError):
        process_vision_info([{"role": "user", "content": [{"type": "image"}]}])


def test_missing_video_file_is_file_not_found(tmp_path: Path) -> None:
    conv = [{"role": "user", "content": [{"type": "video", "video": str(tmp_path / "clip.mp4")}]}]
    with pytest.raises(FileNotFoundError):
        process_vision_info(conv)


@pytest.mark.parametrize("bad", ["text", {"role": "user"}, 5, [[1]]])
def test_malformed_conversations(bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        process_vision_info(bad)


def test_non_dict_content_items_are_skipped(pictures: list[str]) -> None:
    # Deviation: qwen-vl-utils' `"image" in ele` is a substring test on strings.
    conv = [
        {"role": "user", "content": ["an image of a cat", {"type": "image", "image": pictures[0]}]}
    ]
    assert extract_vision_info(conv) == [conv[0]["content"][1]]
    images, _ = process_vision_info(conv)
    assert images is not None and len(images) == 1
