"""Local files: bare paths and ``file://`` URLs, with root containment and size caps.

The one opener of local files, for images and videos alike (:func:`open_path`): a path is
opened once and every check (regular file, size, hard links) is made on the opened
descriptor, never on the path again. Under ``local_root`` the open itself stays beneath the
root: ``openat2(RESOLVE_BENEATH)`` where the kernel has it (Linux 5.6+), else a walk that
opens one component at a time from a descriptor of the root, never following a link or
``..`` out of it. Checking ``realpath`` and then opening the path again could be raced by
swapping a file for a symlink in between.
"""

from __future__ import annotations

import ctypes
import errno
import io
import os
import platform
import stat
import sys
from urllib.parse import unquote

from vlprep._errors import (
    FetchError,
    FetchTooLargeError,
    InvalidInputError,
    SourceNotAllowedError,
    SourceNotFoundError,
    describe_source,
    looks_like_payload,
)
from vlprep._sources._payload import Payload
from vlprep._sources.policy import FetchPolicy, Modality

__all__ = ["LocalFile", "open_local", "open_path", "path_from_file_url", "read_local"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Non-blocking: opening a FIFO must not wait for a writer (the descriptor is then refused).
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | _CLOEXEC
# O_PATH where there is one: folders the process may traverse but not list still work.
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_MAX_LINKS = 40  # symbolic links followed in one walk, as Linux's own limit

# openat2(2): one number on every architecture that has it (x86_64 and aarch64 listed).
_NR_OPENAT2 = 437 if sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64") else 0
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP})


class LocalFile(io.BufferedReader):
    """A regular local file opened by :func:`open_path`; ``shown`` names it safely."""

    def __init__(self, fd: int, shown: str) -> None:
        super().__init__(io.FileIO(fd, "rb", closefd=True))
        self.shown = shown


def path_from_file_url(url: str) -> str:
    """The path of a ``file://`` URL, as qwen-vl-utils reads it (``url[7:]``).

    ``file:///abs/x.png`` -> ``/abs/x.png``; ``file://rel/x.png`` -> ``rel/x.png``.
    Percent-escapes are decoded only when the literal path does not exist.
    """
    path = url[7:]
    if not os.path.exists(path) and "%" in path:
        path = unquote(path)
    return path


def open_path(
    path: str, root: str | None = None, *, hint: str = ""
) -> tuple[LocalFile, os.stat_result]:
    """Open a regular local file once, beneath ``root`` when given; check the descriptor.

    Without ``root`` the path is opened as the OS resolves it (symbolic links followed: no
    containment is promised). With ``root`` the path, made absolute without resolving its
    links, must lie under the root (as given or as its real path) and is opened from a
    descriptor of the root without leaving it: a symbolic link (or a ``..`` in one) that
    leads out of the root, an absolute link, or more than 40 links are refused. Links that
    stay beneath the root are followed.

    Args:
        path: the local path (relative paths are taken from the working directory).
        root: the folder the file must be opened beneath, or ``None``.
        hint: appended to a not-found message.

    Returns:
        The open file, blocking, positioned at 0, and the ``fstat`` of its descriptor.

    Raises:
        InvalidInputError: a NUL byte in the path, or not a regular file (directory, FIFO,
            device: refused after a non-blocking open, never read).
        SourceNotAllowedError: the path or a link in it leads outside ``root``.
        SourceNotFoundError: no such file.
        FetchError: any other failure to open (permissions, a file used as a folder, ...).
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
    try:
        fd = os.open(path, _FILE_FLAGS) if root is None else _open_beneath(path, root, shown)
    except FetchError:  # an OSError already explained (the root itself cannot be opened)
        raise
    except OSError as exc:
        raise _open_error(exc, shown, root, hint) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInputError(f"{shown} is not a regular file; pass an image or video file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except OSError as exc:
        os.close(fd)
        raise FetchError(f"cannot open {shown}: {exc.strerror}") from exc
    except BaseException:
        os.close(fd)
        raise
    return LocalFile(fd, shown), info


def _open_error(
    exc: OSError, shown: str, root: str | None, hint: str
) -> FetchError | InvalidInputError:
    """The vlprep error for an ``OSError`` of the open."""
    code = exc.errno
    if code == errno.ENOENT:
        return SourceNotFoundError(f"no such file: {shown}{hint}")
    if root is not None and code == errno.EXDEV:
        return SourceNotAllowedError(
            f"local file {shown} resolves outside the allowed root {describe_source(root)} "
            "(a symbolic link or '..' leads out of it); give a path to a file under the root"
        )
    if root is not None and code == errno.ELOOP:
        return SourceNotAllowedError(
            f"local file {shown} is refused under the allowed root {describe_source(root)}: "
            "it takes more than 40 symbolic links (a loop?) or a /proc magic link to reach; "
            "give a path to a file under the root"
        )
    return FetchError(f"cannot open {shown}: {exc.strerror}{hint}")


def _open_beneath(path: str, root: str, shown: str) -> int:
    """A descriptor of ``path`` opened beneath ``root``.

    Raises:
        SourceNotAllowedError: the path names no file under the root.
        FetchError: the root cannot be opened, or no ``dir_fd`` support.
        OSError: from resolving or opening the path (explained by :func:`open_path`).
    """
    if os.open not in os.supports_dir_fd:
        raise FetchError(
            f"cannot read {shown} under FetchPolicy.local_root on this system: opening "
            "beneath a folder needs openat (dir_fd); pass the bytes instead"
        )
    root_abs, root_real = os.path.abspath(root), os.path.realpath(root)
    rel = _relative(os.path.abspath(path), root_abs, root_real)
    if rel is None:
        raise SourceNotAllowedError(
            f"local file {shown} resolves outside the allowed root {describe_source(root)}; "
            "give a path to a file under the root"
        )
    try:
        root_fd = os.open(root_real, _DIR_FLAGS)
    except OSError as exc:
        raise FetchError(
            f"cannot open the allowed root {describe_source(root)}: {exc.strerror} "
            "(FetchPolicy.local_root must be an existing folder)"
        ) from exc
    try:
        if _openat2_works(root_fd):
            return _openat2(root_fd, rel, _FILE_FLAGS)
        return _walk(root_fd, rel)
    finally:
        os.close(root_fd)


def _relative(path: str, root_abs: str, root_real: str) -> str | None:
    """``path`` (absolute, ``..`` removed) relative to the root, or ``None`` outside it.

    The root is matched as given and as its real path; a path under neither may still
    reach it through links in its folders (``/srv/alias/x`` with ``alias`` -> the root),
    so the folder part is resolved once more. That only picks which name under the root
    is opened: the open itself stays beneath the root whatever the folders are by then.
    """
    for base in (root_abs, root_real):
        if os.path.commonpath([base, path]) == base:
            return os.path.relpath(path, base)
    folder = os.path.realpath(os.path.dirname(path))
    if os.path.commonpath([root_real, folder]) == root_real:
        return os.path.relpath(os.path.join(folder, os.path.basename(path)), root_real)
    return None


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _Kernel:
    """What this process found out about openat2, once."""

    # None: not probed yet; False: use the walk (no openat2, or a seccomp filter refuses it).
    openat2: bool | None = None if _NR_OPENAT2 else False
    libc: ctypes.CDLL | None = None


def _openat2(dir_fd: int, rel: str, flags: int) -> int:
    """``openat2(dir_fd, rel, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)``."""
    if _Kernel.libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        _Kernel.libc = libc
    syscall = _Kernel.libc.syscall
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
    name = os.fsencode(rel)
    for _ in range(8):
        fd = int(
            syscall(
                ctypes.c_long(_NR_OPENAT2),
                ctypes.c_int(dir_fd),
                ctypes.c_char_p(name),
                ctypes.byref(how),
                ctypes.c_size_t(ctypes.sizeof(how)),
            )
        )
        if fd >= 0:
            return fd
        code = ctypes.get_errno()
        # EAGAIN: the kernel saw a rename race while resolving '..' beneath the root.
        if code not in (errno.EINTR, errno.EAGAIN):
            raise OSError(code, os.strerror(code))
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def _openat2_works(root_fd: int) -> bool:
    """Whether openat2 can be used: probed once, by opening the root folder through it.

    Tests replace this function to exercise :func:`_walk`.
    """
    if _Kernel.openat2 is None:
        try:
            os.close(_openat2(root_fd, ".", _DIR_FLAGS))
            _Kernel.openat2 = True
        except (OSError, AttributeError) as exc:
            # An old kernel (ENOSYS), a seccomp filter (EPERM) or no syscall() in libc.
            code = getattr(exc, "errno", None)
            if isinstance(exc, AttributeError) or code is None or code in _UNSUPPORTED:
                _Kernel.openat2 = False
            else:
                raise
    return _Kernel.openat2


def _walk(root_fd: int, rel: str) -> int:
    """Open ``rel`` beneath ``root_fd`` one component at a time, as RESOLVE_BENEATH does.

    Every folder is opened with ``O_NOFOLLOW | O_DIRECTORY`` from the descriptor of the
    one before, the file with ``O_NOFOLLOW``. A symbolic link is read and its target
    spliced into the remaining components, resolved from the link's own folder; ``..``
    goes back one descriptor on this walk's own stack (never the kernel's ``..``), so it
    cannot climb above the root even while folders are renamed. An absolute link, or a
    ``..`` at the root, fails with ``EXDEV``; more than 40 links with ``ELOOP``.
    """
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    stack: list[int] = []  # descriptors opened here, below root_fd
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            here = stack[-1] if stack else root_fd
            if name == "..":
                if not stack:
                    raise OSError(errno.EXDEV, "'..' above the allowed root")
                os.close(stack.pop())
                continue
            last = not parts
            flags = (_FILE_FLAGS if last else _DIR_FLAGS) | _NOFOLLOW
            try:
                fd = os.open(name, flags, dir_fd=here)
            except OSError as exc:
                # A link: ELOOP for the file (O_NOFOLLOW), ENOTDIR for a folder (O_DIRECTORY).
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise
                try:
                    target = os.readlink(name, dir_fd=here)
                except OSError:
                    raise exc from None  # not a link: the open's own error
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
                if target.startswith("/"):
                    raise OSError(errno.EXDEV, "an absolute symbolic link") from None
                parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if last:
                return fd
            stack.append(fd)
        # The path names a folder (the root, or one reached by '..'): the caller refuses it.
        return os.open(".", _FILE_FLAGS, dir_fd=stack[-1] if stack else root_fd)
    finally:
        for fd in stack:
            os.close(fd)


def open_local(
    path: str, policy: FetchPolicy, modality: Modality
) -> tuple[LocalFile, os.stat_result]:
    """Apply the policy to a local path and open it, once: the checks are on what was opened.

    Under ``policy.local_root`` the path is opened beneath the root (:func:`open_path`),
    so no symlink, ``..`` or swap between a check and a reopen can lead out of it; with
    ``policy.refuse_hard_links`` a file with more than one hard link is refused too.

    Returns:
        The open file (the caller closes it) and the ``fstat`` of its descriptor.

    Raises:
        as :func:`read_local`.
    """
    shown = describe_source(path)
    if not policy.allow_local or "file" not in policy.allowed_schemes:
        raise SourceNotAllowedError(
            f"local file {shown} refused: this FetchPolicy does not allow local files "
            "(use FetchPolicy(allow_local=True) or pass the bytes)"
        )
    hint = ""
    if len(path) > 64 and looks_like_payload(path):
        hint = (
            "; it looks like raw base64, not a path: pass it as "
            "'data:image/png;base64,<data>' (or the decoded bytes)"
        )
    file, info = open_path(path, policy.local_root, hint=hint)
    try:
        if policy.local_root is not None and policy.refuse_hard_links and info.st_nlink > 1:
            raise SourceNotAllowedError(
                f"local file {shown} has {info.st_nlink} hard links; this FetchPolicy "
                "(refuse_hard_links=True) reads only files with one link under local_root, "
                "since a hard link can bring a file from outside the root into it (copy the "
                "file instead, or set FetchPolicy.refuse_hard_links=False)"
            )
        cap = policy.max_bytes(modality)
        if info.st_size > cap:
            raise FetchTooLargeError(
                f"{shown} is {info.st_size} bytes, above the {modality} cap of {cap} bytes "
                f"(raise FetchPolicy.max_{modality}_bytes)"
            )
    except BaseException:
        file.close()
        raise
    return file, info


def read_local(
    path: str, policy: FetchPolicy, modality: Modality, limit: int | None = None
) -> Payload:
    """Read a regular local file within the policy (only its first ``limit`` bytes if given).

    The byte cap applies to the whole file even when only a prefix is read, so a prefix
    read fails exactly where a full read would.

    Raises:
        SourceNotAllowedError: local files are disabled, the path leaves ``local_root``
            (``..``, a symbolic link out of it), or a hard link refused by the policy.
        SourceNotFoundError: the file does not exist.
        InvalidInputError: not a regular file (directory, FIFO, device), or a NUL byte.
        FetchTooLargeError: larger than the modality's byte cap.
        FetchError: the file cannot be opened or read.
    """
    file, info = open_local(path, policy, modality)
    shown, cap = file.shown, policy.max_bytes(modality)
    with file:
        try:
            if limit is not None:
                return Payload(data=file.read(limit), origin=shown)
            # Sized from fstat, not cap + 1: no cap-sized buffer for every small file.
            data = file.read(min(info.st_size, cap) + 1)
            if len(data) > info.st_size:  # the file grew after fstat: read on, still capped
                data += file.read(cap + 1 - len(data))
        except OSError as exc:
            raise FetchError(f"cannot read {shown}: {exc.strerror}") from exc
    if len(data) > cap:
        raise FetchTooLargeError(f"{shown} grew above the {modality} cap of {cap} bytes")
    return Payload(data=data, origin=shown)
