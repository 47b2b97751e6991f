"""Generated test clips (written with PyAV at test time)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_clip(
    path: Path,
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    frames: int = 60,
    gop: int = 12,
    codec: str = "libx264",
    seed: int = 0,
) -> Path:
    """A clip whose frame ``i`` is a moving gradient plus a gray band with level ``i * 7 % 256``.

    The band makes the decoded index checkable; the gradient and noise give the encoder
    real content.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"bf": "0", "preset": "ultrafast"}
        for i in range(frames):
            r = (x * 255 // max(width - 1, 1) + i * 3) % 256
            g = (y * 255 // max(height - 1, 1)).astype(np.int64)
            b = (x + y + i * 5) % 256
            img = np.stack([r, g, b], axis=-1).astype(np.int64)
            img += rng.integers(-6, 7, size=img.shape)
            img[: height // 4] = (i * 7) % 256
            frame = av.VideoFrame.from_ndarray(
                np.clip(img, 0, 255).astype(np.uint8), format="rgb24"
            )
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def band_level(frame: np.ndarray) -> int:
    """The gray level of the top band of a decoded frame (H, W, 3) or (3, H, W)."""
    hwc = frame if frame.shape[-1] == 3 else frame.transpose(1, 2, 0)
    band = hwc[: hwc.shape[0] // 5]
    return round(float(band.mean()))
