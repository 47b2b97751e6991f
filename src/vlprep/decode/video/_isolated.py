"""Decode a video in a child process with a memory limit and a wall-clock kill.

``VideoOptions(isolate=True)`` makes :func:`vlprep.decode.video.open_video` return an
:class:`IsolatedReader`. The parent never hands the container to FFmpeg: it starts a
child Python (``_BOOT``, which skips ``vlprep/__init__`` and so torch), sends the
options and the bytes (or the already policy-checked path) over a pipe, and reads back
the metadata and then raw RGB frames. The child caps its address space with
``RLIMIT_AS`` (its size after imports plus ``isolate_memory``) and is killed when a
request outlives ``isolate_timeout``. What goes wrong in the child becomes a typed error:

* an error the child raised on purpose -> the same ``VlprepError`` class and message;
* ``MemoryError`` in the child -> :class:`ResourceLimitError`;
* the child dies from a signal (SIGSEGV in a decoder, PyAV#2344) -> :class:`DecodeError`;
* a request past ``isolate_timeout`` -> the child is killed, :class:`ResourceLimitError`.

Wire format (both directions): a 4-byte big-endian length and a JSON object; a frame
message ``{"frame": [h, w, 3]}`` is followed by ``h * w * 3`` raw bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from vlprep import errors
from vlprep.decode.video._base import ReaderBase
from vlprep.decode.video._source import OpenedSource
from vlprep.decode.video._types import (
    BackendName,
    VideoMetadata,
    VideoOptions,
    check_indices,
    check_keyframe_plan,
    check_output_size,
)
from vlprep.errors import DecodeError, ResourceLimitError, VlprepError

__all__ = ["IsolatedReader"]

_LEN = struct.Struct(">I")
_CHUNK = 1 << 20
_MAX_CONTROL = 1 << 24  # a control message above 16 MiB means a broken child
# The child imports vlprep as a bare namespace package: ``vlprep/__init__`` pulls in torch
# (seconds of start-up) and the decoders do not need it.
_BOOT = """
import json, sys, types
sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]
package = types.ModuleType("vlprep")
package.__path__ = json.loads(sys.argv[2])
sys.modules["vlprep"] = package
from vlprep.decode.video._isolated import _child_main
_child_main()
"""
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class IsolatedReader(ReaderBase):
    """A :class:`VideoReader` whose decoder runs in a killable, memory-capped child.

    Same metadata and frames as the in-process reader of the same backend (the child
    runs that reader). One ``frames`` call at a time; a ``frames`` iterator closed before
    its end stops the child, and the reader cannot be used afterwards.
    """

    metadata: VideoMetadata

    def __init__(self, opened: OpenedSource, options: VideoOptions, backend: BackendName):
        self._options = options
        self._timeout = options.isolate_timeout
        path = opened.path  # a checked local file: the child opens it itself, no copy
        data = b""
        if path is None:
            opened.file.seek(0)
            data = opened.file.read()
        opened.close()
        child_options = dataclasses.replace(options, isolate=False, backend=backend)
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(sys.path), json.dumps(_package_path())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # killed as a group, never by a terminal's signals
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in, self._out = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        deadline = _Deadline(self._timeout)
        try:
            self._send(
                {
                    "options": _options_dict(child_options),
                    "path": path,
                    "size": len(data),
                    "memory": options.isolate_memory,
                },
                deadline,
            )
            self._write(data, deadline)
            reply = self._receive(deadline)
            self.metadata = _metadata(reply["metadata"])
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ VideoReader API

    def frames(
        self, indices: Sequence[int], size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        """Yield ``uint8`` ``(H, W, 3)`` RGB frames decoded by the child.

        ``size`` and keyframe mode (``VideoOptions.seek``) as in the child's backend; the
        plan is checked here too, so a bad one fails before anything is sent.
        """
        wanted = check_indices(indices, self.metadata.total_frames)
        scaled = check_output_size(size, self.metadata.backend)
        if self._options.seek == "keyframe":
            check_keyframe_plan(wanted, self.metadata)
        return self._frames(wanted, scaled)

    def _frames(self, wanted: list[int], size: tuple[int, int] | None) -> Iterator[np.ndarray]:
        deadline = _Deadline(self._timeout)
        finished = False
        try:
            self._send({"frames": wanted, "size": size}, deadline)
            for _ in wanted:
                shape = self._receive(deadline)["frame"]
                h, w, c = (int(v) for v in shape)
                buffer = bytearray(h * w * c)
                self._read_into(memoryview(buffer), deadline)
                yield np.frombuffer(buffer, dtype=np.uint8).reshape(h, w, c)
            self._receive(deadline)  # {"done": true}
            finished = True
        finally:
            if not finished:
                self._drop(kill=True)

    def close(self) -> None:
        """Stop the child (ask, then kill) and release the pipes."""
        self._drop(kill=False)

    def _drop(self, *, kill: bool) -> None:
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

    def __del__(self) -> None:
        if getattr(self, "_proc", None) is not None:
            self.close()

    # ------------------------------------------------------------------ transport

    def _alive(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise DecodeError("the isolated video reader is closed (open the video again)")
        return self._proc

    def _send(self, message: dict[str, Any], deadline: _Deadline) -> None:
        body = json.dumps(message).encode()
        self._write(_LEN.pack(len(body)) + body, deadline)

    def _write(self, data: bytes, deadline: _Deadline) -> None:
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

    def _receive(self, deadline: _Deadline) -> dict[str, Any]:
        head = bytearray(_LEN.size)
        self._read_into(memoryview(head), deadline)
        (size,) = _LEN.unpack(head)
        if size > _MAX_CONTROL:
            self._drop(kill=True)
            raise DecodeError("the isolated video decoder sent a malformed reply")
        body = bytearray(size)
        self._read_into(memoryview(body), deadline)
        message: dict[str, Any] = json.loads(body)
        if "error" in message:
            name, text = message["error"]
            cls = getattr(errors, str(name), None)
            if not (isinstance(cls, type) and issubclass(cls, VlprepError)):
                cls = DecodeError
            raise cls(str(text))
        return message

    def _read_into(self, view: memoryview, deadline: _Deadline) -> None:
        while view:
            self._wait(self._out, write=False, deadline=deadline)
            try:
                got = os.readv(self._out, [view[:_CHUNK]])
            except BlockingIOError:
                continue
            if got == 0:
                raise self._died()
            view = view[got:]

    def _wait(self, fd: int, *, write: bool, deadline: _Deadline) -> None:
        self._alive()
        left = deadline.left()
        if left > 0:
            reads, writes = ([], [fd]) if write else ([fd], [])
            ready = select.select(reads, writes, [], left)
            if ready[0] or ready[1]:
                return
        self._drop(kill=True)
        raise ResourceLimitError(
            f"video decoding took longer than isolate_timeout={deadline.seconds:g} s; "
            "the decoder process was killed (raise VideoOptions.isolate_timeout if intended)"
        )

    def _died(self) -> VlprepError:
        proc = self._alive()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2.0)
        self._drop(kill=True)
        code = proc.returncode
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            if sig in _CRASH_SIGNALS:
                return DecodeError(
                    f"the video decoder crashed ({sig.name}) on this input; "
                    "the file is malformed or hits a decoder bug"
                )
            return ResourceLimitError(
                f"the video decoder process was killed ({sig.name}), likely out of memory"
            )
        return DecodeError(f"the video decoder process exited unexpectedly (status {code})")


def _package_path() -> list[str]:
    # vlprep/decode/video/_isolated.py -> vlprep/, without importing the root (an import cycle)
    return [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _options_dict(options: VideoOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def _metadata(values: dict[str, Any]) -> VideoMetadata:
    times, keys = values.get("frame_times"), values.get("keyframes")
    values = {
        **values,
        "frame_times": None if times is None else tuple(times),
        "keyframes": None if keys is None else tuple(int(k) for k in keys),
    }
    return VideoMetadata(**values)


# ---------------------------------------------------------------------- the child side


def _child_read(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return bytes(data)


def _child_receive(stream: Any) -> dict[str, Any]:
    (size,) = _LEN.unpack(_child_read(stream, _LEN.size))
    message: dict[str, Any] = json.loads(_child_read(stream, size))
    return message


def _child_send(stream: Any, message: dict[str, Any], payload: bytes | None = None) -> None:
    body = json.dumps(message).encode()
    stream.write(_LEN.pack(len(body)) + body)
    if payload is not None:
        stream.write(payload)
    stream.flush()


def _limit_memory(extra: int) -> None:
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


def _error(exc: BaseException, memory: int) -> dict[str, Any]:
    if isinstance(exc, VlprepError):
        return {"error": [type(exc).__name__, str(exc)]}
    if isinstance(exc, MemoryError):
        return {
            "error": [
                "ResourceLimitError",
                f"the video decoder ran out of memory (isolate_memory={memory} bytes); "
                "raise VideoOptions.isolate_memory if the video is legitimate",
            ]
        }
    return {"error": ["DecodeError", f"the video decoder failed ({type(exc).__name__})"]}


def _child_main() -> None:  # pragma: no cover - runs in the child, exercised by tests
    import importlib

    from vlprep.decode.video import open_video, resolve_backend

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the reply pipe
    request = _child_receive(stdin)
    memory = int(request["memory"])
    data = _child_read(stdin, int(request["size"])) if request["path"] is None else b""
    try:
        options = VideoOptions(**request["options"])
        # Import the decoder before capping memory: the cap is for decoding, not imports.
        name = resolve_backend(options)
        importlib.import_module(f"vlprep.decode.video._{name}")
        _limit_memory(memory)
        reader = open_video(request["path"] or data, options)
    except BaseException as exc:
        _child_send(stdout, _error(exc, memory))
        return
    del data
    with reader:
        _child_send(stdout, {"metadata": dataclasses.asdict(reader.metadata)})
        while True:
            try:
                request = _child_receive(stdin)
            except EOFError:
                return
            wanted, size = request["frames"], request.get("size")
            try:
                for frame in reader.frames(wanted, None if size is None else tuple(size)):
                    array = np.ascontiguousarray(frame, dtype=np.uint8)
                    _child_send(stdout, {"frame": list(array.shape)}, array.tobytes())
                _child_send(stdout, {"done": True})
            except BaseException as exc:
                _child_send(stdout, _error(exc, memory))
                return


if __name__ == "__main__":  # pragma: no cover - python -m also works (imports torch)
    _child_main()
