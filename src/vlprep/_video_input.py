"""A video element's source as the decoders and planners take it: no planning, no decoding.

Shared by the loader (:func:`vlprep.fetch_video`) and the estimates
(:func:`vlprep.inspect`), which open a source the same way and ask the same backend:
:func:`opened_container` (the one guarded fetch or local open), :func:`video_backend`
(``VideoOptions.backend``; qwen-vl-utils' ``FORCE_QWENVL_VIDEO_READER`` only where a drop-in
asks, read at call time) and
:func:`frames_from_array` (a uint8 array or tensor as a list of HWC frames).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import numpy as np

from vlprep._decode.video import BackendName, VideoInput, VideoOptions
from vlprep._errors import InvalidInputError
from vlprep._sources import FetchPolicy, fetch, open_local_file

__all__ = ["frames_from_array", "opened_container", "video_backend"]

_QWEN_BACKENDS: dict[str, BackendName] = {
    "decord": "decord",
    "torchcodec": "torchcodec",
    "torchvision": "pyav",  # qwen-vl-utils' torchvision reader decoded with PyAV
}


def video_backend(options: VideoOptions, read_env: bool = False) -> BackendName | None:
    """The backend to ask for: ``options.backend``; ``None`` for ``"auto"``.

    ``read_env``: only the qwen-vl-utils drop-ins (:func:`vlprep.fetch_video`,
    :func:`vlprep.process_vision_info`) set it, for compatibility: when the options leave the
    backend to ``"auto"``, qwen-vl-utils' ``FORCE_QWENVL_VIDEO_READER`` (read now) picks it.
    No other entry point reads an environment variable.

    Raises:
        InvalidInputError: ``FORCE_QWENVL_VIDEO_READER`` names no known backend.
    """
    if options.backend != "auto":
        return options.backend
    if not read_env:
        return None
    forced = os.environ.get("FORCE_QWENVL_VIDEO_READER")
    if not forced:
        return None
    if forced not in _QWEN_BACKENDS:
        raise InvalidInputError(
            f"FORCE_QWENVL_VIDEO_READER={forced[:20]!r} is not a known backend; "
            f"valid: {sorted(_QWEN_BACKENDS)}"
        )
    return _QWEN_BACKENDS[forced]


@contextlib.contextmanager
def opened_container(source: object, policy: FetchPolicy | None) -> Iterator[VideoInput]:
    """The container of a video element, as the decoders take it; closed on exit.

    A local path is opened once under the policy and decoded from that open file, never
    reopened by path (the policy's checks hold for the file that is read). URLs and
    ``data:`` URIs are fetched into bytes; bytes and file objects pass through.

    Raises:
        InvalidInputError: a source of another type; FetchError, SourceNotAllowedError
            from the fetch.
    """
    if isinstance(source, str):
        file = open_local_file(source, policy, "video")
        if file is None:
            yield fetch(source, policy, "video").data
            return
        with file:
            yield file
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield fetch(source, policy, "video").data
        return
    if callable(getattr(source, "read", None)):
        yield cast(BinaryIO, source)
        return
    raise InvalidInputError(
        f"unsupported video source of type {type(source).__name__}: give a path, URL, data "
        "URI, bytes, a binary file object, a uint8 array/tensor or a list of frames"
    )


def frames_from_array(value: Any) -> list[np.ndarray]:
    """A uint8 ``(T, H, W, C)`` or ``(T, C, H, W)`` array or tensor as ``T`` RGB HWC frames.

    Raises:
        InvalidInputError: another dtype or rank, or not 1 or 3 channels.
    """
    arr = (
        value.detach().cpu().numpy()
        if type(value).__module__.startswith("torch")
        else np.asarray(value)
    )
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise InvalidInputError(
            f"video arrays must be uint8 (T, H, W, C) or (T, C, H, W), got {arr.dtype} {arr.shape}"
        )
    if arr.shape[-1] not in (1, 3) and arr.shape[1] in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] not in (1, 3) or 0 in arr.shape:
        raise InvalidInputError(f"video arrays need 1 or 3 channels, got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return list(arr)
