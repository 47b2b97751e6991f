"""The faster video modes: keyframe seeking (``VideoOptions.seek``) and ``resize="decoder"``.

Keyframe mode must return exactly the keyframes it reports (checked against the exact
mode decoding those indices, and against the keyframes' packet timestamps read with a
separate demux), keep the plan's frame count, and decode one frame per keyframe. The
decoder scaler must keep shapes, dtype and indices and stay within the deviation measured
in docs/video.md.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import media_dir
from tests.test_decode_video import clip, corner, index_of, needs_torchcodec, rotated_clip
from tests.videos import write_clip
from vlprep import inspect, process_vision_info
from vlprep._decode.video import VideoOptions, open_video
from vlprep._errors import InvalidInputError, UnsupportedFormatError
from vlprep._expansion import video_timestamps
from vlprep._sampling import snap_to_keyframes
from vlprep._tensors import FrameResizer
from vlprep._video import fetch_video

VIDEOS = media_dir() / "videos"
KEYFRAME = VideoOptions(seek="keyframe")
DECODER = VideoOptions(resize="decoder")
# Measured (docs/video.md, nframes 8, patch 14): resize="decoder" against the exact resize.
# PSNR dB, mean absolute difference (levels); bounds leave margin for other FFmpeg builds.
DECODER_BOUNDS = {  # name: (min PSNR, max mean)
    "av1_video.mkv": (24.0, 2.5),  # synthetic pattern, saturated colour edges: chroma
    "bt709_full_range.mp4": (28.0, 2.0),
    "h264_10bits.mp4": (27.0, 3.2),
    "h265_video.mp4": (32.0, 1.2),
    "nasa_13013.mp4": (41.0, 0.7),  # real footage
    "var_fps_video.mp4": (45.0, 0.5),  # 4:4:4: no chroma subsampling to differ on
}


def ours(source: Any, ele: dict[str, Any] | None = None, **kw: Any) -> tuple[Any, Any, float]:
    source = str(source) if isinstance(source, Path) else source  # fetch_video takes str paths
    (video, meta), fps = fetch_video({"video": source, **(ele or {})}, 14, True, True, **kw)
    return video, meta, fps


def key_times(source: Path | bytes) -> list[float]:
    """Seconds from the stream start of each keyframe packet, by a separate demux."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    with av.open(handle) as container:
        stream = container.streams.best("video")
        assert stream is not None and stream.time_base is not None
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
        start = stream.start_time if stream.start_time is not None else min(p for p, _ in packets)
        return sorted(float((p - start) * stream.time_base) for p, key in packets if key)


def resized(frames: list[np.ndarray], height: int, width: int) -> torch.Tensor:
    out = torch.empty((len(frames), 3, height, width), dtype=torch.float32)
    resize = FrameResizer(height, width)
    for frame, slot in zip(frames, out, strict=True):
        resize(frame, slot)
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


# ---------------------------------------------------------------- snapping (pure)


def test_snap_to_keyframes_table() -> None:
    keys = [0, 25, 50, 75, 100]
    plan = [0, 12, 13, 37, 38, 62, 99, 119]
    assert snap_to_keyframes(plan, keys) == [0, 0, 25, 25, 50, 50, 100, 100]
    assert snap_to_keyframes([5, 5], [10, 0, 10]) == [0, 0]  # a tie goes to the earlier one
    assert snap_to_keyframes([0, 1], [3, 7]) == [3, 3]  # nothing before: the first one
    # by time: index 3 is 100 ms from keyframe 0 and 800 ms from keyframe 5
    times = [0.0, 0.033, 0.066, 0.1, 0.133, 0.9, 0.933, 0.966, 1.0, 1.033]
    assert snap_to_keyframes([3, 4], [0, 5]) == [5, 5]
    assert snap_to_keyframes([3, 4], [0, 5], times) == [0, 0]
    with pytest.raises(InvalidInputError, match="no known keyframe"):
        snap_to_keyframes([1], [])
    with pytest.raises(InvalidInputError, match="outside"):
        snap_to_keyframes([1], [0, 12], times)


# ------------------------------------------------------------------- keyframe mode


def test_keyframe_mode_returns_exactly_the_keyframes_it_reports() -> None:
    data = clip(n=120, gop=25, size=(96, 64))  # x264 with B-frames, scene-cut keyframes
    video, meta, fps = ours(data, {"nframes": 8}, video_options=KEYFRAME)
    exact, exact_meta, exact_fps = ours(data, {"nframes": 8})
    with open_video(data) as reader:
        keys = reader.metadata.keyframes
        assert keys is not None and len(keys) > 3
        planned = exact_meta["frames_indices"]
        assert meta["frames_indices"] == snap_to_keyframes(
            planned, keys, reader.metadata.frame_times
        )
        frames = list(reader.frames(meta["frames_indices"]))
    assert [index_of(f) for f in frames] == meta["frames_indices"]
    assert set(meta["frames_indices"]) <= set(keys)
    assert torch.equal(video, resized(frames, *video.shape[-2:]))  # = exact decode of those
    # the plan's count and size: the model's grid does not change
    assert video.shape == exact.shape and video.dtype == torch.float32
    assert meta["total_num_frames"] == exact_meta["total_num_frames"]
    assert meta["fps"] == exact_meta["fps"] and meta["video_backend"] == "pyav"
    # the sample fps is rescaled to the time the keyframes span
    span = (planned[-1] - planned[0]) / (meta["frames_indices"][-1] - meta["frames_indices"][0])
    assert fps == pytest.approx(exact_fps * span, rel=1e-9)


def test_two_samples_on_one_keyframe_repeat_it_and_say_so(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "gop25.mp4", frames=120, gop=25, width=96, height=64)
    video, meta, _ = ours(path, {"nframes": 16}, video_options=KEYFRAME)
    indices = meta["frames_indices"]
    assert video.shape[0] == 16 and len(indices) == 16
    assert set(indices) == {0, 25, 50, 75, 100}
    for k in range(1, 16):
        if indices[k] == indices[k - 1]:
            assert torch.equal(video[k], video[k - 1])
        else:
            assert not torch.equal(video[k], video[k - 1])


def test_keyframe_mode_decodes_one_frame_per_keyframe(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "gop25.mp4", frames=250, gop=25, width=96, height=64)
    planned = list(range(3, 250, 12))  # 21 targets, none a keyframe
    with open_video(path, VideoOptions(seek="keyframe", decode_threads=2)) as reader:
        keys = reader.metadata.keyframes
        assert keys == tuple(range(0, 250, 25))
        snapped = snap_to_keyframes(planned, keys)
        got = list(reader.frames(snapped))
        assert reader.frames_decoded == 1 + len(set(snapped) - {0})  # type: ignore[attr-defined]
    with open_video(path, VideoOptions(decode_threads=2)) as exact:
        expected = list(exact.frames(snapped))
        list(exact.frames(planned))
        assert exact.frames_decoded > 5 * len(set(snapped))  # type: ignore[attr-defined]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize(("name", "stream"), [("nasa_13013.mp4", 3), ("var_fps_video.mp4", 0)])
def test_reported_indices_are_the_keyframes_real_timestamps(name: str, stream: int) -> None:
    path = VIDEOS / name
    info = json.loads(
        (VIDEOS / "reference" / f"{name}.stream{stream}.all_frames_info.json").read_text()
    )
    frames = info["frames"] if isinstance(info, dict) else info
    pts_time = [float(f["pts_time"]) for f in frames]
    keys = key_times(path)
    for ele in ({}, {"fps": 4.0}, {"nframes": 6}):
        _, meta, _ = ours(path, ele, video_options=KEYFRAME)
        shown = [pts_time[i] - pts_time[0] for i in meta["frames_indices"]]
        assert all(min(abs(t - k) for k in keys) < 1e-4 for t in shown), (ele, shown, keys)
        with open_video(path) as reader:
            times = reader.metadata.frame_times
            assert times is not None
            assert [times[i] for i in meta["frames_indices"]] == pytest.approx(shown, abs=1e-4)
    # on a constant-rate file the Qwen3-VL timestamps (index / fps) are the keyframes' too
    if name == "nasa_13013.mp4":
        stamps = video_timestamps(meta["frames_indices"], meta["fps"])
        pairs = [shown[i : i + 2] for i in range(0, len(shown), 2)]
        assert stamps == pytest.approx([sum(p) / 2 for p in pairs], abs=1e-3)


def test_variable_frame_rate_snaps_by_time() -> None:
    path = VIDEOS / "var_fps_video.mp4"
    _, exact_meta, _ = ours(path, {"fps": 4.0})
    _, meta, _ = ours(path, {"fps": 4.0}, video_options=KEYFRAME)
    with open_video(path) as reader:
        times, keys = reader.metadata.frame_times, reader.metadata.keyframes
    assert times is not None and keys is not None
    for planned, chosen in zip(exact_meta["frames_indices"], meta["frames_indices"], strict=True):
        best = min(abs(times[k] - times[planned]) for k in keys)
        assert abs(times[chosen] - times[planned]) == best
    # a generated clip with a 0.77 s gap: there the nearest keyframe in time is not the
    # nearest in frame count, and the time decides
    pts = (0, 33, 66, 100, 133, 900, 933, 966, 1000, 1033)
    data = clip(container="mkv", n=len(pts), pts_ms=pts, gop=5, bframes=0)
    with open_video(data, KEYFRAME) as reader:
        keys, times = reader.metadata.keyframes, reader.metadata.frame_times
        assert keys is not None and times is not None
        plan = list(range(len(pts)))
        snapped = snap_to_keyframes(plan, keys, times)
        by_time = [min(keys, key=lambda k, i=i: (abs(times[k] - times[i]), k)) for i in plan]
        by_count = [min(keys, key=lambda k, i=i: (abs(k - i), k)) for i in plan]
        assert snapped == by_time and snapped != by_count
        assert [index_of(f) for f in reader.frames(snapped)] == snapped


def test_isolated_reader_gives_identical_output(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", frames=90, gop=20, width=96, height=64)
    for options in (KEYFRAME, DECODER, VideoOptions(seek="keyframe", resize="decoder")):
        isolated = VideoOptions(
            seek=options.seek, resize=options.resize, isolate=True, isolate_timeout=30.0
        )
        video, meta, fps = ours(path, {"nframes": 10}, video_options=options)
        video_iso, meta_iso, fps_iso = ours(path, {"nframes": 10}, video_options=isolated)
        assert torch.equal(video, video_iso) and meta == meta_iso and fps == fps_iso
    with open_video(path.read_bytes(), VideoOptions(seek="keyframe", isolate=True)) as reader:
        assert reader.metadata.keyframes == (0, 20, 40, 60, 80)
        with pytest.raises(InvalidInputError, match="not a keyframe"):
            reader.frames([1])


@pytest.mark.parametrize(
    "backend",
    [
        "decord",
        pytest.param("torchcodec", marks=needs_torchcodec),
    ],
)
def test_decord_and_torchcodec_support_keyframe_mode(tmp_path: Path, backend: str) -> None:
    path = write_clip(tmp_path / "clip.mp4", frames=120, gop=25, width=96, height=64)
    video, meta, fps = ours(path, {"nframes": 8}, video_options=KEYFRAME)
    other, other_meta, other_fps = ours(
        path, {"nframes": 8}, video_options=dataclasses.replace(KEYFRAME, backend=backend)
    )
    assert other_meta["frames_indices"] == meta["frames_indices"]
    assert other_meta["video_backend"] == backend and other_fps == pytest.approx(fps)
    assert float((other - video).abs().mean()) < 0.5  # same frames, another FFmpeg build
    with open_video(path, VideoOptions(seek="keyframe", backend=backend)) as reader:  # type: ignore[arg-type]
        assert reader.metadata.keyframes == (0, 25, 50, 75, 100)
        with pytest.raises(InvalidInputError, match="not a keyframe"):
            reader.frames([0, 30])


def test_stream_without_keyframe_positions_is_refused() -> None:
    data = clip(container="avi", n=40, bframes=2)  # AVI + B-frames: counted, never seeked
    with open_video(data) as reader:
        assert reader.metadata.keyframes is None
    with pytest.raises(UnsupportedFormatError, match="seek='exact'"):
        fetch_video({"video": data}, video_options=KEYFRAME)
    with open_video(data, KEYFRAME) as reader, pytest.raises(UnsupportedFormatError):
        reader.frames([0])


def test_keyframe_mode_reaches_inspect_and_process_vision_info(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", frames=120, gop=25, width=96, height=64)
    _, meta, fps = ours(path, {"nframes": 8}, video_options=KEYFRAME)
    element = {"type": "video", "video": str(path), "nframes": 8}
    conv = [{"role": "user", "content": [element]}]
    estimate = inspect(element, video_options=KEYFRAME)
    assert list(estimate.frame_indices) == meta["frames_indices"]
    assert estimate.sample_fps == pytest.approx(fps)
    _, videos, kwargs = process_vision_info(conv, return_video_kwargs=True, video_options=KEYFRAME)
    assert videos is not None and kwargs["fps"] == [pytest.approx(fps)]


# ----------------------------------------------------------------- decoder scaler


@pytest.mark.parametrize("name", sorted(DECODER_BOUNDS))
def test_decoder_resize_shape_dtype_and_deviation(name: str) -> None:
    path = VIDEOS / name
    exact, exact_meta, exact_fps = ours(path, {"nframes": 8})
    video, meta, fps = ours(path, {"nframes": 8}, video_options=DECODER)
    assert video.shape == exact.shape and video.dtype == torch.float32
    assert meta == exact_meta and fps == exact_fps
    assert torch.equal(video, video.round()) and video.min() >= 0 and video.max() <= 255
    low_psnr, high_mean = DECODER_BOUNDS[name]
    mean = float((video - exact).abs().mean())
    assert psnr(video, exact) >= low_psnr and mean <= high_mean, (psnr(video, exact), mean)


@pytest.mark.parametrize("degrees", [90, 180, -90])
def test_decoder_resize_follows_the_display_rotation(degrees: int) -> None:
    data = rotated_clip(degrees)
    exact, _, _ = ours(data, {"resized_height": 112, "resized_width": 84})
    video, _, _ = ours(data, {"resized_height": 112, "resized_width": 84}, video_options=DECODER)
    assert video.shape == exact.shape
    frame = video[0].permute(1, 2, 0).numpy()
    assert corner(frame) == corner(exact[0].permute(1, 2, 0).numpy())
    assert float((video - exact).abs().mean()) < 3.0


def test_decoder_resize_needs_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for backend in ("decord", "torchcodec"):
        with pytest.raises(InvalidInputError, match="backend='pyav'"):
            VideoOptions(backend=backend, resize="decoder")  # type: ignore[arg-type]
    path = write_clip(tmp_path / "clip.mp4", frames=20)
    monkeypatch.setenv("FORCE_QWENVL_VIDEO_READER", "decord")  # auto resolves to decord
    with pytest.raises(InvalidInputError, match="'decord', which has none"):
        fetch_video({"video": str(path)}, video_options=DECODER)
    monkeypatch.delenv("FORCE_QWENVL_VIDEO_READER")
    with (
        open_video(path, backend="decord") as reader,
        pytest.raises(InvalidInputError, match="no scaler"),
    ):
        reader.frames([0], size=(32, 32))
    with open_video(path) as reader:
        for bad in ((0, 32), (32,), (32.0, 32), "32x32"):
            with pytest.raises(InvalidInputError, match="size"):
                reader.frames([0], size=bad)  # type: ignore[arg-type]


def test_decoder_resize_of_frame_lists_is_the_exact_kernel() -> None:
    frames = [Image.new("RGB", (320, 240), (i * 40, 90, 200 - i * 30)) for i in range(4)]
    assert torch.equal(
        fetch_video({"video": frames}, video_options=DECODER), fetch_video({"video": frames})
    )


# ------------------------------------------------------------------- option checks


@pytest.mark.parametrize(
    ("field", "value", "listed"),
    [
        ("seek", "fast", "['exact', 'keyframe']"),
        ("seek", None, "['exact', 'keyframe']"),
        ("resize", "gpu", "['exact', 'fast', 'decoder']"),
    ],
)
def test_option_values_are_validated(field: str, value: object, listed: str) -> None:
    with pytest.raises(InvalidInputError, match=f"VideoOptions.{field} must be one of") as info:
        VideoOptions(**{field: value})  # type: ignore[arg-type]
    assert listed in str(info.value)


def test_long_video_mode_is_keyframes_with_the_decoder_scaler() -> None:
    options = VideoOptions.long_video()
    assert (options.seek, options.resize) == ("keyframe", "decoder")
    assert VideoOptions.long_video(resize="exact", max_duration=60.0) == VideoOptions(
        seek="keyframe", resize="exact", max_duration=60.0
    )
    with pytest.raises(InvalidInputError, match=r"VideoOptions\.seek"):
        VideoOptions.long_video(seek="nearest")
    data = clip(n=120, gop=25, size=(96, 64))
    video, meta, fps = ours(data, {"nframes": 8}, video_options=options)
    same, same_meta, same_fps = ours(
        data, {"nframes": 8}, video_options=VideoOptions(seek="keyframe", resize="decoder")
    )
    assert torch.equal(video, same) and meta == same_meta and fps == same_fps
    _, keyed, _ = ours(data, {"nframes": 8}, video_options=KEYFRAME)
    assert meta["frames_indices"] == keyed["frames_indices"]  # the same keyframes
