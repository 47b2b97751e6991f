"""A decoder in a child process: memory cap, wall-clock kill, typed errors over a pipe.

Shared by the isolated video reader (``VideoOptions(isolate=True)``,
:mod:`vlprep._decode.video._isolated`) and the isolated image decode
(``ImageOptions(decode_timeout=...)``, :mod:`vlprep._decode._image_child`). The parent
starts a child Python (``_BOOT``, which skips ``vlprep/__init__`` and so torch) running
the ``_child_main`` of a named module, and talks to it in length-prefixed JSON messages,
each optionally followed by raw bytes. The child caps its address space with
``RLIMIT_AS`` (its size after imports plus a budget) and is killed when a request
outlives its deadline. What goes wrong in the child becomes a typed error:

* an error the child raised on purpose -> the same ``VlprepError`` class and message;
* ``MemoryError`` in the child -> :class:`ResourceLimitError` (the child's own message);
* the child dies from a signal (SIGSEGV in a decoder) -> :class:`DecodeError`;
* a request past its deadline -> the child is killed, :class:`ResourceLimitError`.

Wire format (both directions): a 4-byte big-endian length and a JSON object, then any
payload the message announces.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from typing import Any

from vlprep import _errors as errors
from vlprep._errors import DecodeError, ResourceLimitError, VlprepError

__all__ = [
    "ChildProcess",
    "Deadline",
    "child_read",
    "child_receive",
    "child_send",
    "error_reply",
    "limit_memory",
]

_LEN = struct.Struct(">I")
_CHUNK = 1 << 20
_MAX_CONTROL = 1 << 24  # a control message above 16 MiB means a broken child
# The child imports vlprep as a bare namespace package: ``vlprep/__init__`` pulls in torch
# (seconds of start-up) and the decoders do not need it.
_BOOT = """
import importlib, json, sys, types
sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]
package = types.ModuleType("vlprep")
package.__path__ = json.loads(sys.argv[2])
sys.modules["vlprep"] = package
importlib.import_module(sys.argv[3])._child_main()
"""
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}


class Deadline:
    """A wall-clock deadline ``seconds`` from now."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def left(self) -> float:
        """Seconds until the deadline (negative once past)."""
        return self.end - time.monotonic()


class ChildProcess:
    """The parent's end of one decoder child.

    Args:
        module: the module whose ``_child_main()`` the child runs.
        what: ``"video"`` or ``"image"``, for messages ("the video decoder crashed").
        timeout_option: ``"VideoOptions.isolate_timeout"``-style name of the deadline's
            option, for the message of a killed child.
        pass_fds: descriptors the child inherits (a checked local file it reads in place).
    """

    def __init__(
        self, module: str, what: str, timeout_option: str, pass_fds: tuple[int, ...] = ()
    ) -> None:
        self._what, self._timeout_option = what, timeout_option
        argv = [sys.executable, "-c", _BOOT, json.dumps(sys.path), json.dumps(_package_path())]
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [*argv, module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            pass_fds=pass_fds,  # a local file vlprep opened: the child reads it in place
            start_new_session=True,  # killed as a group, never by a terminal's signals
        )
        if self._proc.stdin is None or self._proc.stdout is None:  # pragma: no cover
            raise RuntimeError("subprocess pipes were not created")
        self._in, self._out = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The running child, ``None`` once closed."""
        return self._proc

    def close(self, *, kill: bool = False) -> None:
        """Stop the child (ask by closing its input, then kill) and release the pipes."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if kill:
            _kill(proc)
            return
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            _kill(proc)

    def send(self, message: dict[str, Any], deadline: Deadline, payload: bytes = b"") -> None:
        """Send one JSON message, then ``payload`` raw."""
        body = json.dumps(message).encode()
        self._write(_LEN.pack(len(body)) + body, deadline)
        if payload:
            self._write(payload, deadline)

    def receive(self, deadline: Deadline) -> dict[str, Any]:
        """The next JSON message; an ``{"error": [class, text]}`` one is raised instead."""
        head = bytearray(_LEN.size)
        self.read_into(memoryview(head), deadline)
        (size,) = _LEN.unpack(head)
        if size > _MAX_CONTROL:
            self.close(kill=True)
            raise DecodeError(f"the isolated {self._what} decoder sent a malformed reply")
        body = bytearray(size)
        self.read_into(memoryview(body), deadline)
        message: dict[str, Any] = json.loads(body)
        if "error" in message:
            name, text = message["error"]
            cls = getattr(errors, str(name), None)
            if not (isinstance(cls, type) and issubclass(cls, VlprepError)):
                cls = DecodeError
            raise cls(str(text))
        return message

    def read_into(self, view: memoryview, deadline: Deadline) -> None:
        """Fill ``view`` with the raw bytes that follow a message."""
        while view:
            self._wait(self._out, write=False, deadline=deadline)
            try:
                got = os.readv(self._out, [view[:_CHUNK]])
            except BlockingIOError:
                continue
            if got == 0:
                raise self._died()
            view = view[got:]

    def alive(self) -> subprocess.Popen[bytes]:
        """The child; :class:`DecodeError` once closed."""
        if self._proc is None:
            raise DecodeError(
                f"the isolated {self._what} reader is closed (open the {self._what} again)"
            )
        return self._proc

    def _write(self, data: bytes, deadline: Deadline) -> None:
        view = memoryview(data)
        while view:
            self._wait(self._in, write=True, deadline=deadline)
            try:
                written = os.write(self._in, view[:_CHUNK])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise self._died() from None
            view = view[written:]

    def _wait(self, fd: int, *, write: bool, deadline: Deadline) -> None:
        self.alive()
        left = deadline.left()
        if left > 0:
            reads, writes = ([], [fd]) if write else ([fd], [])
            ready = select.select(reads, writes, [], left)
            if ready[0] or ready[1]:
                return
        self.close(kill=True)
        field = self._timeout_option.rsplit(".", 1)[-1]
        raise ResourceLimitError(
            f"{self._what} decoding took longer than {field}={deadline.seconds:g} s; "
            f"the decoder process was killed (raise {self._timeout_option} if intended)"
        )

    def _died(self) -> VlprepError:
        proc = self.alive()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2.0)
        self.close(kill=True)
        code = proc.returncode
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            if sig in _CRASH_SIGNALS:
                return DecodeError(
                    f"the {self._what} decoder crashed ({sig.name}) on this input; "
                    "the file is malformed or hits a decoder bug"
                )
            return ResourceLimitError(
                f"the {self._what} decoder process was killed ({sig.name}), likely out of memory"
            )
        return DecodeError(f"the {self._what} decoder process exited unexpectedly (status {code})")


def _package_path() -> list[str]:
    # vlprep/_decode/_child.py -> vlprep/, without importing the root (an import cycle)
    return [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# ---------------------------------------------------------------------- the child side


def child_read(stream: Any, n: int) -> bytes:
    """Exactly ``n`` bytes from ``stream``; ``EOFError`` when the parent has gone."""
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return bytes(data)


def child_receive(stream: Any) -> dict[str, Any]:
    """The parent's next JSON message."""
    (size,) = _LEN.unpack(child_read(stream, _LEN.size))
    message: dict[str, Any] = json.loads(child_read(stream, size))
    return message


def child_send(stream: Any, message: dict[str, Any], payload: bytes | None = None) -> None:
    """One JSON message to the parent, then ``payload`` raw."""
    body = json.dumps(message).encode()
    stream.write(_LEN.pack(len(body)) + body)
    if payload is not None:
        stream.write(payload)
    stream.flush()


def limit_memory(extra: int) -> None:
    """Cap this process's address space at its current size plus ``extra`` bytes."""
    import resource

    try:
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        current = 0
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = current + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def error_reply(exc: BaseException, what: str, memory_limit: str, option: str) -> dict[str, Any]:
    """The child's answer for an exception: its class and message when it is a vlprep error,
    a ``ResourceLimitError`` naming ``memory_limit`` and ``option`` for a ``MemoryError``
    (the cap was hit), a ``DecodeError`` naming only the class otherwise (no message: a
    decoder's text can quote the payload)."""
    if isinstance(exc, VlprepError):
        return {"error": [type(exc).__name__, str(exc)]}
    if isinstance(exc, MemoryError):
        return {
            "error": [
                "ResourceLimitError",
                f"the {what} decoder ran out of memory ({memory_limit}); "
                f"raise {option} if the {what} is legitimate",
            ]
        }
    return {"error": ["DecodeError", f"the {what} decoder failed ({type(exc).__name__})"]}
