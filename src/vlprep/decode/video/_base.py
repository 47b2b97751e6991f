"""Plumbing shared by the backend readers: context management and batched frame access."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TypeVar

import numpy as np

from vlprep.decode.video._types import VideoMetadata, WalkEstimate, check_indices
from vlprep.errors import DecodeError

__all__ = ["BatchReader", "ReaderBase"]

_R = TypeVar("_R", bound="ReaderBase")
BATCH = 8  # frames requested per backend call: bounded memory, few calls


class ReaderBase:
    """``with`` support for readers: ``close()`` on exit."""

    def close(self) -> None:
        """Release the decoder and the file the reader opened (idempotent)."""
        raise NotImplementedError

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BatchReader(ReaderBase):
    """A backend that decodes a list of indices per call (decord, torchcodec).

    Subclasses set ``metadata``, ``_walk`` and implement ``_alive`` and ``_batch``;
    ``frames_decoded`` counts the frames walked, estimated from the keyframe list.
    """

    metadata: VideoMetadata
    frames_decoded: int
    _walk: WalkEstimate

    def _alive(self) -> bool:
        raise NotImplementedError

    def _batch(self, indices: list[int]) -> np.ndarray:
        """uint8 ``(len(indices), H, W, 3)`` frames; backend errors as DecodeError."""
        raise NotImplementedError

    def frames(self, indices: Sequence[int]) -> Iterator[np.ndarray]:
        """Yield one uint8 ``(H, W, 3)`` RGB array per index.

        Raises:
            InvalidInputError: a bad plan (raised here, before decoding).
            DecodeError: the backend failed, or the reader is closed.
            ResourceLimitError: more than ``max_frames_decoded`` frames would be walked.
        """
        if not self._alive():
            raise DecodeError("the video reader is closed")
        return self._frames(check_indices(indices, self.metadata.total_frames))

    def _frames(self, plan: list[int]) -> Iterator[np.ndarray]:
        walked = 0
        for start in range(0, len(plan), BATCH):
            chunk = plan[start : start + BATCH]
            cost = self._walk.cost(chunk)
            walked += cost
            self._walk.check(walked)
            if not self._alive():
                raise DecodeError("the video reader was closed during iteration")
            batch = self._batch(chunk)
            self.frames_decoded += cost
            for i in range(len(chunk)):
                yield np.ascontiguousarray(batch[i])
            del batch
