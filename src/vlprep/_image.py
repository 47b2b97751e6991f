"""``fetch_image``: one image element -> a resized RGB ``PIL.Image`` (qwen-vl-utils exact)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vlprep._cache import MediaCache, digest_bytes, digest_image
from vlprep._decode.image import (
    ImageHeader,
    ImageOptions,
    decode_image,
    decode_image_for,
    open_image,
    orient_and_convert,
    probe_header,
    to_rgb,
)
from vlprep._errors import (
    DecodeError,
    InvalidInputError,
    UnsupportedFormatError,
    describe_source,
)
from vlprep._keywords import renamed
from vlprep._limits import CallBudget
from vlprep._planning import ImageSizing, image_size_for, image_sizing, image_target_size
from vlprep._presets import Preset
from vlprep._sizing import check_patch_size
from vlprep._sources import FetchPolicy, fetch
from vlprep._specs import ImageSpec, parse_image_element
from vlprep._stored import pack_image, unpack_image
from vlprep._tensors import resize_uint8

__all__ = [
    "HEADER_PREFIX",
    "PendingImage",
    "fetch_image",
    "fetch_image_for",
    "fetch_image_item",
    "image_content",
    "image_target_size",
    "load_image",
    "load_image_at",
    "open_pending",
    "read_header",
]

_DEFAULT_OPTIONS = ImageOptions()

HEADER_PREFIX = 64 * 1024
"""Bytes :func:`read_header` reads first; the whole file only when they fall short."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _array_to_pil(value: Any) -> Image.Image:
    module = type(value).__module__
    if module.startswith("torch"):
        if str(value.dtype) != "torch.uint8":
            raise InvalidInputError(f"image tensors must be uint8, got {value.dtype}")
        arr = value.detach().cpu().numpy()
        if arr.ndim == 3:
            if arr.shape[0] not in (1, 3, 4):
                raise InvalidInputError(
                    "image tensors must be CHW with 1, 3 or 4 channels, "
                    f"got shape {tuple(arr.shape)}"
                )
            arr = np.ascontiguousarray(arr.transpose(1, 2, 0))
    else:
        arr = np.asarray(value)
        if arr.dtype != np.uint8:
            raise InvalidInputError(f"image arrays must be uint8, got {arr.dtype}")
        if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):
            raise InvalidInputError(
                f"image arrays must be HWC with 1, 3 or 4 channels, got shape {arr.shape}"
            )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise InvalidInputError(f"image arrays must be HW or HWC, got shape {arr.shape}")
    return Image.fromarray(arr)


def _naming(exc: DecodeError, source: object) -> DecodeError:
    """``exc`` again (same class), its message naming the (redacted) source."""
    named = type(exc)(f"{exc} (source {describe_source(source)})")
    named.__notes__ = list(getattr(exc, "__notes__", []))
    return named


@dataclass(frozen=True, slots=True)
class PendingImage:
    """An image source opened as far as its size, its pixels not yet decoded.

    Attributes:
        pixels: ``width * height`` of the decoded image (from the header for encoded data).
        finish: decodes it: upright RGB ``PIL.Image``, as :func:`load_image` returns.
    """

    pixels: int
    finish: Callable[[], Image.Image]


def open_pending(
    source: object,
    *,
    policy: FetchPolicy | None = None,
    options: ImageOptions | None = None,
) -> PendingImage:
    """Fetch ``source`` and read its header; decode later with ``.finish()``.

    Lets a caller hold only the encoded bytes until it is ready for the full-size pixels
    (a frame list decodes its large frames one at a time). Same sources, rules and
    errors as :func:`load_image`, which is ``open_pending(...).finish()``.

    Raises:
        InvalidInputError, FetchError, DecodeError, ResourceLimitError: see the error tree.
    """
    options = options or _DEFAULT_OPTIONS
    if isinstance(source, Image.Image):
        image = source
        return PendingImage(
            image.width * image.height, lambda: orient_and_convert(image, options.exif_transpose)
        )
    if isinstance(source, (str, bytes, bytearray, memoryview)):
        data = fetch(source, policy, "image").data
        try:
            header = open_image(data, options)  # format and limits checked, nothing decoded
        except DecodeError as exc:
            raise _naming(exc, source) from exc.__cause__

        def finish() -> Image.Image:
            try:
                return decode_image(data, options)
            except DecodeError as exc:
                raise _naming(exc, source) from exc.__cause__

        return PendingImage(header.width * header.height, finish)
    if hasattr(source, "__array__") or type(source).__module__.startswith(("numpy", "torch")):
        array_image = _array_to_pil(source)
        return PendingImage(array_image.width * array_image.height, lambda: to_rgb(array_image))
    raise InvalidInputError(
        f"unsupported image source of type {type(source).__name__}: give a PIL image, path, "
        "URL, data URI, bytes, numpy HWC uint8 array or torch CHW uint8 tensor"
    )


def read_header(
    source: object,
    *,
    policy: FetchPolicy | None = None,
    options: ImageOptions | None = None,
    prefix: int | None = None,
) -> ImageHeader | Image.Image:
    """What an image's size is read from, without decoding encoded pixels.

    Encoded sources (paths, URLs, ``data:`` URIs, bytes) give their :class:`ImageHeader`;
    a ``PIL.Image`` is returned as given and an array or tensor as the ``PIL.Image`` it
    wraps. Pass the result to :func:`vlprep._planning.upright_size`.

    Args:
        prefix: read only the first ``prefix`` bytes of a path or URL (``HEADER_PREFIX``),
            the whole file when the header goes on past them. A PNG (with
            ``options.exif_transpose``) whose first bytes show no orientation is read to
            its ``IEND``: an ``eXIf`` chunk after the pixel data is what a decode applies.

    Raises:
        InvalidInputError, FetchError, DecodeError, UnsupportedFormatError,
        ResourceLimitError: as :func:`load_image` would, before its decode.
    """
    options = options or _DEFAULT_OPTIONS
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, str) and prefix is not None and source[:5].lower() != "data:":
        data = fetch(source, policy, "image", prefix=prefix).data
        if len(data) < prefix:
            return _probed(data, source, options)  # the whole file
        try:
            header = _probed(data, source, options)
        except UnsupportedFormatError:
            raise
        except DecodeError:  # the header goes on past the prefix: read the whole file
            header = None
        late_exif = options.exif_transpose and data.startswith(_PNG_SIGNATURE)
        if header is not None and not (late_exif and header.orientation == 1):
            return header
        return _probed(fetch(source, policy, "image").data, source, options)
    if isinstance(source, (str, bytes, bytearray, memoryview)):
        return _probed(fetch(source, policy, "image").data, source, options)
    if hasattr(source, "__array__") or type(source).__module__.startswith(("numpy", "torch")):
        return _array_to_pil(source)
    raise InvalidInputError(
        f"unsupported image source of type {type(source).__name__}: give a PIL image, path, "
        "URL, data URI, bytes, numpy HWC uint8 array or torch CHW uint8 tensor"
    )


def _probed(data: bytes, source: object, options: ImageOptions) -> ImageHeader:
    try:
        return probe_header(data, options)
    except DecodeError as exc:
        raise _naming(exc, source) from exc.__cause__


def load_image(
    source: object,
    *,
    policy: FetchPolicy | None = None,
    options: ImageOptions | None = None,
) -> Image.Image:
    """Any accepted image source -> upright RGB ``PIL.Image`` at its decoded size.

    Args:
        source: ``PIL.Image``, path, ``file://``, http(s) URL, ``data:image/...;base64,``,
            bytes, numpy uint8 HWC/HW array or torch uint8 CHW/HW tensor.
        policy: fetch rules for string sources (default :class:`FetchPolicy`).
        options: decode rules (formats, limits, EXIF).

    Raises:
        InvalidInputError, FetchError, DecodeError, ResourceLimitError: see the error tree.
    """
    return open_pending(source, policy=policy, options=options).finish()


def _resize(image: Image.Image, size: tuple[int, int], options: ImageOptions) -> Image.Image:
    height, width = size
    if (image.height, image.width) == size:
        return image
    if options.decode == "fast":
        return Image.fromarray(resize_uint8(image, height, width))
    return image.resize((width, height), Image.Resampling.BICUBIC)


def _load_sized(
    source: object,
    target_of: Callable[[int, int], tuple[int, int]],
    policy: FetchPolicy | None,
    options: ImageOptions | None,
) -> Image.Image:
    """Load ``source`` and resize it to ``target_of(upright height, width)``."""
    options = options or _DEFAULT_OPTIONS
    if options.decode == "fast" and isinstance(source, (str, bytes, bytearray, memoryview)):
        data = fetch(source, policy, "image").data
        try:
            image, target = decode_image_for(data, options, target_of)
        except DecodeError as exc:
            raise _naming(exc, source) from exc.__cause__
    else:
        image = load_image(source, policy=policy, options=options)
        target = target_of(image.height, image.width)
    if image is source and (image.height, image.width) == target:
        return image.copy()  # never hand the caller's own object back
    return _resize(image, target, options)


def fetch_image(
    ele: Mapping[str, Any],
    image_patch_size: int = 14,
    *,
    policy: FetchPolicy | None = None,
    image_options: ImageOptions | None = None,
    cache: MediaCache | None = None,
    options: ImageOptions | None = None,
) -> Image.Image:
    """Load and resize the image of one message element, like qwen-vl-utils' ``fetch_image``.

    Args:
        ele: ``{"image": src}`` or ``{"image_url": src | {"url": src}}`` plus optional
            ``min_pixels``, ``max_pixels``, ``resized_height`` and ``resized_width``.
        image_patch_size: ViT patch size: 14 (Qwen2/2.5-VL) or 16 (Qwen3-VL); sides become
            multiples of ``2 * image_patch_size``.
        policy: fetch rules (timeouts, caps, allowed schemes).
        image_options: decode rules (formats, source limits, ``exif_transpose``).
        cache: reuse the resized image of an earlier call with the same content and
            parameters (see :class:`vlprep.MediaCache`); the source is still fetched and
            hashed. ``None``: no caching.
        options: deprecated name of ``image_options`` (``DeprecationWarning``).

    Returns:
        ``PIL.Image.Image`` in mode RGB, resized with Pillow's bicubic filter; byte-identical
        to qwen-vl-utils 0.0.14 except for the documented deviations (EXIF orientation,
        transparency on white for every mode, 16-bit scaling).

    Raises:
        InvalidInputError, SourceNotAllowedError, FetchError, DecodeError,
        UnsupportedFormatError, ResourceLimitError.
    """
    image_options = renamed(
        "fetch_image", "image_options", image_options, "options", options, expected=ImageOptions
    )
    return fetch_image_item(
        ele,
        check_patch_size(image_patch_size) * 2,
        policy=policy,
        options=image_options,
        cache=cache,
    )


def fetch_image_for(
    ele: Mapping[str, Any],
    preset: Preset,
    *,
    policy: FetchPolicy | None = None,
    image_options: ImageOptions | None = None,
    cache: MediaCache | None = None,
    options: ImageOptions | None = None,
) -> Image.Image:
    """:func:`fetch_image` sized for a model configuration instead of qwen-vl-utils' defaults.

    The grid is ``preset.factor`` and the default bounds are ``preset.image_min_pixels`` /
    ``preset.image_max_pixels`` (a processor's ``size``); ``min_pixels`` / ``max_pixels`` /
    ``resized_height`` / ``resized_width`` in the element still take precedence.
    ``policy``, ``image_options``, ``cache`` (and the deprecated ``options``) as for
    :func:`fetch_image`.

    Returns:
        RGB ``PIL.Image.Image`` with sides multiples of ``preset.factor``.
    """
    image_options = renamed(
        "fetch_image_for", "image_options", image_options, "options", options, expected=ImageOptions
    )
    return fetch_image_item(ele, preset, policy=policy, options=image_options, cache=cache)


def fetch_image_item(
    ele: Mapping[str, Any],
    sizing: Preset | int,
    *,
    policy: FetchPolicy | None,
    options: ImageOptions | None,
    cache: MediaCache | None,
    budget: CallBudget | None = None,
) -> Image.Image:
    """One image element sized for ``sizing``, within a call's budget.

    ``sizing``: a preset (its grid, image bounds and fixed size), or a grid factor
    (``2 * image_patch_size``), which stands for qwen-vl-utils' defaults: see
    :func:`vlprep._planning.image_sizing`.

    What :func:`fetch_image` and :func:`fetch_image_for` run; the calls that load many
    items pass their :class:`vlprep._limits.CallBudget`: the fetch gets the time left to the
    call deadline, and the planned output size is charged to the call before the resize
    allocates it (a cached image, never planned, is charged by its size).

    Raises:
        As :func:`fetch_image`; ``ResourceLimitError`` over ``CallLimits.max_total_pixels``,
        ``FetchTimeoutError`` past ``CallLimits.deadline``.
    """
    spec = parse_image_element(ele)
    limit = (options or _DEFAULT_OPTIONS).max_output_pixels
    charged = False
    if budget is not None:
        policy = budget.policy(policy)

    def target_of(height: int, width: int) -> tuple[int, int]:
        nonlocal charged
        size = image_size_for(spec, height, width, sizing, max_output_pixels=limit)
        if budget is not None:
            budget.charge(size[0] * size[1], "image")
            charged = True
        return size

    def load(source: object) -> Image.Image:
        return _load_sized(source, target_of, policy, options)

    with contextlib.nullcontext() if budget is None else budget.timing():
        if cache is None:
            return load(spec.source)
        image = _cached(cache, spec, load, image_sizing(sizing), policy=policy, options=options)
    if budget is not None and not charged:
        budget.charge(image.width * image.height, "image")
    return image


def _content(
    source: object, policy: FetchPolicy | None, options: ImageOptions
) -> tuple[object, bytes] | None:
    """``(source to decode, content digest)`` for the cache; ``None`` for other types.

    String and bytes sources are fetched here, once: the digest is of the bytes that are
    then decoded (a URL whose content changed gets a new key). Arrays and tensors are
    validated and wrapped as they would be for decoding.
    """
    if isinstance(source, Image.Image):
        return source, digest_image(source, options.exif_transpose)
    if isinstance(source, (str, bytes, bytearray, memoryview)):
        data = fetch(source, policy, "image").data
        return data, digest_bytes(data)
    if hasattr(source, "__array__") or type(source).__module__.startswith(("numpy", "torch")):
        image = _array_to_pil(source)
        return image, digest_image(image, exif_transpose=False)
    return None


def _cached(
    cache: MediaCache,
    spec: ImageSpec,
    load: Callable[[object], Image.Image],
    sizing: ImageSizing,
    *,
    policy: FetchPolicy | None,
    options: ImageOptions | None,
) -> Image.Image:
    """``load(spec.source)`` through ``cache``, keyed by content and every parameter."""
    options = options or _DEFAULT_OPTIONS
    content = _content(spec.source, policy, options)
    if content is None:
        return load(spec.source)  # an unsupported type: raises the usual error
    source, digest = content
    # The element's keys (all of them, source aside), the grid and default bounds, and
    # the whole options object: a field added to ImageOptions is part of the key.
    key = ("image", digest, dataclasses.replace(spec, source=None), sizing, options)
    return cache.get_or_load(key, lambda: load(source), pack_image, unpack_image)


def image_content(
    source: object, policy: FetchPolicy | None, options: ImageOptions | None
) -> tuple[object, bytes]:
    """``(source to decode, content digest)``, as :class:`vlprep.MediaCache` keys it.

    Paths, URLs, ``data:`` URIs and bytes are fetched here, once: decode the returned bytes
    and the digest is of what was decoded.

    Raises:
        InvalidInputError: an unsupported source type; FetchError etc. from the fetch.
    """
    content = _content(source, policy, options or _DEFAULT_OPTIONS)
    if content is None:
        load_image(source, policy=policy, options=options)  # raises the usual error
        raise InvalidInputError(f"unsupported image source of type {type(source).__name__}")
    return content


def load_image_at(
    source: object,
    size: tuple[int, int],
    *,
    policy: FetchPolicy | None,
    options: ImageOptions | None,
) -> Image.Image:
    """Load ``source`` and resize it to ``size`` ``(height, width)`` as given, whatever its
    own size (a plan's replay: the size was computed when the plan was made)."""
    return _load_sized(source, lambda height, width: size, policy, options)
