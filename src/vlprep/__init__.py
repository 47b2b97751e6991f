"""vlprep: exact, bounded, safe input preparation for Qwen-VL models.

Drop-in for qwen-vl-utils: ``from vlprep import process_vision_info``.
"""

from __future__ import annotations

from vlprep import _inspect_alias
from vlprep._version import __version__
from vlprep.cache import MediaCache
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
from vlprep.estimates import MediaEstimate, inspect
from vlprep.image import fetch_image
from vlprep.inputs import build_inputs
from vlprep.limits import CallLimits
from vlprep.loader import Loader
from vlprep.messages import extract_vision_info, process_vision_info
from vlprep.plans import Plan, plan
from vlprep.positions import rope_index
from vlprep.presets import (
    QWEN2_5_VL,
    QWEN2_VL,
    QWEN3_VL,
    Preset,
    get_preset,
    preset_from_processor,
)
from vlprep.sampling import smart_nframes
from vlprep.sizing import (
    TokenEstimate,
    count_tokens,
    estimate_image,
    estimate_video,
    smart_resize,
)
from vlprep.sources import FetchPolicy
from vlprep.video import fetch_video

# `import vlprep.inspect` must not replace the function `inspect` with a module
_inspect_alias.install(__name__)

__all__ = [
    "BackendUnavailableError",
    "CallLimits",
    "DecodeError",
    "FetchError",
    "FetchPolicy",
    "FetchTimeoutError",
    "FetchTooLargeError",
    "ImageOptions",
    "InvalidInputError",
    "Loader",
    "MediaCache",
    "MediaEstimate",
    "Plan",
    "Preset",
    "QWEN2_5_VL",
    "QWEN2_VL",
    "QWEN3_VL",
    "ResourceLimitError",
    "SourceNotAllowedError",
    "SourceNotFoundError",
    "TokenEstimate",
    "UnsupportedFormatError",
    "VideoOptions",
    "VlprepError",
    "__version__",
    "build_inputs",
    "count_tokens",
    "estimate_image",
    "estimate_video",
    "extract_vision_info",
    "fetch_image",
    "fetch_video",
    "get_preset",
    "inspect",
    "plan",
    "preset_from_processor",
    "process_vision_info",
    "rope_index",
    "smart_nframes",
    "smart_resize",
]
