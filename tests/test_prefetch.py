"""prefetched(): order, errors, and clean shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from vlprep._prefetch import prefetched


def test_order_and_completion() -> None:
    assert list(prefetched(iter(range(100)), depth=3)) == list(range(100))
    assert list(prefetched(iter([]))) == []


def test_producer_errors_reach_the_consumer() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise ValueError("broken frame 2")

    gen = prefetched(items())
    assert next(gen) == 1
    with pytest.raises(ValueError, match="broken frame 2"):
        next(gen)


def test_closing_early_stops_and_joins_the_worker() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(10_000):
            produced.append(i)
            yield i

    before = threading.active_count()
    gen = prefetched(items(), depth=2)
    assert next(gen) == 0
    gen.close()
    time.sleep(0.05)
    assert threading.active_count() == before
    assert len(produced) < 10  # bounded read-ahead
