"""Shared fixtures: the bundled real media (``tests/media``) and generated pictures."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / "tests" / "media"


_FUZZ_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# tests/test_fuzz_messages.py: a reproducible few hundred examples in the suite ...
settings.register_profile(
    "fuzz-messages",
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_FUZZ_HEALTH,
)
# ... and VLPREP_FUZZ_EXAMPLES of them from a random seed (make fuzz-messages), failures
# kept in .hypothesis/ so the next run replays them first.
settings.register_profile(
    "fuzz-messages-scale",
    max_examples=int(os.environ.get("VLPREP_FUZZ_EXAMPLES") or 30_000),
    deadline=None,
    print_blob=True,
    suppress_health_check=_FUZZ_HEALTH,
)
FUZZ_MESSAGES_PROFILE = (
    "fuzz-messages-scale" if os.environ.get("VLPREP_FUZZ_EXAMPLES") else "fuzz-messages"
)


def media_dir() -> Path:
    """``tests/media`` in this repository (origin and licences in its README).

    A missing folder is an error, not a skip: the tests read nothing outside the repository.
    """
    if not (MEDIA / "README.md").is_file():
        raise RuntimeError(f"bundled test media not found at {MEDIA}; is the checkout complete?")
    return MEDIA


IMAGES = sorted(p for p in (media_dir() / "images").iterdir() if p.name != "README.md")
HOSTILE = sorted((media_dir() / "hostile").iterdir())


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
    return media_dir()


QWEN_VIDEO_READER = "decord"
"""The video reader every oracle call of qwen-vl-utils uses.

qwen-vl-utils picks its reader from what is installed (torchcodec, then decord, then
torchvision, whose ``io.read_video`` is gone in torchvision 0.29), so a new install could
silently change the reference. decord is what the conformance tables were measured with.
"""


@pytest.fixture(scope="session", autouse=True)
def _qwen_video_reader() -> Iterator[None]:
    from qwen_vl_utils import vision_process

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vision_process, "get_video_reader_backend", lambda: QWEN_VIDEO_READER)
        yield


@pytest.fixture(params=["openat2", "walk"])
def local_opener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a ``local_root`` test with openat2 (when the kernel has it) and with the walk.

    ``walk`` forces the component-by-component fallback that kernels without openat2
    (before 5.6, or under a seccomp filter that refuses it) use.
    """
    from vlprep._sources import _local

    if request.param == "walk":
        monkeypatch.setattr(_local, "_openat2_works", lambda root_fd: False)
    return str(request.param)
