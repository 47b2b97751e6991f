"""``MediaCache``: processed media keyed by content hash and processing parameters.

For chats that resend the same image or video every turn: the bytes are still fetched and
hashed on every call (the only way to know the content is the same), but a hit skips the
decode and the resize. Keys are built by :mod:`vlprep._image` and :mod:`vlprep._video` from
a SHA-256 of the content plus every parameter that changes the output; this module holds
the store (bounded in bytes, least recently used evicted first, thread safe) and the
content digests.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image

from vlprep._decode.image import orientation_of
from vlprep._errors import InvalidInputError

__all__ = ["CacheStats", "MediaCache", "digest_arrays", "digest_bytes", "digest_image"]

T = TypeVar("T")

DEFAULT_MAX_BYTES = 1 << 30
"""Default bound of a :class:`MediaCache`: 1 GiB of stored pixels."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a :class:`MediaCache`'s counters.

    Attributes:
        hits: lookups answered from a stored entry (or from a load of the same key that
            another thread was running).
        misses: lookups that ran the load (decode and resize).
        evictions: entries dropped to keep ``current_bytes <= max_bytes``.
        current_bytes: bytes held by the stored entries (pixel buffers plus small
            metadata; Python object overhead, a few hundred bytes an entry, not counted).
        entries: entries stored.
        max_bytes: the bound.
    """

    hits: int
    misses: int
    evictions: int
    current_bytes: int
    entries: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class _Entry:
    value: object
    nbytes: int


class _Flight:
    """One load of a key in progress: later lookups of the key wait for its result."""

    __slots__ = ("done", "packed")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.packed: object | None = None  # set when the load succeeded


class MediaCache:
    """Processed (decoded and resized) images and videos, bounded in bytes, LRU, thread safe.

    Pass one to :func:`vlprep.fetch_image`, :func:`vlprep.fetch_video`,
    :func:`vlprep.process_vision_info` or :func:`vlprep.build_inputs` with ``cache=``; share
    it across the turns of a chat (or across chats) in one process.

    What is keyed: a SHA-256 of the content (the fetched bytes of a path, ``file://``, URL
    or ``data:`` URI; the pixels, mode, size, palette, ``info`` and EXIF orientation of a
    ``PIL.Image``; the pixels, dtype and shape of an array or tensor) plus every processing
    parameter: the element's sizing keys, the patch factor, the default pixel bounds, the
    whole :class:`~vlprep.ImageOptions` / :class:`~vlprep.VideoOptions` and, for videos, the
    effective backend. The same bytes with other parameters, or other bytes behind the same
    URL, miss.

    What is stored: images as their resized RGB pixels (uint8) and ``info``; videos as their
    resized frames in uint8 (the float32 frames hold integer levels; negative zeros are
    recorded so the float32 rebuilt on a hit is bit-identical), metadata and sample fps.
    Every hit returns a fresh object: callers may modify it freely.

    Memory: at most ``max_bytes`` of stored entries; the least recently used entries are
    evicted first, and an entry larger than ``max_bytes`` is returned but not stored.

    Thread safety: every method may be called from any thread. Concurrent lookups of one
    key run one load; the others wait for it and are counted as hits (when the load
    fails, each of them then loads for itself and sees its own error).

    Args:
        max_bytes: the bound, in bytes (default 1 GiB). A 12 MP photo kept at full size
            takes 36 MB; a 60-frame 1008x560 clip 102 MB.

    Raises:
        InvalidInputError: ``max_bytes`` is not an int >= 1.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidInputError(
                f"MediaCache max_bytes must be an int >= 1 (bytes), got {max_bytes!r:.32}"
            )
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    @property
    def max_bytes(self) -> int:
        """The bound on stored bytes."""
        return self._max_bytes

    @property
    def stats(self) -> CacheStats:
        """Counters and current size, read atomically."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                current_bytes=self._bytes,
                entries=len(self._entries),
                max_bytes=self._max_bytes,
            )

    def clear(self) -> None:
        """Drop every entry and reset the counters (loads in progress still finish)."""
        with self._lock:
            self._entries.clear()
            self._bytes = self._hits = self._misses = self._evictions = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"MediaCache(max_bytes={s.max_bytes}, entries={s.entries}, "
            f"current_bytes={s.current_bytes}, hits={s.hits}, misses={s.misses})"
        )

    def get_or_load(
        self,
        key: Hashable,
        load: Callable[[], T],
        pack: Callable[[T], tuple[object, int]],
        unpack: Callable[[object], T],
    ) -> T:
        """The value for ``key``: rebuilt from the store on a hit, else loaded and stored.

        The building block of the ``cache=`` arguments; a custom loader may use it too.

        Args:
            key: hashable; equal keys must mean equal values.
            load: computes the value on a miss (its exceptions propagate; nothing stored).
            pack: value -> ``(stored, nbytes)``; ``stored`` must not share mutable state
                with the value returned to the caller.
            unpack: stored -> a fresh value for each hit.

        Returns:
            The loaded value on a miss (the caller's own object), else ``unpack(stored)``.
        """
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self._hits += 1
                    stored = entry.value
                    break
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
                    self._misses += 1
            if leader:
                return self._lead(key, flight, load, pack)
            flight.done.wait()
            if flight.packed is not None:
                with self._lock:
                    self._hits += 1
                stored = flight.packed
                break
            # The load failed: try again (as the leader, or behind a newer one).
        return unpack(stored)

    def _lead(
        self,
        key: Hashable,
        flight: _Flight,
        load: Callable[[], T],
        pack: Callable[[T], tuple[object, int]],
    ) -> T:
        try:
            value = load()
            stored, nbytes = pack(value)
            flight.packed = stored
            self._store(key, stored, nbytes)
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return value

    def _store(self, key: Hashable, stored: object, nbytes: int) -> None:
        if nbytes > self._max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:  # stored meanwhile by a load that started after a clear()
                self._bytes -= old.nbytes
            self._entries[key] = _Entry(stored, nbytes)
            self._bytes += nbytes
            while self._bytes > self._max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
                self._evictions += 1


def digest_bytes(data: bytes) -> bytes:
    """SHA-256 of encoded media bytes (32 bytes)."""
    return hashlib.sha256(data).digest()


def digest_image(image: Image.Image, exif_transpose: bool) -> bytes:
    """SHA-256 of what decides an in-memory image's RGB conversion and result.

    Mode, size, pixel bytes, palette (``P``/``PA``), the ``info`` dict (``transparency``,
    EXIF, ...: the resized image carries it) and, when ``exif_transpose``, the EXIF
    orientation. Loads a lazy image.
    """
    pixels = image.tobytes()
    h = hashlib.sha256()
    orientation = orientation_of(image) if exif_transpose else 1
    info = sorted((str(k), repr(v)) for k, v in image.info.items())
    h.update(repr((image.mode, image.size, orientation, info)).encode())
    palette = image.palette
    if palette is not None and image.mode in ("P", "PA"):
        h.update(str(palette.mode).encode())
        h.update(bytes(image.getpalette(palette.mode) or []))
    h.update(pixels)
    return h.digest()


def digest_arrays(arrays: Iterable[np.ndarray]) -> bytes:
    """SHA-256 of arrays in order: each one's dtype, shape and C-order bytes."""
    h = hashlib.sha256()
    for arr in arrays:
        h.update(repr((arr.dtype.str, arr.shape)).encode())
        h.update(np.ascontiguousarray(arr).data)
    return h.digest()
