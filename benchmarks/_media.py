"""Deterministic synthetic benchmark media: photo-like JPEGs and a screenshot-like long PNG.

Photos are smooth colour gradients plus mild sensor-like noise and a few filled shapes, so
JPEG files land near the size of real camera pictures; the long PNG is a flat page with
coloured bars and "text" strokes, like a scrolling screenshot. Same seed, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["MEDIA", "MediaSpec", "make_photo", "make_screenshot", "write_media"]


@dataclass(frozen=True, slots=True)
class MediaSpec:
    """One generated input: file name, pixel size and encoding."""

    name: str
    width: int
    height: int
    kind: str  # "photo" (JPEG) or "screenshot" (PNG)
    quality: int = 90


MEDIA: tuple[MediaSpec, ...] = (
    MediaSpec("photo_12mp.jpg", 4032, 3024, "photo"),
    MediaSpec("photo_1080p.jpg", 1920, 1080, "photo"),
    MediaSpec("photo_vga.jpg", 640, 480, "photo"),
    MediaSpec("long_screenshot.png", 512, 8192, "screenshot"),
)


def _gradient(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """``(H, W, 3)`` float32 smooth colour field in 0..255."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.28)
        wave = np.sin(2 * np.pi * (fx * xs + fy * ys) + phase)
        channels.append(127.5 + 90.0 * wave * (0.6 + 0.4 * ys))
    return np.stack(channels, axis=-1).astype(np.float32)


def _draw_shapes(image: Image.Image, rng: np.random.Generator, count: int) -> None:
    draw = ImageDraw.Draw(image)
    w, h = image.size
    for _ in range(count):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(max(4, min(w, h) // 40), max(8, min(w, h) // 6)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x0 + size, y0 + size), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + size, y0 + size // 2), fill=colour)


def make_photo(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Photo-like RGB image: gradient + shapes + Gaussian noise (sigma 6)."""
    base = Image.fromarray(np.clip(_gradient(width, height, rng), 0, 255).astype(np.uint8))
    _draw_shapes(base, rng, count=40)
    noise = rng.normal(0.0, 6.0, size=(height, width, 3)).astype(np.float32)
    pixels = np.asarray(base, dtype=np.float32) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_screenshot(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Screenshot-like RGB image: white page, coloured bars, dark text-like strokes."""
    image = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    y = 8
    while y < height - 24:
        if rng.random() < 0.15:
            colour = tuple(int(c) for c in rng.integers(60, 240, 3))
            draw.rectangle((0, y, width, y + 40), fill=colour)
            y += 48
            continue
        x = 12
        while x < width - 40:
            word = int(rng.integers(10, 60))
            shade = int(rng.integers(20, 90))
            draw.rectangle((x, y, x + word, y + 9), fill=(shade, shade, shade + 10))
            x += word + 7
        y += 18
    _draw_shapes(image, rng, count=12)
    return image


def write_media(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Write every :data:`MEDIA` file into ``directory``; return ``{name: path}``."""
    rng = np.random.default_rng(seed)
    paths: dict[str, Path] = {}
    for spec in MEDIA:
        path = directory / spec.name
        if spec.kind == "photo":
            make_photo(spec.width, spec.height, rng).save(path, "JPEG", quality=spec.quality)
        else:
            make_screenshot(spec.width, spec.height, rng).save(path, "PNG")
        paths[spec.name] = path
    return paths
