"""Shared fixtures: the real media folder and generated pictures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = REPO.parent / "shared" / "media"


def shared_media() -> Path:
    """``../shared/media`` beside the checkout; a missing folder is an error, not a skip."""
    if not (SHARED_MEDIA / "README.md").is_file():
        raise RuntimeError(
            f"shared test media not found at {SHARED_MEDIA}; the tests need ../shared/media"
        )
    return SHARED_MEDIA


IMAGES = sorted((shared_media() / "images").iterdir())
HOSTILE = sorted((shared_media() / "hostile").iterdir())


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic photo-like RGB picture: gradients, shapes and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 127 + 120 * np.sin(x / max(width, 1) * 6.3 + seed)
    g = 127 + 120 * np.cos(y / max(height, 1) * 4.1)
    b = 255 * ((x + y) / (width + height))
    arr = np.stack([r, g, b], axis=-1)
    arr += rng.normal(0, 12, size=arr.shape)
    arr[(x - width / 3) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 5) ** 2] = (
        250,
        30,
        40,
    )
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


@pytest.fixture
def media() -> Path:
    return shared_media()
