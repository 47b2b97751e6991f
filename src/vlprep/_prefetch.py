"""Run an iterator a few items ahead in a worker thread (decode overlaps the resize)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")
_POLL = 0.05  # seconds between checks of the stop flag while the queue is full


class _Done:
    pass


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetched(items: Iterator[T], depth: int = 3) -> Generator[T, None, None]:
    """Yield ``items`` in order while a worker thread produces up to ``depth`` ahead.

    The worker is the only thread that advances ``items``. An exception raised by
    ``items`` is re-raised here, in the consumer. Closing the returned generator (or an
    exception in the consumer) stops the worker and joins it before returning, so the
    caller may release what ``items`` reads from right after.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_Done())
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failed(exc))

    worker = threading.Thread(target=work, name="vlprep-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
