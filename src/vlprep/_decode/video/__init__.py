"""Video containers in, metadata and the RGB frames at requested indices out.

:func:`open_video` returns a :class:`VideoReader`: its ``metadata`` is known before any
frame is requested, and ``frames(indices)`` decodes only what the indices need (seek to
the keyframe before a far target, decode forward; a dense plan is one sequential pass).
Backends are imported lazily: PyAV (default, ``pip install 'vlprep[video]'``), decord
(``pip install 'vlprep[decord]'``) and torchcodec (``pip install torchcodec`` plus FFmpeg).

Every source is a byte string, a binary file object or an already policy-checked local
path: never a URL. The container is sniffed before FFmpeg sees it (MP4/MOV,
Matroska/WebM and AVI only), so playlists and other formats that make FFmpeg open further
URLs are refused up front.
"""

from __future__ import annotations

import logging
import os
from typing import BinaryIO

from vlprep._decode.video._backends import available_backends, open_in_process, resolve_backend
from vlprep._decode.video._source import open_source, sniff_container
from vlprep._decode.video._types import (
    DECODER_RESIZE_BACKENDS,
    BackendChoice,
    BackendName,
    FrameResize,
    FrameSeek,
    VideoMetadata,
    VideoOptions,
    VideoReader,
)
from vlprep._errors import InvalidInputError

__all__ = [
    "BackendChoice",
    "BackendName",
    "FrameResize",
    "FrameSeek",
    "VideoInput",
    "VideoMetadata",
    "VideoOptions",
    "VideoReader",
    "available_backends",
    "open_video",
    "probe_video",
    "resolve_backend",
    "sniff_container",
]

logger = logging.getLogger(__name__)

_DEFAULT_OPTIONS = VideoOptions()
VideoInput = bytes | bytearray | memoryview | BinaryIO | str | os.PathLike[str]


def open_video(
    source: VideoInput,
    options: VideoOptions | None = None,
    *,
    backend: BackendName | None = None,
) -> VideoReader:
    """Open a video for frame access.

    Args:
        source: the encoded container as ``bytes``, a seekable binary file object (not
            closed by the reader), or a local path already allowed by the fetch policy
            (opened and closed by the reader). Never a URL.
        options: limits and the backend choice (:class:`VideoOptions`).
        backend: overrides ``options.backend``.

    Returns:
        An open :class:`VideoReader`; close it, or use it as a context manager.

    Raises:
        InvalidInputError: a URL, a bad source type, an unknown backend, or
            ``resize="decoder"`` with a backend other than PyAV.
        SourceNotFoundError: a missing local path.
        BackendUnavailableError: the chosen backend is not installed (no fallback).
        DecodeError: empty, corrupt or truncated data; no video stream; no decodable frame.
        UnsupportedFormatError: a container or codec outside the allow-lists.
        ResourceLimitError: duration, frame size or index size above the limits.
    """
    options = options or _DEFAULT_OPTIONS
    name = resolve_backend(options, backend)
    if options.resize == "decoder" and name not in DECODER_RESIZE_BACKENDS:
        raise InvalidInputError(
            f"VideoOptions.resize='decoder' resizes in the PyAV backend's scaler; the video "
            f"backend is {name!r}, which has none: use backend='pyav', or resize='exact' or "
            "'fast'"
        )
    opened = open_source(source)
    try:
        if options.isolate:
            from vlprep._decode.video._isolated import IsolatedReader

            return IsolatedReader(opened, options, name)
        return open_in_process(name, opened, options)
    except BaseException:
        opened.close()
        raise


def probe_video(
    source: VideoInput,
    options: VideoOptions | None = None,
    *,
    backend: BackendName | None = None,
) -> VideoMetadata:
    """The :class:`VideoMetadata` of ``source``; same arguments and errors as :func:`open_video`.

    The packets are indexed without decoding; PyAV decodes the first frame only (to read
    the display matrix and prove that the stream decodes).
    """
    with open_video(source, options, backend=backend) as reader:
        return reader.metadata
