"""Concurrent loading: ``ordered_map`` and the ``workers`` of ``process_vision_info``."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import encode, media_dir, photo
from tests.media_server import SLOW_DELAY, MediaServer, serving
from vlprep import (
    DecodeError,
    FetchPolicy,
    FetchTimeoutError,
    InvalidInputError,
    SourceNotFoundError,
    process_vision_info,
)
from vlprep._pool import default_workers, ordered_map, resolve_workers
from vlprep._threads import IntraOpThreads

pytestmark = pytest.mark.timeout(30)
SHARED = media_dir() / "images"
JPEGS = [encode(photo(320 + 40 * i, 240, seed=i)) for i in range(4)]
BIG = encode(photo(2000, 1500, seed=4), quality=95)  # above the stall route's 128 KiB


@pytest.fixture
def server() -> Iterator[MediaServer]:
    with serving({"big.jpg": BIG, **{f"{i}.jpg": data for i, data in enumerate(JPEGS)}}) as srv:
        yield srv


def chat(sources: list[str]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "image", "image": s} for s in sources]
    return [{"role": "user", "content": [*content, {"type": "text", "text": "compare"}]}]


def test_ordered_map_keeps_order_under_random_delays() -> None:
    rng = random.Random(0)
    delays = [rng.uniform(0, 0.02) for _ in range(40)]

    def load(i: int) -> int:
        time.sleep(delays[i])
        return i * i

    assert list(ordered_map(load, 40, 4)) == [i * i for i in range(40)]
    assert list(ordered_map(load, 40, 1)) == [i * i for i in range(40)]


def test_ordered_map_bounds_the_items_in_flight() -> None:
    lock = threading.Lock()
    started: list[int] = []
    consumed = 0
    high_water = 0

    def load(i: int) -> int:
        nonlocal high_water
        with lock:
            started.append(i)
            high_water = max(high_water, len(started) - consumed)
        return i

    for _ in ordered_map(load, 50, 3, window=5):
        time.sleep(0.002)  # a slow consumer
        consumed += 1
    assert sorted(started) == list(range(50))
    assert high_water <= 5 + 1  # the window, plus the item the consumer holds


def test_ordered_map_raises_the_first_failure_in_order_with_a_note() -> None:
    ran: list[int] = []

    def load(i: int) -> int:
        ran.append(i)
        if i == 2:
            time.sleep(0.05)  # fails later in time than item 3, still raised first
            raise DecodeError("bad pixels")
        if i == 3:
            raise SourceNotFoundError("missing")
        return i

    with pytest.raises(DecodeError) as info:
        list(ordered_map(load, 200, 2, what="frame"))
    assert "while loading frame 3 of 200" in info.value.__notes__
    assert len(ran) < 200  # the rest were cancelled, not all run


def test_workers_argument_is_validated() -> None:
    assert resolve_workers(None) == default_workers() >= 1
    assert resolve_workers(3) == 3
    for bad in (0, -1, True, 2.0, "2"):
        with pytest.raises(InvalidInputError, match="workers must be an int >= 1"):
            resolve_workers(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="workers"):
        process_vision_info(chat([str(SHARED / "hopper.jpg")]), workers=0)


def test_process_vision_info_overlaps_network_loads(server: MediaServer) -> None:
    urls = [server.url("slow", f"{i}.jpg") for i in range(4)]
    started = time.perf_counter()
    parallel, _ = process_vision_info(chat(urls), workers=4)
    elapsed = time.perf_counter() - started
    serial, _ = process_vision_info(chat(urls), workers=1)
    assert elapsed < 2 * SLOW_DELAY  # 4 loads of SLOW_DELAY each, overlapped (serial: 4x)
    assert [im.size for im in parallel] == [im.size for im in serial]
    assert [im.tobytes() for im in parallel] == [im.tobytes() for im in serial]


def test_process_vision_info_keeps_message_order_for_mixed_sources(
    server: MediaServer,
) -> None:
    sources = [
        server.url("slow", "0.jpg"),  # slowest first: must still come first
        str(SHARED / "hopper_orientation_6.jpg"),
        server.url("f", "1.jpg"),
        str(SHARED / "flower2.jpg"),
    ]
    images, videos = process_vision_info(chat(sources), workers=4)
    one_by_one = [process_vision_info(chat([s]), workers=1)[0][0] for s in sources]
    assert videos is None
    assert [im.tobytes() for im in images] == [im.tobytes() for im in one_by_one]


def test_the_fetch_deadline_stays_per_item(server: MediaServer) -> None:
    policy = FetchPolicy(image_deadline=1.0, read_timeout=5.0)
    sources = [server.url("f", "0.jpg"), server.url("stall", "big.jpg"), server.url("f", "2.jpg")]
    started = time.perf_counter()
    with pytest.raises(FetchTimeoutError) as info:
        process_vision_info(chat(sources), policy=policy, workers=3)
    assert time.perf_counter() - started < 3.0
    assert "while loading vision item 2 of 3" in info.value.__notes__


def test_a_failing_item_is_named(tmp_path: Path) -> None:
    sources = [str(SHARED / "hopper.jpg"), str(tmp_path / "missing.jpg")]
    with pytest.raises(SourceNotFoundError) as info:
        process_vision_info(chat(sources), workers=2)
    assert "while loading vision item 2 of 2" in info.value.__notes__


def test_pool_workers_share_the_callers_torch_threads() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def load(i: int) -> int:
        time.sleep(0.01)
        with lock:
            seen.append(torch.get_num_threads())
        return i

    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        list(ordered_map(load, 8, 2))
        assert seen and all(n == 2 for n in seen)  # 4 threads shared by 2 workers
        assert torch.get_num_threads() == 4  # the caller's count is untouched
        seen.clear()
        list(ordered_map(load, 8, 1))
        assert seen == [4] * 8  # no pool, no limit
    finally:
        torch.set_num_threads(before)


def test_intra_op_limits_nest_and_restore() -> None:
    limits = IntraOpThreads()
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with limits.limit(2):
            assert torch.get_num_threads() == 2
            with limits.limit(3):  # never above the enclosing block
                assert torch.get_num_threads() == 2
            with limits.limit(1):
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 2  # the enclosing count comes back
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)
