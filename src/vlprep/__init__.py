"""vlprep: exact, bounded, safe input preparation for Qwen-VL models.

Drop-in for qwen-vl-utils: ``from vlprep import process_vision_info``.
"""

from __future__ import annotations

from vlprep.decode.image import ImageOptions
from vlprep.decode.video import VideoOptions
from vlprep.errors import (
    BackendUnavailableError,
    DecodeError,
    FetchError,
    FetchTimeoutError,
    FetchTooLargeError,
    InvalidInputError,
    ResourceLimitError,
    SourceNotAllowedError,
    SourceNotFoundError,
    UnsupportedFormatError,
    VlprepError,
)
from vlprep.image import fetch_image
from vlprep.messages import extract_vision_info, process_vision_info
from vlprep.presets import QWEN2_5_VL, QWEN2_VL, QWEN3_VL, Preset, get_preset
from vlprep.sampling import smart_nframes
from vlprep.sizing import smart_resize
from vlprep.sources import FetchPolicy
from vlprep.video import fetch_video

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "DecodeError",
    "FetchError",
    "FetchPolicy",
    "FetchTimeoutError",
    "FetchTooLargeError",
    "ImageOptions",
    "InvalidInputError",
    "Preset",
    "QWEN2_5_VL",
    "QWEN2_VL",
    "QWEN3_VL",
    "ResourceLimitError",
    "SourceNotAllowedError",
    "SourceNotFoundError",
    "UnsupportedFormatError",
    "VideoOptions",
    "VlprepError",
    "__version__",
    "extract_vision_info",
    "fetch_image",
    "fetch_video",
    "get_preset",
    "process_vision_info",
    "smart_nframes",
    "smart_resize",
]
