"""Deterministic synthetic benchmark clips: H.264 (libx264) MP4s with motion, gradients, noise.

Each frame is a window panning across a large smooth colour field with fixed grain (so the
texture moves with the camera), a few solid sprites moving on their own paths, and fresh
low-amplitude temporal noise (the two low bits flipped from a bank of noise planes). That
keeps the encoder busy with real motion vectors and residuals, so files land near the size
of real footage at the same settings. Same spec, same bytes (x264 is deterministic).

Encoding: PyAV + libx264, ``preset veryfast``, CRF 23, no B-frames, a keyframe every 60
frames exactly (no scene-cut keyframes), yuv420p, MP4.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

__all__ = ["CLIPS", "ClipSpec", "clip_frames", "ensure_clips", "write_clip"]

GOP = 60
ENCODER_OPTIONS = {
    "preset": "veryfast",
    "crf": "23",
    "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0",
}
VERSION = 1  # bump when the generator changes, so cached clips are rebuilt


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """One generated clip: key, file name, size, rate and duration."""

    key: str
    label: str
    width: int
    height: int
    fps: int
    seconds: int

    @property
    def frames(self) -> int:
        return self.fps * self.seconds

    @property
    def name(self) -> str:
        return f"v{VERSION}_{self.width}x{self.height}_{self.fps}fps_{self.seconds}s.mp4"


CLIPS: tuple[ClipSpec, ...] = (
    ClipSpec("a", "720p30, 30 s", 1280, 720, 30, 30),
    ClipSpec("b", "360p30, 120 s", 640, 360, 30, 120),
    ClipSpec("c", "1080p60, 10 s", 1920, 1080, 60, 10),
)


def _canvas(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """``(height, width, 3)`` uint8 smooth colour field with fixed grain (sigma 5)."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1.0, 4.0), rng.uniform(1.0, 4.0), rng.uniform(0, 6.28)
        wave = np.sin(2 * np.pi * (fx * xs + fy * ys) + phase)
        ripple = np.sin(2 * np.pi * (7 * fx * xs * ys + phase))
        channels.append(127.5 + 80.0 * wave + 20.0 * ripple)
    field = np.stack(channels, axis=-1)
    field += rng.normal(0.0, 5.0, size=field.shape).astype(np.float32)
    return np.clip(field, 0, 255).astype(np.uint8)


def _sprites(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """Per sprite: x0, y0, vx, vy (pixels/frame), size, r, g, b."""
    count = 6
    side = min(spec.width, spec.height)
    out = np.empty((count, 8), dtype=np.float64)
    out[:, 0] = rng.uniform(0, spec.width, count)
    out[:, 1] = rng.uniform(0, spec.height, count)
    out[:, 2:4] = rng.uniform(-1.0, 1.0, (count, 2)) * side / 90.0 * 30.0 / spec.fps
    out[:, 4] = rng.uniform(side / 16, side / 5, count)
    out[:, 5:8] = rng.integers(0, 256, (count, 3))
    return out


def _bounce(position: float, limit: float) -> int:
    """Reflect a free-running coordinate into ``[0, limit]``."""
    period = 2 * limit
    p = position % period
    return int(p if p <= limit else period - p)


def clip_frames(spec: ClipSpec, seed: int = 0) -> Iterator[np.ndarray]:
    """The clip's RGB frames, ``(height, width, 3)`` uint8, one array reused per frame."""
    rng = np.random.default_rng(seed)
    pad_x, pad_y = spec.width // 3, spec.height // 3
    canvas = _canvas(spec.width + pad_x, spec.height + pad_y, rng)
    sprites = _sprites(spec, rng)
    noise = rng.integers(0, 4, size=(7, spec.height, spec.width, 3), dtype=np.uint8)
    frame = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
    for t in range(spec.frames):
        seconds = t / spec.fps
        ox = _bounce(seconds * pad_x / 7.0, pad_x)
        oy = _bounce(seconds * pad_y / 11.0, pad_y)
        np.copyto(frame, canvas[oy : oy + spec.height, ox : ox + spec.width])
        for x0, y0, vx, vy, size, r, g, b in sprites:
            x = _bounce(x0 + vx * t, spec.width - size)
            y = _bounce(y0 + vy * t, spec.height - size)
            frame[y : y + int(size), x : x + int(size)] = (r, g, b)
        np.bitwise_xor(frame, noise[t % len(noise)], out=frame)
        yield frame


def write_clip(path: Path, spec: ClipSpec, seed: int = 0) -> None:
    """Encode ``spec`` to ``path`` (written to a temporary name, then renamed)."""
    tmp = path.with_suffix(f".tmp{os.getpid()}.mp4")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=spec.fps, options=dict(ENCODER_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.codec_context.gop_size = GOP
        for array in clip_frames(spec, seed):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    tmp.replace(path)


def ensure_clips(directory: Path, specs: tuple[ClipSpec, ...] = CLIPS) -> dict[str, Path]:
    """Generate the clips missing from ``directory``; return ``{key: path}``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for spec in specs:
        path = directory / spec.name
        if not path.exists():
            write_clip(path, spec)
        paths[spec.key] = path
    return paths
