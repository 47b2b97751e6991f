"""Fewer torch intra-op threads for a block of work in the calling thread, then restore.

Used where vlprep itself runs torch work on several threads at once (a video's decoder
beside its resize, a batch's items on a pool): left alone, each thread starts an OpenMP
team as large as the machine, and on few cores the teams wait at their barriers for
threads another team has preempted, spinning.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

__all__ = ["INTRA_OP_THREADS", "IntraOpThreads"]


class IntraOpThreads:
    """Per-thread limits on torch's intra-op thread count, nestable, restored on exit.

    Only with torch's OpenMP backend, where the count is per calling thread (a native
    thread-pool build cannot resize its pool: there this does nothing). torch also keeps
    the last count set as the start value of threads it meets later, so the value
    restored when a thread leaves its outermost block is shared: the count before the
    first of the concurrent blocks entered (a thread whose first torch use falls inside
    another block would otherwise start from, and then restore, the reduced count).
    Inside a thread, a nested block never raises the count above the enclosing one and
    hands the enclosing count back when it ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._restore = 0
        self._openmp: bool | None = None
        self._local = threading.local()

    def _stack(self) -> list[int]:
        stack: list[int] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    @contextlib.contextmanager
    def limit(self, count: int) -> Iterator[None]:
        """Run the block with at most ``count`` (>= 1) intra-op threads in this thread."""
        if self._openmp is None:
            self._openmp = "parallel backend: OpenMP" in torch.__config__.parallel_info()
        if not self._openmp:
            yield
            return
        stack = self._stack()
        if stack:
            base = stack[-1]
        else:
            with self._lock:
                if self._active == 0:
                    self._restore = torch.get_num_threads()
                self._active += 1
                base = self._restore
        target = max(1, min(count, base))
        if torch.get_num_threads() != target:
            torch.set_num_threads(target)
        stack.append(target)
        try:
            yield
        finally:
            stack.pop()
            if stack:
                back = stack[-1]
            else:
                with self._lock:
                    self._active -= 1
                    back = self._restore
            if torch.get_num_threads() != back:
                torch.set_num_threads(back)


INTRA_OP_THREADS = IntraOpThreads()
