"""vlprep: exact, bounded, safe input preparation for Qwen-VL models.

Drop-in for qwen-vl-utils: ``from vlprep import process_vision_info``.
"""

from __future__ import annotations

from vlprep import _inspect_alias
from vlprep._cache import CacheStats, MediaCache
from vlprep._decode.image import ImageHeader, ImageOptions, probe_header
from vlprep._decode.video import VideoMetadata, VideoOptions
from vlprep._errors import (
    BackendUnavailableError,
    BudgetError,
    DecodeError,
    FetchError,
    FetchTimeoutError,
    FetchTooLargeError,
    GenerationError,
    GroundingParseError,
    InvalidInputError,
    QueueFullError,
    ResourceLimitError,
    SourceNotAllowedError,
    SourceNotFoundError,
    UnsupportedFormatError,
    VlprepError,
)
from vlprep._estimates import MediaEstimate, element_for, inspect
from vlprep._fit import FitResult, ItemFit, fit
from vlprep._image import fetch_image, fetch_image_for, load_image
from vlprep._inputs import build_inputs
from vlprep._limits import CallLimits
from vlprep._loader import Loader
from vlprep._messages import extract_vision_info, process_vision_info
from vlprep._plans import Plan, plan
from vlprep._positions import rope_index
from vlprep._presets import (
    FAMILIES,
    QWEN2_5_VL,
    QWEN2_VL,
    QWEN3_VL,
    QWEN_VL,
    Family,
    Preset,
    get_preset,
    preset_from_processor,
)
from vlprep._sampling import smart_nframes
from vlprep._sizing import (
    TokenEstimate,
    count_tokens,
    estimate_image,
    estimate_video,
    smart_resize,
    tokens_for_size,
)
from vlprep._sources import FetchPolicy
from vlprep._tensors import patchify_images, patchify_videos
from vlprep._version import __version__
from vlprep._video import LoadedVideo, fetch_video, load_clip

# `import vlprep.inspect` must not replace the function `inspect` with a module
_inspect_alias.install(__name__)

__all__ = [
    "BackendUnavailableError",
    "BudgetError",
    "CacheStats",
    "CallLimits",
    "DecodeError",
    "FAMILIES",
    "Family",
    "FetchError",
    "FetchPolicy",
    "FetchTimeoutError",
    "FetchTooLargeError",
    "FitResult",
    "GenerationError",
    "GroundingParseError",
    "ImageHeader",
    "ImageOptions",
    "InvalidInputError",
    "ItemFit",
    "LoadedVideo",
    "Loader",
    "MediaCache",
    "MediaEstimate",
    "Plan",
    "Preset",
    "QWEN2_5_VL",
    "QWEN2_VL",
    "QWEN3_VL",
    "QWEN_VL",
    "QueueFullError",
    "ResourceLimitError",
    "SourceNotAllowedError",
    "SourceNotFoundError",
    "TokenEstimate",
    "UnsupportedFormatError",
    "VideoMetadata",
    "VideoOptions",
    "VlprepError",
    "__version__",
    "build_inputs",
    "count_tokens",
    "element_for",
    "estimate_image",
    "estimate_video",
    "extract_vision_info",
    "fetch_image",
    "fetch_image_for",
    "fetch_video",
    "fit",
    "get_preset",
    "inspect",
    "load_clip",
    "load_image",
    "patchify_images",
    "patchify_videos",
    "plan",
    "preset_from_processor",
    "probe_header",
    "process_vision_info",
    "rope_index",
    "smart_nframes",
    "smart_resize",
    "tokens_for_size",
]
