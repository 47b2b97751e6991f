"""Decode a video in a child process with a memory limit and a wall-clock kill.

``VideoOptions(isolate=True)`` makes :func:`vlprep._decode.video.open_video` return an
:class:`IsolatedReader`. The parent never hands the container to FFmpeg: it starts a
child Python (``_BOOT``, which skips ``vlprep/__init__`` and so torch), sends the
options and the bytes over a pipe (a local file that vlprep opened goes as its descriptor,
inherited by the child, so the child reads the file that was checked), and reads back
the metadata and then raw RGB frames. The child caps its address space with
``RLIMIT_AS`` (its size after imports plus ``isolate_memory``) and is killed when a
request outlives ``isolate_timeout``. What goes wrong in the child becomes a typed error:

* an error the child raised on purpose -> the same ``VlprepError`` class and message;
* ``MemoryError`` in the child -> :class:`ResourceLimitError`;
* the child dies from a signal (SIGSEGV in a decoder, PyAV#2344) -> :class:`DecodeError`;
* a request past ``isolate_timeout`` -> the child is killed, :class:`ResourceLimitError`.

Wire format (both directions): a 4-byte big-endian length and a JSON object; a frame
message ``{"frame": [h, w, 3]}`` is followed by ``h * w * 3`` raw bytes. The process,
pipes, deadline and error mapping are :mod:`vlprep._decode._child`'s, shared with the
isolated image decode.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from vlprep._decode._child import (
    ChildProcess,
    Deadline,
    child_read,
    child_receive,
    child_send,
    error_reply,
    limit_memory,
)
from vlprep._decode.video._base import ReaderBase
from vlprep._decode.video._source import OpenedSource
from vlprep._decode.video._types import (
    BackendName,
    VideoMetadata,
    VideoOptions,
    check_indices,
    check_keyframe_plan,
    check_output_size,
)

__all__ = ["IsolatedReader"]


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
        # A file vlprep opened (and checked) itself: the child inherits its descriptor and
        # reads it in place, no copy; it never opens a path (which could have changed).
        fd = opened.file.fileno() if opened.local else None
        data = b""
        if fd is None:
            opened.file.seek(0)
            data = opened.file.read()
        child_options = dataclasses.replace(options, isolate=False, backend=backend)
        try:
            self._child = ChildProcess(
                __name__,
                "video",
                "VideoOptions.isolate_timeout",
                pass_fds=() if fd is None else (fd,),
            )
        finally:
            opened.close()
        deadline = Deadline(self._timeout)
        try:
            self._child.send(
                {
                    "options": _options_dict(child_options),
                    "fd": fd,
                    "size": len(data),
                    "memory": options.isolate_memory,
                },
                deadline,
                data,
            )
            reply = self._child.receive(deadline)
            self.metadata = _metadata(reply["metadata"])
        except BaseException:
            self.close()
            raise

    @property
    def _proc(self) -> Any:
        """The child's ``subprocess.Popen`` (``None`` once closed)."""
        return self._child.proc

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
        deadline = Deadline(self._timeout)
        finished = False
        try:
            self._child.send({"frames": wanted, "size": size}, deadline)
            for _ in wanted:
                shape = self._child.receive(deadline)["frame"]
                h, w, c = (int(v) for v in shape)
                buffer = bytearray(h * w * c)
                self._child.read_into(memoryview(buffer), deadline)
                yield np.frombuffer(buffer, dtype=np.uint8).reshape(h, w, c)
            self._child.receive(deadline)  # {"done": true}
            finished = True
        finally:
            if not finished:
                self._child.close(kill=True)

    def close(self) -> None:
        """Stop the child (ask, then kill) and release the pipes."""
        child = getattr(self, "_child", None)
        if child is not None:
            child.close()

    def __del__(self) -> None:
        if getattr(self, "_child", None) is not None and self._child.proc is not None:
            self.close()


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


def _error(exc: BaseException, memory: int) -> dict[str, Any]:
    limit = f"isolate_memory={memory} bytes"
    return error_reply(exc, "video", limit, "VideoOptions.isolate_memory")


def _child_main() -> None:  # pragma: no cover - runs in the child, exercised by tests
    import importlib

    from vlprep._decode.video._backends import open_in_process, resolve_backend
    from vlprep._decode.video._source import open_source

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the reply pipe
    request = child_receive(stdin)
    memory = int(request["memory"])
    fd = request["fd"]
    data = child_read(stdin, int(request["size"])) if fd is None else b""
    try:
        options = VideoOptions(**request["options"])
        # Import the decoder before capping memory: the cap is for decoding, not imports.
        name = resolve_backend(options)
        importlib.import_module(f"vlprep._decode.video._{name}")
        limit_memory(memory)
        opened = open_source(data if fd is None else os.fdopen(fd, "rb"))
        reader = open_in_process(name, opened, options)
    except BaseException as exc:
        child_send(stdout, _error(exc, memory))
        return
    del data
    with reader:
        child_send(stdout, {"metadata": dataclasses.asdict(reader.metadata)})
        while True:
            try:
                request = child_receive(stdin)
            except EOFError:
                return
            wanted, size = request["frames"], request.get("size")
            try:
                for frame in reader.frames(wanted, None if size is None else tuple(size)):
                    array = np.ascontiguousarray(frame, dtype=np.uint8)
                    child_send(stdout, {"frame": list(array.shape)}, array.tobytes())
                child_send(stdout, {"done": True})
            except BaseException as exc:
                child_send(stdout, _error(exc, memory))
                return


if __name__ == "__main__":  # pragma: no cover - python -m also works (imports torch)
    _child_main()
