"""Which video backend decodes, and opening a reader in this process.

Shared by :func:`vlprep._decode.video.open_video` and the isolated decoder's child
(:mod:`vlprep._decode.video._isolated`), which opens its reader in process: keeping this
apart from the package ``__init__`` is what lets the child import it without a cycle.
"""

from __future__ import annotations

import importlib
import logging

from vlprep._decode.video._source import OpenedSource, read_head, sniff_container
from vlprep._decode.video._types import (
    BACKEND_NAMES,
    BackendChoice,
    BackendName,
    VideoOptions,
    VideoReader,
)
from vlprep._errors import BackendUnavailableError, InvalidInputError

__all__ = ["available_backends", "open_in_process", "resolve_backend"]

logger = logging.getLogger("vlprep._decode.video")

_DEFAULT_OPTIONS = VideoOptions()
_MODULES: dict[str, str] = {"pyav": "av", "decord": "decord", "torchcodec": "torchcodec"}
_INSTALL: dict[str, str] = {
    "pyav": "pip install 'vlprep[video]'",
    "decord": "pip install 'vlprep[decord]'",
    "torchcodec": "pip install torchcodec (it also needs the FFmpeg shared libraries)",
}


def _importable(name: BackendName) -> bool:
    """Whether the backend's module imports (torchcodec: and its FFmpeg libraries load)."""
    try:
        if name == "torchcodec":
            importlib.import_module("torchcodec.decoders")
            # torchcodec imports without FFmpeg; it then reports no FFmpeg version.
            if getattr(importlib.import_module("torchcodec"), "ffmpeg_major_version", 0) is None:
                return False
        else:
            importlib.import_module(_MODULES[name])
    except Exception:  # ImportError, OSError or RuntimeError from missing shared libraries
        logger.debug("video backend %s is not usable", name, exc_info=True)
        return False
    return True


def available_backends() -> list[BackendName]:
    """The backends that import in this environment, in ``"auto"`` preference order."""
    order: tuple[BackendName, ...] = ("pyav", "torchcodec", "decord")
    return [name for name in order if _importable(name)]


def resolve_backend(
    options: VideoOptions | None = None, backend: BackendName | None = None
) -> BackendName:
    """The backend a call would use: ``backend``, else ``options.backend``, else auto.

    Raises:
        InvalidInputError: an unknown backend name.
        BackendUnavailableError: the requested backend (or, for ``"auto"``, every
            backend) is not installed; the message names what to install.
    """
    choice: BackendChoice = (
        backend if backend is not None else (options or _DEFAULT_OPTIONS).backend
    )
    if choice == "auto":
        auto_order: tuple[BackendName, ...] = ("pyav", "torchcodec", "decord")
        for name in auto_order:
            if _importable(name):
                return name
        raise BackendUnavailableError(
            "no video backend is installed; install PyAV with: pip install 'vlprep[video]'"
        )
    if choice not in BACKEND_NAMES:
        raise InvalidInputError(
            f"video backend must be one of {['auto', *BACKEND_NAMES]}, got {str(choice)[:32]!r}"
        )
    if not _importable(choice):
        raise BackendUnavailableError(
            f"video backend {choice!r} is not available; install it with: {_INSTALL[choice]}"
        )
    return choice


def open_in_process(name: BackendName, opened: OpenedSource, options: VideoOptions) -> VideoReader:
    """A reader of backend ``name`` over ``opened``, decoding in this process."""
    kind = sniff_container(read_head(opened.file))
    if name == "pyav":
        from vlprep._decode.video._pyav import PyAVReader

        return PyAVReader(opened, kind, options)
    if name == "decord":
        from vlprep._decode.video._decord import DecordReader

        return DecordReader(opened, options)
    from vlprep._decode.video._torchcodec import TorchCodecReader

    return TorchCodecReader(opened, options)
