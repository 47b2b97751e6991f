"""Load the items of a batch on a bounded thread pool, results in input order.

Decoding and resizing release the GIL (Pillow, FFmpeg, torch) and network reads wait on
sockets, so items overlap on several cores. Each item keeps its own fetch deadline (the
function called does its own fetch); the pool only bounds how many run at once and how
many results are held.
"""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

from vlprep._errors import InvalidInputError, VlprepError
from vlprep._threads import INTRA_OP_THREADS

__all__ = ["default_workers", "ordered_map", "resolve_workers"]

T = TypeVar("T")

MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """``min(4, CPU count)``: the pool size when a caller passes ``workers=None``."""
    return min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    """Validate a ``workers`` argument; ``None`` -> :func:`default_workers`."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(
            f"workers must be an int >= 1 (or None for min(4, CPU count)), got {workers!r:.20}"
        )
    return workers


def ordered_map(
    load: Callable[[int], T],
    count: int,
    workers: int,
    *,
    what: str = "vision item",
    window: int | None = None,
) -> Generator[T, None, None]:
    """Yield ``load(0) .. load(count - 1)`` in order, ``workers`` calls at a time.

    Args:
        load: called with each index; runs on a worker thread when ``workers > 1``.
        count: number of items.
        workers: threads; 1 (or a single item) runs everything in the caller's thread.
        what: how an item is named in the note added to a ``VlprepError`` it raises
            ("while loading vision item 3 of 16").
        window: most items loading or loaded and waiting (default ``2 * workers``), besides
            the one the consumer holds: bounds the decoded results kept in memory when the
            consumer is slower than the pool.

    Raises:
        The first failing item's exception, in input order; items not yet started are
        cancelled and running ones finish before the pool closes.
    """

    def noted(index: int) -> T:
        try:
            return load(index)
        except VlprepError as exc:
            exc.add_note(f"while loading {what} {index + 1} of {count}")
            raise

    if workers <= 1 or count <= 1:
        for index in range(count):
            yield noted(index)
        return
    threads = min(workers, count)
    limit = max(threads, window if window is not None else 2 * threads)
    # The workers share the caller's torch threads (resize and patchify run in them):
    # one full-size OpenMP team per worker would oversubscribe the cores.
    share = max(1, torch.get_num_threads() // threads)

    def pooled(index: int) -> T:
        with INTRA_OP_THREADS.limit(share):
            return noted(index)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vlprep-load") as pool:
        queued = iter(range(count))
        pending: collections.deque[Future[T]] = collections.deque(
            pool.submit(pooled, i) for i in itertools.islice(queued, limit)
        )
        try:
            while pending:
                result = pending.popleft().result()
                following = next(queued, None)
                if following is not None:
                    pending.append(pool.submit(pooled, following))
                yield result
        finally:
            for future in pending:
                future.cancel()
