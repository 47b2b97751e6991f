"""Local files: bare paths and ``file://`` URLs, with root containment and size caps."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO
from urllib.parse import unquote

from vlprep.errors import (
    FetchError,
    FetchTooLargeError,
    InvalidInputError,
    SourceNotAllowedError,
    SourceNotFoundError,
    describe_source,
    looks_like_payload,
)
from vlprep.sources._payload import Payload
from vlprep.sources.policy import FetchPolicy, Modality

__all__ = ["check_local", "path_from_file_url", "read_local"]


def path_from_file_url(url: str) -> str:
    """The path of a ``file://`` URL, as qwen-vl-utils reads it (``url[7:]``).

    ``file:///abs/x.png`` -> ``/abs/x.png``; ``file://rel/x.png`` -> ``rel/x.png``.
    Percent-escapes are decoded only when the literal path does not exist.
    """
    path = url[7:]
    if not os.path.exists(path) and "%" in path:
        path = unquote(path)
    return path


def check_local(path: str, policy: FetchPolicy, modality: Modality) -> tuple[str, int]:
    """Apply the policy to a local path without reading it.

    Returns:
        ``(path_to_open, size_in_bytes)``; the path is the real path when a root is set.

    Raises:
        as :func:`read_local`.
    """
    shown = describe_source(path)
    if "\x00" in path:
        raise InvalidInputError(f"local path {shown} contains a NUL byte; no file has that name")
    try:
        os.fsencode(path)  # what every os call does first (UnicodeEncodeError otherwise)
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"local path {shown} holds a lone surrogate (U+{ord(path[exc.start]):04X}) that no "
            "file name can encode; decode the name with errors='surrogateescape' or fix it"
        ) from None
    if not policy.allow_local or "file" not in policy.allowed_schemes:
        raise SourceNotAllowedError(
            f"local file {shown} refused: this FetchPolicy does not allow local files "
            "(use FetchPolicy(allow_local=True) or pass the bytes)"
        )
    real = path
    if policy.local_root is not None:
        real = os.path.realpath(path)
        root = os.path.realpath(policy.local_root)
        if os.path.commonpath([root, real]) != root:
            raise SourceNotAllowedError(
                f"local file {shown} resolves outside the allowed root {describe_source(root)}"
            )
    hint = ""
    if len(path) > 64 and looks_like_payload(path):
        hint = (
            "; it looks like raw base64, not a path: pass it as "
            "'data:image/png;base64,<data>' (or the decoded bytes)"
        )
    try:
        st = os.stat(real)
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"no such file: {shown}{hint}") from exc
    except OSError as exc:
        raise FetchError(f"cannot stat {shown}: {exc.strerror}{hint}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{shown} is not a regular file; pass an image or video file")
    cap = policy.max_bytes(modality)
    if st.st_size > cap:
        raise FetchTooLargeError(
            f"{shown} is {st.st_size} bytes, above the {modality} cap of {cap} bytes "
            f"(raise FetchPolicy.max_{modality}_bytes)"
        )
    return real, st.st_size


def _open_regular(path: str, shown: str) -> BinaryIO:
    """Open ``path`` and check the *opened* file is regular.

    ``check_local`` stats the path first; a FIFO or device swapped in between would make
    a plain ``open`` block or read forever. ``O_NONBLOCK`` keeps the open of a FIFO from
    waiting for a writer, and ``fstat`` on the descriptor checks what was really opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInputError(f"{shown} is not a regular file; pass an image or video file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_local(
    path: str, policy: FetchPolicy, modality: Modality, limit: int | None = None
) -> Payload:
    """Read a regular local file within the policy (only its first ``limit`` bytes if given).

    The byte cap applies to the whole file even when only a prefix is read, so a prefix
    read fails exactly where a full read would.

    Raises:
        SourceNotAllowedError: local files are disabled, or the real path leaves ``local_root``.
        SourceNotFoundError: the file does not exist.
        InvalidInputError: not a regular file (directory, FIFO, device).
        FetchTooLargeError: larger than the modality's byte cap.
    """
    real, size = check_local(path, policy, modality)
    shown, cap = describe_source(path), policy.max_bytes(modality)
    if limit is not None:
        try:
            with _open_regular(real, shown) as fh:
                return Payload(data=fh.read(limit), origin=shown)
        except OSError as exc:
            raise FetchError(f"cannot read {shown}: {exc.strerror}") from exc
    try:
        with _open_regular(real, shown) as fh:
            # Sized from stat, not cap + 1: no cap-sized buffer for every small file.
            data = fh.read(min(size, cap) + 1)
            if len(data) > size:  # the file grew after stat: read on, still capped
                data += fh.read(cap + 1 - len(data))
    except OSError as exc:
        raise FetchError(f"cannot read {shown}: {exc.strerror}") from exc
    if len(data) > cap:
        raise FetchTooLargeError(f"{shown} grew above the {modality} cap of {cap} bytes")
    return Payload(data=data, origin=shown)
