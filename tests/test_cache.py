"""MediaCache: hits bit-identical to uncached calls, keys, bounds, copies, threads."""

from __future__ import annotations

import base64
import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import vlprep
from tests.conftest import encode, media_dir, photo
from tests.hf_fixtures import load_processor
from tests.media_server import serving
from vlprep import (
    QWEN2_VL,
    QWEN3_VL,
    ImageOptions,
    InvalidInputError,
    MediaCache,
    VideoOptions,
    build_inputs,
    fetch_image,
    fetch_video,
    process_vision_info,
)
from vlprep._cache import CacheStats, digest_image
from vlprep._image import fetch_image_for

IMAGES = media_dir() / "images"
VIDEOS = media_dir() / "videos"
PHOTOS = [
    "hopper.jpg",
    "flower2.jpg",
    "sugarshack.mpo",  # 640x480 stereo camera photo (ultrahdr.jpg is truncated)
    "hopper_orientation_6.jpg",  # EXIF rotation 270
    "exif_imagemagick_orientation.png",
    "pil123p.png",  # palette
    "transparent.png",  # RGBA on white
]
CLIPS = ["nasa_13013.mp4", "var_fps_video.mp4", "h265_video.mp4"]


def same_image(a: Image.Image, b: Image.Image) -> None:
    assert (a.mode, a.size) == (b.mode, b.size)
    assert a.tobytes() == b.tobytes()
    assert a.info == b.info


def same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal float32 bit patterns (``torch.equal`` would accept -0.0 for 0.0)."""
    assert a.dtype == b.dtype == torch.float32
    assert a.shape == b.shape and a.stride() == b.stride()
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))


def same_video(a: Any, b: Any) -> None:
    (va, ma), fa = a
    (vb, mb), fb = b
    same_bits(va, vb)
    assert ma == mb and fa == fb


# --- validation and bookkeeping --------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1024", None])
def test_max_bytes_is_validated(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="max_bytes"):
        MediaCache(bad)
    with pytest.raises(ValueError):
        MediaCache(max_bytes=bad)


def test_new_cache_is_empty_and_clear_resets() -> None:
    cache = MediaCache(10_000_000)
    assert cache.stats == CacheStats(0, 0, 0, 0, 0, 10_000_000)
    ele = {"image": str(IMAGES / "hopper.jpg")}
    fetch_image(ele, cache=cache)
    fetch_image(ele, cache=cache)
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.entries, len(cache)) == (1, 1, 1, 1)
    assert stats.current_bytes >= 112 * 112 * 3
    assert "entries=1" in repr(cache)
    cache.clear()
    assert cache.stats == CacheStats(0, 0, 0, 0, 0, 10_000_000)
    fetch_image(ele, cache=cache)
    assert cache.stats.misses == 1


def test_default_bound_is_one_gib() -> None:
    assert MediaCache().max_bytes == 1 << 30


# --- bit-identical hits ----------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTOS)
def test_image_hits_equal_uncached(name: str) -> None:
    cache = MediaCache()
    for call in (
        lambda **kw: fetch_image({"image": str(IMAGES / name)}, **kw),
        lambda **kw: fetch_image({"image": str(IMAGES / name), "max_pixels": 200 * 200}, 16, **kw),
        lambda **kw: fetch_image_for({"image": str(IMAGES / name)}, QWEN3_VL, **kw),
    ):
        plain = call()
        miss = call(cache=cache)
        hit = call(cache=cache)
        same_image(plain, miss)
        same_image(plain, hit)
    assert (cache.stats.misses, cache.stats.hits) == (3, 3)


def test_exif_rotated_photo_is_keyed_by_exif_transpose() -> None:
    cache = MediaCache()
    name = str(IMAGES / "hopper_orientation_6.jpg")
    ele = {"image": name, "resized_height": 112, "resized_width": 56}
    upright = fetch_image(ele, cache=cache)
    stored = fetch_image(ele, cache=cache, image_options=ImageOptions(exif_transpose=False))
    assert cache.stats.misses == 2  # same bytes, other options: no collision
    same_image(upright, fetch_image(ele))
    same_image(stored, fetch_image(ele, image_options=ImageOptions(exif_transpose=False)))
    assert upright.tobytes() != stored.tobytes()
    same_image(upright, fetch_image(ele, cache=cache))
    assert cache.stats.hits == 1


def test_every_source_kind_hits(tmp_path: Path) -> None:
    path = IMAGES / "flower2.jpg"
    data = path.read_bytes()
    pil = Image.open(path)
    pil.load()
    array = np.asarray(pil.convert("RGB"))
    sources: list[object] = [
        str(path),
        f"file://{path}",
        data,
        f"data:image/jpeg;base64,{base64.b64encode(data).decode()}",
        pil,
        array,
        torch.from_numpy(array.copy()).permute(2, 0, 1),
    ]
    cache = MediaCache()
    for source in sources:
        plain = fetch_image({"image": source})
        same_image(plain, fetch_image({"image": source}, cache=cache))
        same_image(plain, fetch_image({"image": source}, cache=cache))
    # path, file://, bytes and data: URI are the same bytes: one entry. The PIL image
    # (with its EXIF and other info, which the result carries) is another; the array and
    # the tensor are the same pixels without info: a third.
    assert cache.stats.entries == 3
    assert cache.stats.misses == 3


@pytest.mark.parametrize("name", CLIPS)
def test_video_hits_equal_uncached(name: str) -> None:
    cache = MediaCache()
    ele = {"video": str(VIDEOS / name)}
    plain = fetch_video(ele, 14, True, True)
    same_video(plain, fetch_video(ele, 14, True, True, cache=cache))
    hit = fetch_video(ele, 14, True, True, cache=cache)
    same_video(plain, hit)
    assert torch.signbit(plain[0][0]).any()  # the exact resize's -0.0s survive the round trip
    assert (cache.stats.misses, cache.stats.hits) == (1, 1)
    # uint8 levels plus sign records: well under the float32 frames' size
    assert cache.stats.current_bytes < plain[0][0].nbytes / 3
    # the other return shapes come from the same entry
    same_bits(plain[0][0], fetch_video(ele, 14, cache=cache))
    assert cache.stats.hits == 2


def test_video_from_url_bytes_and_array() -> None:
    data = (VIDEOS / "h265_video.mp4").read_bytes()
    cache = MediaCache()
    with serving({"clip.mp4": data}) as server:
        url = server.url("f", "clip.mp4")
        plain = fetch_video({"video": url, "fps": 4}, 14, True, True)
        for source in (url, data):
            same_video(plain, fetch_video({"video": source, "fps": 4}, 14, True, True, cache=cache))
    assert cache.stats.entries == 1 and cache.stats.hits == 1
    frames = np.random.default_rng(0).integers(0, 256, (6, 40, 60, 3), dtype=np.uint8)
    ele = {"video": frames, "sample_fps": 2}
    plain = fetch_video(ele, 14, True, True)
    same_video(plain, fetch_video(ele, 14, True, True, cache=cache))
    same_video(plain, fetch_video(ele, 14, True, True, cache=cache))
    assert cache.stats.entries == 2 and cache.stats.hits == 2


def test_frame_lists_and_file_objects_are_not_cached() -> None:
    cache = MediaCache()
    frames = [str(IMAGES / "hopper.jpg")] * 4
    plain = fetch_video({"video": frames}, 14, True, True)
    same_video(plain, fetch_video({"video": frames}, 14, True, True, cache=cache))
    with (VIDEOS / "h265_video.mp4").open("rb") as file:
        fetch_video({"video": file}, cache=cache)
    assert cache.stats == CacheStats(0, 0, 0, 0, 0, cache.max_bytes)


def test_non_integer_frames_are_stored_as_float() -> None:
    from vlprep._stored import pack_video, unpack_video

    video = torch.tensor([[[[0.5, -0.0, 3.0]]]]).expand(2, 3, 1, 3).contiguous()
    stored, nbytes = pack_video((video, {"fps": 1.0}, 2.0))
    assert nbytes >= video.nbytes
    again, metadata, fps = unpack_video(stored)
    same_bits(video, again)
    assert (metadata, fps) == ({"fps": 1.0}, 2.0)


# --- the multi-turn chat ---------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count image decodes (``vlprep._image.decode_image``) by the size of the bytes."""
    seen: list[int] = []
    real = vlprep._image.decode_image

    def counting(data: bytes, options: ImageOptions | None = None) -> Image.Image:
        seen.append(len(data))
        return real(data, options)

    monkeypatch.setattr(vlprep._image, "decode_image", counting)
    return seen


def _chat(turns: int, image: str) -> list[dict[str, Any]]:
    """A chat whose every user turn resends the same image."""
    messages: list[dict[str, Any]] = []
    for turn in range(turns):
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": image},
                    {"type": "text", "text": f"Question {turn}?"},
                ],
            }
        )
        if turn < turns - 1:
            messages.append({"role": "assistant", "content": f"Answer {turn}."})
    return messages


def test_multi_turn_build_inputs_decodes_once(tmp_path: Path, decodes: list[int]) -> None:
    processor = load_processor("qwen2-vl", tmp_path)
    image = str(IMAGES / "flower2.jpg")
    plain = [build_inputs(_chat(turn, image), processor) for turn in (1, 2, 3)]
    assert len(decodes) == 6
    decodes.clear()
    cache = MediaCache()
    for turn, expected in zip((1, 2, 3), plain, strict=True):
        # workers=2: the repeats inside one call are loaded concurrently
        got = build_inputs(_chat(turn, image), processor, cache=cache, workers=2)
        assert sorted(got.keys()) == sorted(expected.keys())
        for key in expected:
            assert torch.equal(got[key], expected[key]), key
    assert len(decodes) == 1
    assert (cache.stats.misses, cache.stats.hits, cache.stats.entries) == (1, 5, 1)


def test_multi_turn_process_vision_info_decodes_once(decodes: list[int]) -> None:
    cache = MediaCache()
    image = str(IMAGES / "hopper.jpg")
    video = {"type": "video", "video": str(VIDEOS / "h265_video.mp4")}
    messages = [*_chat(3, image), {"role": "user", "content": [video]}]
    plain_images, plain_videos, plain_kwargs = process_vision_info(messages, True, True)
    decodes.clear()
    for _ in range(2):
        images, videos, kwargs = process_vision_info(messages, True, True, cache=cache)
        for ours, theirs in zip(images, plain_images, strict=True):
            same_image(ours, theirs)
        same_bits(videos[0][0], plain_videos[0][0])
        assert videos[0][1] == plain_videos[0][1] and kwargs == plain_kwargs
    assert len(decodes) == 1
    assert (cache.stats.misses, cache.stats.hits) == (2, 6)


# --- what is part of the key -----------------------------------------------------------


def test_other_image_parameters_miss() -> None:
    cache = MediaCache()
    path = str(IMAGES / "flower2.jpg")
    calls: list[Callable[[], Image.Image]] = [
        lambda: fetch_image({"image": path}, cache=cache),
        lambda: fetch_image({"image": path}, 16, cache=cache),
        lambda: fetch_image({"image": path, "max_pixels": 100 * 100}, cache=cache),
        lambda: fetch_image({"image": path, "min_pixels": 600 * 600}, cache=cache),
        lambda: fetch_image(
            {"image": path, "resized_height": 56, "resized_width": 84}, cache=cache
        ),
        lambda: fetch_image(
            {"image": path}, cache=cache, image_options=ImageOptions(exif_transpose=False)
        ),
        lambda: fetch_image_for({"image": path}, QWEN2_VL, cache=cache),
        lambda: fetch_image_for({"image": path}, QWEN3_VL, cache=cache),
        lambda: fetch_image_for(
            {"image": path}, QWEN2_VL.replace(image_max_pixels=50_000), cache=cache
        ),
    ]
    for call in calls:
        call()
    assert (cache.stats.misses, cache.stats.hits) == (len(calls), 0)
    for call in calls:
        call()
    assert (cache.stats.misses, cache.stats.hits) == (len(calls), len(calls))


def test_the_whole_options_objects_are_in_the_key() -> None:
    """A field added to ImageOptions/VideoOptions later is keyed without code changes."""
    keys: list[Any] = []

    class Spy(MediaCache):
        def get_or_load(self, key: Any, *args: Any) -> Any:
            keys.append(key)
            return super().get_or_load(key, *args)

    image_options = ImageOptions(max_aspect_ratio=150.0)
    video_options = VideoOptions(resize="fast")
    fetch_image({"image": str(IMAGES / "hopper.jpg")}, cache=Spy(), image_options=image_options)
    fetch_video({"video": str(VIDEOS / "h265_video.mp4")}, cache=Spy(), video_options=video_options)
    assert image_options in keys[0] and video_options in keys[1]
    assert all(f.compare for f in dataclasses.fields(ImageOptions))  # all in __eq__/__hash__
    assert all(f.compare for f in dataclasses.fields(VideoOptions))


def test_other_video_parameters_miss() -> None:
    cache = MediaCache()
    path = str(VIDEOS / "h265_video.mp4")
    variants: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({}, {}),
        ({"fps": 4}, {}),
        ({"nframes": 6}, {}),
        ({"resized_height": 56, "resized_width": 84}, {}),
        ({"video_start": 0.2}, {}),
        ({}, {"video_options": VideoOptions(resize="fast")}),
        ({}, {"image_patch_size": 16}),
    ]
    results = []
    for keys, kwargs in variants:
        results.append(fetch_video({"video": path, **keys}, cache=cache, **kwargs))
        same_bits(results[-1], fetch_video({"video": path, **keys}, **kwargs))
    assert (cache.stats.misses, cache.stats.hits) == (len(variants), 0)


def test_same_url_with_new_content_misses() -> None:
    first = encode(photo(120, 90, seed=1))
    second = encode(photo(120, 90, seed=2))
    cache = MediaCache()
    with serving({"photo.jpg": first}) as server:
        url = server.url("f", "photo.jpg")
        same_image(fetch_image({"image": url}, cache=cache), fetch_image({"image": first}))
        server.files["photo.jpg"] = second
        changed = fetch_image({"image": url}, cache=cache)
        same_image(changed, fetch_image({"image": second}))
        assert changed.tobytes() != fetch_image({"image": first}).tobytes()
        assert (cache.stats.misses, cache.stats.hits) == (2, 0)
        fetch_image({"image": url}, cache=cache)
        assert cache.stats.hits == 1
        assert len(server.paths) == 3  # every call fetched the URL


def test_pil_sources_are_keyed_by_pixels_palette_and_orientation() -> None:
    image = Image.open(IMAGES / "pil123p.png")
    image.load()
    recoloured = image.copy()
    palette = image.getpalette() or []
    recoloured.putpalette([255 - v for v in palette])
    assert digest_image(image, True) != digest_image(recoloured, True)
    edited = image.copy()
    edited.putpixel((0, 0), (edited.getpixel((0, 0)) + 1) % 256)  # type: ignore[operator]
    assert digest_image(image, True) != digest_image(edited, True)
    assert digest_image(image, True) == digest_image(image.copy(), True)
    rotated = Image.open(IMAGES / "hopper_orientation_6.jpg")
    assert digest_image(rotated, True) != digest_image(rotated, False)
    # an edited in-memory image (same object, new pixels) misses
    cache = MediaCache()
    canvas = photo(64, 48)
    before = fetch_image({"image": canvas}, cache=cache)
    canvas.paste((0, 0, 0), (0, 0, 32, 24))
    after = fetch_image({"image": canvas}, cache=cache)
    assert cache.stats.misses == 2 and before.tobytes() != after.tobytes()


# --- memory bound, copies --------------------------------------------------------------


def _photos(count: int) -> list[bytes]:
    return [encode(photo(100, 100, seed=i)) for i in range(count)]


def test_lru_eviction_keeps_bytes_under_the_bound() -> None:
    one = 112 * 112 * 3  # a 100x100 photo is resized to 112x112 (factor 28, min pixels)
    sources = _photos(3)
    cache = MediaCache(max_bytes=2 * one + 100)
    fetch_image({"image": sources[0]}, cache=cache)
    fetch_image({"image": sources[1]}, cache=cache)
    fetch_image({"image": sources[0]}, cache=cache)  # 0 is now the most recent
    fetch_image({"image": sources[2]}, cache=cache)  # evicts 1, the least recent
    stats = cache.stats
    assert (stats.entries, stats.evictions) == (2, 1)
    assert stats.current_bytes <= stats.max_bytes
    fetch_image({"image": sources[0]}, cache=cache)
    fetch_image({"image": sources[2]}, cache=cache)
    assert cache.stats.hits == 3
    fetch_image({"image": sources[1]}, cache=cache)
    assert cache.stats.misses == 4 and cache.stats.current_bytes <= cache.max_bytes


def test_entry_larger_than_the_bound_is_returned_not_stored() -> None:
    cache = MediaCache(max_bytes=1000)
    ele = {"image": str(IMAGES / "hopper.jpg")}
    same_image(fetch_image(ele, cache=cache), fetch_image(ele))
    same_image(fetch_image(ele, cache=cache), fetch_image(ele))
    assert cache.stats == CacheStats(0, 2, 0, 0, 0, 1000)
    small = MediaCache(max_bytes=112 * 112 * 3 + 10_000)
    fetch_image({"image": _photos(1)[0]}, cache=small)
    fetch_image(ele, cache=small)  # 128x128 -> 140x140: too big, does not evict the other
    assert small.stats.entries == 1 and small.stats.evictions == 0


def test_returned_objects_are_copies() -> None:
    cache = MediaCache()
    ele = {"image": str(IMAGES / "hopper.jpg")}
    expected = fetch_image(ele)
    first = fetch_image(ele, cache=cache)
    first.paste((0, 0, 0), (0, 0, 50, 50))
    first.info["mutated"] = True
    second = fetch_image(ele, cache=cache)
    same_image(second, expected)
    second.paste((255, 0, 0), (0, 0, 50, 50))
    same_image(fetch_image(ele, cache=cache), expected)

    clip = {"video": str(VIDEOS / "h265_video.mp4")}
    plain = fetch_video(clip, 14, True, True)
    (video, metadata), _ = fetch_video(clip, 14, True, True, cache=cache)
    video.fill_(7)
    metadata["frames_indices"].append(99)
    (video, metadata), _ = fetch_video(clip, 14, True, True, cache=cache)
    video.fill_(9)
    metadata["frames_indices"].clear()
    same_video(plain, fetch_video(clip, 14, True, True, cache=cache))


# --- threads ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_concurrent_use_is_safe() -> None:
    sources = _photos(6)
    expected = [fetch_image({"image": s}).tobytes() for s in sources]
    cache = MediaCache(max_bytes=3 * 112 * 112 * 3)  # room for half: constant eviction
    calls = [i % len(sources) for i in range(240)]

    def call(i: int) -> bool:
        return fetch_image({"image": sources[i]}, cache=cache).tobytes() == expected[i]

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(call, calls))
    stats = cache.stats
    assert stats.hits + stats.misses == len(calls)
    assert stats.current_bytes <= stats.max_bytes and stats.entries <= 3
    assert stats.current_bytes == stats.entries * 112 * 112 * 3
    assert stats.misses - stats.evictions == stats.entries


def test_concurrent_lookups_of_one_key_run_one_load() -> None:
    cache = MediaCache()
    loads: list[int] = []
    started = threading.Event()

    def load() -> bytes:
        loads.append(1)
        started.set()
        time.sleep(0.2)
        return b"value"

    def lookup(_: int) -> bytes:
        return cache.get_or_load("k", load, lambda v: (bytearray(v), len(v)), bytes)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lookup, range(4)))
    assert results == [b"value"] * 4 and len(loads) == 1
    assert (cache.stats.misses, cache.stats.hits) == (1, 3)


def test_a_failed_load_stores_nothing_and_each_caller_sees_an_error() -> None:
    cache = MediaCache()
    gate = threading.Event()
    attempts: list[int] = []

    def load() -> bytes:
        attempts.append(1)
        gate.wait(5)
        raise vlprep.DecodeError("broken")

    def lookup(_: int) -> str:
        try:
            cache.get_or_load("k", load, lambda v: (v, len(v)), bytes)
        except vlprep.DecodeError as exc:
            return str(exc)
        return "no error"

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(lookup, i) for i in range(3)]
        time.sleep(0.1)
        gate.set()
        assert [f.result() for f in futures] == ["broken"] * 3
    assert len(attempts) == 3 and cache.stats.entries == 0
    with pytest.raises(vlprep.DecodeError):
        fetch_image({"image": b"\xff\xd8\xff\xe0 not a jpeg"}, cache=cache)
    assert cache.stats.entries == 0
