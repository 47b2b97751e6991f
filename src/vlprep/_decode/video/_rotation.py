"""Display-matrix handling: how stored frames are turned for display, as FFmpeg does it.

The logic mirrors the ``ffmpeg`` command-line tool's autorotate (``fftools``
``get_rotation`` and the transpose/hflip/vflip choice), so a frame comes out as
``ffmpeg -i in.mp4 out.png`` would write it.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["IDENTITY", "Display", "display_from_matrix"]

logger = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], np.ndarray]


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _clock(a: np.ndarray) -> np.ndarray:
    return np.rot90(a, k=-1)


def _cclock(a: np.ndarray) -> np.ndarray:
    return np.rot90(a, k=1)


def _cclock_flip(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, 0, 1)


def _clock_flip(a: np.ndarray) -> np.ndarray:
    return np.rot90(a, k=-1)[::-1]


def _hflip(a: np.ndarray) -> np.ndarray:
    return a[:, ::-1]


def _vflip(a: np.ndarray) -> np.ndarray:
    return a[::-1]


def _rot180(a: np.ndarray) -> np.ndarray:
    return a[::-1, ::-1]


@dataclass(frozen=True, slots=True)
class Display:
    """How to show stored frames.

    Attributes:
        rotation: clockwise degrees (0, 90, 180, 270) applied for display.
        transform: maps a stored ``(H, W, C)`` array to the displayed one (a view).
        swaps: ``True`` when the displayed frame is the stored one transposed (W x H).
    """

    rotation: int
    transform: Transform
    swaps: bool


IDENTITY = Display(0, _identity, swaps=False)


def display_from_matrix(raw: bytes | None) -> Display:
    """Interpret a 36-byte ``AV_FRAME_DATA_DISPLAYMATRIX`` (nine native int32).

    Right-angle rotations and mirror flips are supported; other angles are ignored
    (logged), as are malformed matrices.
    """
    if raw is None or len(raw) != 36:
        return IDENTITY
    m = struct.unpack("=9i", raw)
    a, b, c, d = (v / 65536.0 for v in (m[0], m[1], m[3], m[4]))
    scale0, scale1 = math.hypot(a, c), math.hypot(b, d)
    if scale0 == 0.0 or scale1 == 0.0:
        logger.debug("degenerate display matrix ignored")
        return IDENTITY
    ccw = -math.degrees(math.atan2(b / scale1, a / scale0))  # av_display_rotation_get
    theta = -round(ccw)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1.0:
        return Display(90, _cclock_flip if m[3] > 0 else _clock, swaps=True)
    if abs(theta - 270) < 1.0:
        return Display(270, _clock_flip if m[3] < 0 else _cclock, swaps=True)
    if abs(theta - 180) < 1.0:
        h, v = m[0] < 0, m[4] < 0
        transform = _rot180 if h and v else _hflip if h else _vflip if v else _identity
        return Display(180, transform, swaps=False)
    if abs(theta) < 1.0 or abs(theta - 360) < 1.0:
        return Display(0, _vflip, swaps=False) if m[4] < 0 else IDENTITY
    logger.debug("display rotation of %s degrees is not a right angle; ignored", theta)
    return IDENTITY
