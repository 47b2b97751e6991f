"""``vlprep.Loader``: one configuration, the same results as the functions given the same settings;
the drop-ins' canonical keyword names and their deprecated spellings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import vlprep
from tests.hf_fixtures import load_processor
from tests.videos import write_clip
from vlprep import (
    QWEN2_VL,
    ImageOptions,
    InvalidInputError,
    Loader,
    MediaCache,
    VideoOptions,
    fetch_image,
    fetch_video,
    process_vision_info,
)
from vlprep._image import fetch_image_for

HOPPER = str(Path(__file__).resolve().parents[1] / "fixtures" / "hopper.jpg")
NO_EXIF = ImageOptions(exif_transpose=False)
FAST = VideoOptions(resize="fast")


def _pixels(image: Image.Image) -> bytes:
    return image.tobytes()


def _frames() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)) for _ in range(4)]


def _chat(frames: list[Image.Image]) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": HOPPER, "max_pixels": 64 * 28 * 28},
                {"type": "video", "video": frames, "sample_fps": 2.0},
                {"type": "text", "text": "?"},
            ],
        }
    ]


def test_loader_is_frozen_and_replace_derives() -> None:
    loader = Loader(image=NO_EXIF, workers=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loader.workers = 1  # type: ignore[misc]
    one = loader.replace(workers=1)
    assert (one.workers, one.image, loader.workers) == (1, NO_EXIF, 2)
    assert Loader() == Loader(image=ImageOptions(), video=VideoOptions())


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"image": VideoOptions()}, "ImageOptions"),
        ({"video": ImageOptions()}, "VideoOptions"),
        ({"policy": {}}, "FetchPolicy"),
        ({"workers": "4"}, "workers"),
        ({"preset": "qwen9-vl"}, "qwen9"),
    ],
)
def test_loader_checks_its_fields(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        Loader(**changes)


def test_methods_equal_the_functions_with_the_same_settings() -> None:
    cache = MediaCache(max_bytes=64 << 20)
    loader = Loader(image=NO_EXIF, video=FAST, cache=cache, workers=1)
    ele = {"image": HOPPER, "max_pixels": 100 * 28 * 28}
    assert _pixels(loader.fetch_image(ele, 16)) == _pixels(
        fetch_image(ele, 16, image_options=NO_EXIF)
    )
    video_ele = {"video": _frames(), "sample_fps": 2.0}
    ours, fps = loader.fetch_video(video_ele, 14, return_video_sample_fps=True)
    theirs, their_fps = fetch_video(
        video_ele, 14, return_video_sample_fps=True, video_options=FAST, image_options=NO_EXIF
    )
    assert torch.equal(ours, theirs) and fps == their_fps
    images, videos, kwargs = loader.process_vision_info(_chat(_frames()), True)
    ref_images, ref_videos, ref_kwargs = process_vision_info(
        _chat(_frames()), True, image_options=NO_EXIF, video_options=FAST, workers=1
    )
    assert [_pixels(i) for i in images] == [_pixels(i) for i in ref_images]
    assert torch.equal(videos[0], ref_videos[0]) and kwargs == ref_kwargs
    assert loader.inspect(HOPPER) == vlprep.inspect(HOPPER, image_options=NO_EXIF)


def test_a_preset_sizes_every_method() -> None:
    loader = Loader(preset="qwen2-vl")
    ele = {"image": HOPPER}
    sized = loader.fetch_image(ele)
    assert _pixels(sized) == _pixels(fetch_image_for(ele, QWEN2_VL))
    (images, _) = loader.process_vision_info([{"role": "user", "content": [ele]}])
    assert _pixels(images[0]) == _pixels(sized)
    video_ele = {"video": _frames(), "sample_fps": 2.0}
    assert torch.equal(loader.fetch_video(video_ele), fetch_video(video_ele, preset=QWEN2_VL))
    assert loader.inspect(HOPPER) == vlprep.inspect(HOPPER, "qwen2-vl")


def test_build_inputs_equals_the_function(tmp_path: Path) -> None:
    processor = load_processor("qwen2-vl", tmp_path, backend="pil")
    chat = _chat(_frames())
    ours = Loader(image=NO_EXIF, workers=1).build_inputs(chat, processor, padding_side="right")
    theirs = vlprep.build_inputs(
        chat, processor, image_options=NO_EXIF, workers=1, padding_side="right"
    )
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    with pytest.raises(TypeError, match="workers"):
        Loader().build_inputs(chat, processor, workers=2)


def test_old_options_keyword_warns_and_gives_the_same_result() -> None:
    ele = {"image": HOPPER, "max_pixels": 64 * 28 * 28}
    with pytest.warns(DeprecationWarning, match=r"fetch_image\(options=\).*image_options="):
        old = fetch_image(ele, options=NO_EXIF)
    assert _pixels(old) == _pixels(fetch_image(ele, image_options=NO_EXIF))
    chat = [{"role": "user", "content": [ele]}]
    with pytest.warns(DeprecationWarning, match="process_vision_info"):
        (images, _) = process_vision_info(chat, options=NO_EXIF)
    assert _pixels(images[0]) == _pixels(old)
    video_ele = {"video": _frames(), "sample_fps": 2.0}
    with pytest.warns(DeprecationWarning, match="video_options="):
        video = fetch_video(video_ele, options=FAST)
    assert torch.equal(video, fetch_video(video_ele, video_options=FAST))


def test_both_names_or_the_wrong_type_are_refused() -> None:
    ele = {"image": HOPPER}
    with pytest.raises(InvalidInputError, match="both image_options= and"):
        fetch_image(ele, image_options=NO_EXIF, options=NO_EXIF)
    with pytest.raises(InvalidInputError, match=r"ImageOptions.*got VideoOptions"):
        process_vision_info([{"role": "user", "content": [ele]}], image_options=VideoOptions())  # type: ignore[arg-type]
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(InvalidInputError, match=r"options=\) must be a vlprep.ImageOptions"),
    ):
        process_vision_info([{"role": "user", "content": [ele]}], options=VideoOptions())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"VideoOptions.*got ImageOptions"):
        fetch_video({"video": _frames()}, video_options=ImageOptions())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"image_options=.*ImageOptions"):
        fetch_video({"video": _frames()}, image_options=FAST)  # type: ignore[arg-type]


def test_backend_argument_is_deprecated_onto_the_options(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", frames=20)
    with pytest.warns(DeprecationWarning, match=r"backend=\) is deprecated"):
        _, meta = fetch_video({"video": str(path)}, return_video_metadata=True, backend="pyav")
    assert meta["video_backend"] == "pyav"


def test_only_the_drop_ins_read_the_env_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(write_clip(tmp_path / "clip.mp4", frames=20))
    chat = [{"role": "user", "content": [{"type": "video", "video": path}]}]
    monkeypatch.setenv("FORCE_QWENVL_VIDEO_READER", "decord")
    _, meta = fetch_video({"video": path}, return_video_metadata=True)
    assert meta["video_backend"] == "decord"
    _, videos = process_vision_info(chat, return_video_metadata=True)
    assert videos[0][1]["video_backend"] == "decord"
    _, meta = Loader().fetch_video({"video": path}, return_video_metadata=True)
    assert meta["video_backend"] == "pyav"  # auto: the options, not the environment
    pinned = VideoOptions(backend="pyav")
    _, meta = fetch_video({"video": path}, return_video_metadata=True, video_options=pinned)
    assert meta["video_backend"] == "pyav"  # the options win over the variable, as before
    monkeypatch.setenv("FORCE_QWENVL_VIDEO_READER", "opencv")  # not a backend
    with pytest.raises(InvalidInputError, match="FORCE_QWENVL_VIDEO_READER"):
        fetch_video({"video": path})
    Loader().process_vision_info(chat)
    assert vlprep.inspect(path).kind == "video"


def test_plan_is_the_function_with_the_loader_settings(tmp_path: Path) -> None:
    processor = load_processor("qwen2-vl", tmp_path, backend="pil")
    chat = _chat(_frames())
    loader = Loader(image=NO_EXIF, workers=1)
    planned = loader.plan(chat, processor)
    assert planned == vlprep.plan(chat, processor, image_options=NO_EXIF)
    assert planned != vlprep.plan(chat, processor, preset="qwen3-vl")  # settings matter
    replayed = loader.build_inputs(chat, processor, plan=planned, padding_side="right")
    direct = loader.build_inputs(chat, processor, padding_side="right")
    assert replayed.keys() == direct.keys()
    for key in direct:
        assert torch.equal(replayed[key], direct[key]), key
    with pytest.raises(vlprep.InvalidInputError, match="processor or a preset"):
        Loader().plan(chat)
    assert Loader(preset="qwen2-vl").plan(chat).preset == vlprep.QWEN2_VL  # no processor needed
