"""Plumbing shared by the backend readers: context management and batched frame access."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TypeVar

import numpy as np

from vlprep._decode.video._types import (
    FrameSeek,
    VideoMetadata,
    WalkEstimate,
    check_indices,
    check_keyframe_plan,
    check_output_size,
)
from vlprep._errors import DecodeError

__all__ = ["BatchReader", "ReaderBase"]

_R = TypeVar("_R", bound="ReaderBase")
BATCH = 8  # frames requested per backend call: bounded memory, few calls


class ReaderBase:
    """``with`` support for readers: ``close()`` on exit."""

    def close(self) -> None:
        """Release the decoder and the file the reader opened (idempotent)."""
        raise NotImplementedError

    def decoded_seconds(self, indices: Sequence[int]) -> tuple[float, ...] | None:
        """Presentation times of frames this reader decoded, seconds from the first frame.

        For backends whose metadata has no per-frame times (torchcodec): ``None`` here, and
        whenever any of ``indices`` was not decoded.
        """
        return None

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

    Subclasses set ``metadata`` (with its ``keyframes``), ``_walk``, ``_seek_mode`` (from
    ``VideoOptions.seek``) and implement ``_alive`` and ``_batch``;
    ``frames_decoded`` counts the frames walked, estimated from the keyframe list.
    """

    metadata: VideoMetadata
    frames_decoded: int
    _walk: WalkEstimate
    _seek_mode: FrameSeek = "exact"

    def _alive(self) -> bool:
        raise NotImplementedError

    def _batch(self, indices: list[int]) -> np.ndarray:
        """uint8 ``(len(indices), H, W, 3)`` frames; backend errors as DecodeError."""
        raise NotImplementedError

    def frames(
        self, indices: Sequence[int], size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        """Yield one uint8 ``(H, W, 3)`` RGB array per index.

        In keyframe mode (``VideoOptions(seek="keyframe")``) each index must be one of
        ``metadata.keyframes``: the backend then seeks to it and decodes that frame.

        Raises:
            InvalidInputError: a bad plan, a non-keyframe in keyframe mode, or any
                ``size`` (these backends have no scaler; raised here, before decoding).
            UnsupportedFormatError: keyframe mode without known keyframes.
            DecodeError: the backend failed, or the reader is closed.
            ResourceLimitError: more than ``max_frames_decoded`` frames would be walked.
        """
        if not self._alive():
            raise DecodeError("the video reader is closed")
        plan = check_indices(indices, self.metadata.total_frames)
        check_output_size(size, self.metadata.backend)
        if self._seek_mode == "keyframe":
            check_keyframe_plan(plan, self.metadata)
        return self._frames(plan)

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
