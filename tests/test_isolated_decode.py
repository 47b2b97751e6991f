"""VideoOptions(isolate=True): the decoder in a memory-capped, killable child process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.videos import write_clip
from vlprep._decode.video import VideoOptions, open_video, probe_video
from vlprep._decode.video._isolated import IsolatedReader
from vlprep._errors import DecodeError, InvalidInputError, ResourceLimitError
from vlprep._video import fetch_video

ISOLATED = VideoOptions(isolate=True, isolate_timeout=30.0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("iso") / "clip.mp4", width=96, height=64, frames=24)


def _pid(reader: object) -> int:
    assert isinstance(reader, IsolatedReader)
    proc = reader._proc
    assert proc is not None
    return proc.pid


def test_same_metadata_and_frames_as_in_process(clip: Path) -> None:
    wanted = [0, 3, 3, 11, 23]
    with open_video(clip.read_bytes(), ISOLATED) as isolated:
        assert isinstance(isolated, IsolatedReader)
        got = list(isolated.frames(wanted))
        again = list(isolated.frames([1, 2]))  # a second request on the same child
    with open_video(clip) as direct:
        assert isolated.metadata == direct.metadata
        expected = list(direct.frames(wanted))
        expected_again = list(direct.frames([1, 2]))
    for a, b in zip(got + again, expected + expected_again, strict=True):
        assert a.dtype == np.uint8 and a.shape == b.shape
        assert np.array_equal(a, b)


def test_fetch_video_output_identical(clip: Path) -> None:
    ele = {"video": str(clip), "nframes": 8}
    direct, fps_direct = fetch_video(ele, return_video_sample_fps=True)
    isolated, fps_isolated = fetch_video(ele, return_video_sample_fps=True, video_options=ISOLATED)
    assert fps_direct == fps_isolated
    assert isinstance(direct, torch.Tensor) and torch.equal(direct, isolated)


def test_the_child_reads_the_opened_file_not_the_path(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlprep._decode._child import ChildProcess
    from vlprep._sources import FetchPolicy, open_local_file

    sent: list[dict[str, object]] = []
    real_send = ChildProcess.send

    def send(
        self: ChildProcess, message: dict[str, object], deadline: object, payload: bytes = b""
    ) -> None:
        sent.append(message)
        real_send(self, message, deadline, payload)  # type: ignore[arg-type]

    monkeypatch.setattr(ChildProcess, "send", send)
    moved = tmp_path / "moved.mp4"
    moved.write_bytes(clip.read_bytes())
    file = open_local_file(str(moved), FetchPolicy(local_root=str(tmp_path)))
    assert file is not None
    moved.unlink()  # the path is gone (or could now name another file): only the fd is left
    with file, open_video(file, ISOLATED) as isolated, open_video(clip) as direct:
        assert isolated.metadata == direct.metadata
        assert np.array_equal(next(iter(isolated.frames([5]))), next(iter(direct.frames([5]))))
    assert file.closed
    assert isinstance(sent[0]["fd"], int) and sent[0]["size"] == 0  # a descriptor, no copy


def test_errors_keep_their_class_and_message() -> None:
    bad = b"\x00\x00\x00\x18ftypmp42" + bytes(200)
    with pytest.raises(DecodeError) as direct:
        probe_video(bad)
    with pytest.raises(DecodeError) as isolated:
        probe_video(bad, ISOLATED)
    assert type(isolated.value) is type(direct.value)
    assert str(isolated.value) == str(direct.value)


def test_limits_apply_in_the_child(clip: Path) -> None:
    with pytest.raises(ResourceLimitError, match="max_frame_pixels"):
        probe_video(clip, VideoOptions(isolate=True, max_frame_pixels=1000))
    with open_video(clip, ISOLATED) as reader, pytest.raises(InvalidInputError):
        list(reader.frames([99]))  # validated in the parent, before any request


def test_decoder_crash_becomes_decode_error(clip: Path) -> None:
    with open_video(clip, ISOLATED) as reader:
        os.kill(_pid(reader), signal.SIGSEGV)  # what PyAV#2344 does to a whole server
        with pytest.raises(DecodeError, match=r"crashed \(SIGSEGV\)"):
            list(reader.frames([0]))
        with pytest.raises(DecodeError, match="closed"):
            list(reader.frames([0]))


def test_hung_decoder_is_killed_at_the_timeout(clip: Path) -> None:
    options = VideoOptions(isolate=True, isolate_timeout=1.0)
    with open_video(clip, options) as reader:
        pid = _pid(reader)
        os.kill(pid, signal.SIGSTOP)  # a decoder stuck in a loop
        start = time.monotonic()
        with pytest.raises(ResourceLimitError, match="isolate_timeout=1 s"):
            list(reader.frames([0, 1]))
        assert time.monotonic() - start < 4.0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_memory_cap_gives_a_clean_error(tmp_path: Path) -> None:
    big = write_clip(tmp_path / "4k.mp4", width=3840, height=2160, frames=2, gop=1)
    tight = VideoOptions(isolate=True, isolate_memory=64 << 20, isolate_timeout=30.0)
    with (
        pytest.raises(ResourceLimitError, match="not enough memory"),
        open_video(big, tight) as reader,
    ):
        list(reader.frames([0, 1]))
    with open_video(big, ISOLATED) as reader:  # the same file fits the default cap
        assert [f.shape for f in reader.frames([0, 1])] == [(2160, 3840, 3)] * 2


def test_closing_the_iterator_early_stops_the_child(clip: Path) -> None:
    with open_video(clip, ISOLATED) as reader:
        pid = _pid(reader)
        frames = reader.frames(list(range(10)))
        next(frames)
        frames.close()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("isolate", 1),
        ("isolate_memory", 1 << 20),
        ("isolate_timeout", 0),
        ("isolate_timeout", float("nan")),
    ],
)
def test_option_validation(field: str, value: object) -> None:
    with pytest.raises(InvalidInputError, match=field):
        VideoOptions(**{field: value})  # type: ignore[arg-type]
