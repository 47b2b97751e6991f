"""``local_root`` holds while a file under the root is swapped for a symlink out of it.

A thread keeps replacing ``root/x`` (atomically) by a regular file or by a symlink to a
file outside the root, while the main thread fetches it. A check-then-reopen of the path
reads the outside file whenever the swap lands between the two; opening once, beneath the
root, never does. Every failure must be a vlprep error, never a raw ``OSError``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vlprep import FetchPolicy, VlprepError
from vlprep._sources import fetch

ITERATIONS = 2000
SECONDS = 8.0


@contextmanager
def swapping(target: Path, inside: bytes, outside: Path) -> Iterator[None]:
    """Flip ``target`` between a regular file holding ``inside`` and a link to ``outside``."""
    stop = threading.Event()
    regular, link = target.with_name(".regular"), target.with_name(".link")

    def flip() -> None:
        while not stop.is_set():
            regular.write_bytes(inside)
            os.replace(regular, target)
            link.unlink(missing_ok=True)
            link.symlink_to(outside)
            os.replace(link, target)

    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def race(attempt: Callable[[], bool], iterations: int = ITERATIONS) -> tuple[int, int, list[str]]:
    """Run ``attempt`` (True when it read the outside file) until the count or time is up.

    Returns:
        ``(escapes, calls, raw_errors)``: raw errors are the non-vlprep exceptions seen.
    """
    escapes, calls, raw = 0, 0, []
    end = time.monotonic() + SECONDS
    while calls < iterations and time.monotonic() < end:
        calls += 1
        try:
            escapes += attempt()
        except VlprepError:
            pass
        except Exception as exc:  # counted: the point of the test
            raw.append(f"{type(exc).__name__}: {exc}")
    return escapes, calls, raw


def test_image_fetch_never_reads_through_a_swapped_symlink(tmp_path: Path, local_opener: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    inside, secret = b"inside" * 10, b"SECRET" * 10
    outside = tmp_path / "secret.png"
    outside.write_bytes(secret)
    target = root / "x.png"
    target.write_bytes(inside)
    policy = FetchPolicy.strict(local_root=str(root))
    with swapping(target, inside, outside):
        escapes, calls, raw = race(lambda: fetch(str(target), policy).data == secret)
    assert (escapes, raw[:3]) == (0, []), f"{escapes} escapes in {calls} fetches ({local_opener})"
    assert calls >= 100


def test_fetch_video_never_decodes_a_swapped_symlink(tmp_path: Path, local_opener: str) -> None:
    from tests.videos import write_clip
    from vlprep import fetch_video

    root = tmp_path / "root"
    root.mkdir()
    inside_clip = write_clip(tmp_path / "in.mp4", width=64, height=32, frames=4, gop=2)
    outside = write_clip(tmp_path / "secret.mp4", width=32, height=64, frames=4, gop=2)
    target = root / "x.mp4"
    inside = inside_clip.read_bytes()
    target.write_bytes(inside)
    policy = FetchPolicy.strict(local_root=str(root))
    ele = {"video": str(target), "nframes": 2}
    video, _ = fetch_video(ele, return_video_metadata=True, policy=policy)
    shape = tuple(video.shape)

    def attempt() -> bool:
        got, _ = fetch_video(ele, return_video_metadata=True, policy=policy)
        return tuple(got.shape) != shape

    with swapping(target, inside, outside):
        escapes, calls, raw = race(attempt, iterations=1000)
    assert (escapes, raw[:3]) == (0, []), (
        f"{escapes} escapes in {calls} fetch_video calls ({local_opener})"
    )
    assert calls >= 20
