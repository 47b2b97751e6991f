"""Image elements -> ``pixel_values`` on a torch device, JPEGs decoded there (nvJPEG on CUDA).

Order of work, per batch:

1. On CPU, item by item (``workers`` at a time): the source is fetched with
   :func:`vlprep._sources.fetch` (policy kept), the header probed and the limits checked
   (:func:`vlprep._decode.image.probe_header`), and the output size computed from the full
   upright header size exactly as :func:`vlprep._image.fetch_image_for` does, so grids and
   token counts equal the CPU path's. No pixel is decoded before these checks.
2. Every baseline/progressive RGB or grayscale JPEG (and MPO) of the batch is decoded in
   **one** ``torchvision.io.decode_jpeg`` call on the device (nvJPEG batches on CUDA); the
   EXIF orientation read from the header is then applied on the device. Anything else (PNG,
   WebP, GIF, CMYK JPEG, PIL/array/tensor sources, ...) is decoded on CPU by vlprep's
   decoders and uploaded at full size.
3. On the device: float32 bicubic antialias resize, rounded and clamped
   (:func:`vlprep._tensors.resize_exact`), then normalise and patchify
   (:func:`vlprep._tensors.patchify_image_tensors`).

torchvision is the optional ``gpu`` extra and is imported only when this path is used.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlprep._decode.image import ImageOptions, decode_image, probe_header
from vlprep._errors import (
    BackendUnavailableError,
    DecodeError,
    InvalidInputError,
    ResourceLimitError,
    describe_source,
)
from vlprep._image import load_image
from vlprep._limits import CallBudget
from vlprep._planning import image_size_for, upright_size
from vlprep._pool import ordered_map, resolve_workers
from vlprep._presets import Preset
from vlprep._sources import FetchPolicy, fetch
from vlprep._specs import parse_image_element
from vlprep._tensors import patchify_image_tensors, resize_exact

__all__ = ["JpegDecoder", "images_to_device", "jpeg_decoder", "orient", "resolve_device"]

_DEFAULT_OPTIONS = ImageOptions()
# What nvJPEG (and torchvision's CPU decoder) turn into RGB like Pillow does; CMYK/YCCK
# JPEGs go to Pillow, whose conversion vlprep's CPU path uses.
_DEVICE_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_DEVICE_JPEG_MODES = frozenset({"RGB", "L"})
_DEPRECATION = r"The image decoding and encoding capabilities of TorchVision are deprecated"

JpegDecoder = Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]
"""Batched JPEG decode: CPU uint8 byte tensors -> RGB uint8 ``(3, H, W)`` on the device."""


@dataclass(frozen=True, slots=True)
class _Planned:
    """One image after the CPU stage: either JPEG bytes for the device or decoded pixels."""

    origin: str
    target: tuple[int, int]  # (height, width) after resizing
    jpeg: bytes | None = None  # decoded on the device when set
    stored: tuple[int, int] = (0, 0)  # (height, width) in the JPEG header, before orientation
    orientation: int = 1  # EXIF orientation to apply after decoding (1 = none)
    pixels: Image.Image | None = None  # upright RGB decoded on CPU when ``jpeg`` is None


def jpeg_decoder() -> JpegDecoder:
    """torchvision's batched ``decode_jpeg`` as a :data:`JpegDecoder`, imported lazily.

    Raises:
        BackendUnavailableError: torchvision (or its image extension) is not installed; the
            message names ``pip install 'vlprep[gpu]'``.
    """
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as exc:
        raise BackendUnavailableError(
            "decoding images on a device needs torchvision built for the installed torch: "
            "pip install 'vlprep[gpu]'"
        ) from exc

    def decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its image I/O in favour of torchcodec; the call
            # still works and the warning would otherwise fire on every batch.
            warnings.filterwarnings("ignore", _DEPRECATION, DeprecationWarning)
            # EXIF orientation is applied by vlprep from the header: torchvision honours
            # apply_exif_orientation only on CPU, and the header's value sized the target.
            out = decode_jpeg(
                data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=False
            )
        return list(out)

    return decode


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, refusing a malformed one or CUDA without a GPU.

    Raises:
        InvalidInputError: not a device string, or ``cuda`` while CUDA is unavailable.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"not a torch device: {str(device)[:40]!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {str(resolved)!r} was requested but torch.cuda.is_available() is False "
            "(a CPU-only torch build, or no visible GPU)"
        )
    return resolved


def _plan(
    ele: Mapping[str, Any],
    preset: Preset,
    policy: FetchPolicy | None,
    options: ImageOptions,
    budget: CallBudget,
) -> _Planned:
    """Fetch, probe and size one element on CPU; decode it here unless it is a device JPEG.

    The fetch gets the time left to the call deadline; the planned size is charged to the
    call before anything is resized.
    """
    with budget.timing():
        return _plan_within(ele, preset, budget.policy(policy), options, budget)


def _plan_within(
    ele: Mapping[str, Any],
    preset: Preset,
    policy: FetchPolicy | None,
    options: ImageOptions,
    budget: CallBudget,
) -> _Planned:
    spec = parse_image_element(ele)

    def target_of(height: int, width: int) -> tuple[int, int]:
        size = image_size_for(
            spec, height, width, preset, max_output_pixels=options.max_output_pixels
        )
        budget.charge(size[0] * size[1], "image")
        return size

    if isinstance(spec.source, (str, bytes, bytearray, memoryview)):
        payload = fetch(spec.source, policy, "image")
        header = probe_header(payload.data, options)  # limits checked, nothing decoded
        if header.format in _DEVICE_JPEG_FORMATS and header.mode in _DEVICE_JPEG_MODES:
            return _Planned(
                origin=payload.origin,
                target=target_of(*upright_size(header, options.exif_transpose)),
                jpeg=payload.data,
                stored=(header.height, header.width),
                orientation=header.orientation,
            )
        image = decode_image(payload.data, options)
        origin = payload.origin
    else:
        image = load_image(spec.source, policy=policy, options=options)
        origin = describe_source(spec.source)
    return _Planned(origin=origin, target=target_of(image.height, image.width), pixels=image)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply EXIF ``orientation`` (1-8) to a ``(C, H, W)`` tensor as Pillow's transposes do.

    Returns a view (flips copy) on the same device; 1 or an unknown value returns ``image``.
    """
    if orientation == 2:  # mirror left-right
        return image.flip(-1)
    if orientation == 3:  # rotate 180
        return image.flip(-2, -1)
    if orientation == 4:  # mirror top-bottom
        return image.flip(-2)
    if orientation == 5:  # transpose (main diagonal)
        return image.transpose(-2, -1)
    if orientation == 6:  # rotate 90 clockwise
        return image.transpose(-2, -1).flip(-1)
    if orientation == 7:  # transverse (anti-diagonal)
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:  # rotate 90 counter-clockwise
        return image.transpose(-2, -1).flip(-2)
    return image


def _reason(exc: BaseException) -> str:
    """The decoder's own last line (libjpeg/nvJPEG status text), without source paths."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return last.rsplit(".cpp:", 1)[-1].lstrip("0123456789, ")[:160] or type(exc).__name__


def _decode_batch(
    decode: JpegDecoder,
    numbered: Sequence[tuple[int, _Planned]],
    count: int,
    device: torch.device,
) -> list[torch.Tensor]:
    """Decode the JPEGs of ``numbered`` (position, item) in one call on ``device``.

    A failure names the first failing image by its position among the ``count`` images.
    """
    data = [
        torch.frombuffer(bytearray(item.jpeg or b""), dtype=torch.uint8) for _, item in numbered
    ]
    try:
        return decode(data, device)
    except torch.cuda.OutOfMemoryError as exc:
        raise ResourceLimitError(
            f"not enough {device.type} memory to decode {len(data)} JPEG images at once; "
            "pass fewer or smaller images per call"
        ) from exc
    except RuntimeError as batch_error:
        # Only to name the culprit: decode one at a time; nothing falls back to the CPU.
        for (number, item), single in zip(numbered, data, strict=True):
            try:
                decode([single], device)
            except RuntimeError as exc:
                raise DecodeError(
                    f"cannot decode JPEG image {number} of {count} ({item.origin}) on "
                    f"{device}: {_reason(exc)}; the CPU path (device=None) may accept it"
                ) from exc
        raise DecodeError(
            f"the batched JPEG decode of {len(data)} images failed on {device} "
            f"({_reason(batch_error)}) although each image decodes alone"
        ) from batch_error


def _upright(decoded: torch.Tensor, item: _Planned, number: int, count: int) -> torch.Tensor:
    height, width = item.stored
    if tuple(decoded.shape) != (3, height, width):
        raise DecodeError(
            f"JPEG image {number} of {count} ({item.origin}) decoded to "
            f"{tuple(decoded.shape)}, its header says (3, {height}, {width})"
        )
    return orient(decoded, item.orientation)


def images_to_device(
    elements: Sequence[Mapping[str, Any]],
    preset: Preset,
    device: str | torch.device,
    *,
    policy: FetchPolicy | None = None,
    options: ImageOptions | None = None,
    workers: int | None = None,
    decoder: JpegDecoder | None = None,
    dtype: torch.dtype = torch.float32,
    budget: CallBudget | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load, resize, normalise and patchify image elements, producing tensors on ``device``.

    Sizes are those of :func:`vlprep._image.fetch_image_for` (same grids and token counts);
    pixels come from a different decoder and resize kernel than the CPU exact path (see
    ``docs/inputs.md`` for the measured deviation). ``options.decode`` is not used: images
    are always decoded at full size and resized with the float bicubic kernel.

    Args:
        elements: image message elements (``{"image": src, "max_pixels": ...}``), keys as in
            :func:`vlprep.fetch_image`; an already fetched payload is given as ``bytes``.
        preset: model constants and default pixel bounds.
        device: where the tensors go (``"cuda"``, ``"cuda:1"``, ``torch.device``, ``"cpu"``).
            JPEGs are decoded there on CUDA (nvJPEG) and on CPU otherwise.
        policy: fetch rules for string sources.
        options: decode rules (formats, source limits, ``exif_transpose``).
        workers: items fetched and probed at once on CPU (default ``min(4, CPU count)``).
        decoder: the batched JPEG decoder (default :func:`jpeg_decoder`, torchvision's).
        dtype: ``pixel_values``' dtype (float32, bfloat16, float16), written as
            :func:`vlprep._tensors.patchify_image_tensors` writes it.
        budget: the running account of the call these images belong to
            (:func:`vlprep.build_inputs` passes its own); ``None``: a new one under the
            default :class:`vlprep.CallLimits`. Items are not counted here.

    Returns:
        ``pixel_values`` ``dtype`` ``(sum gh*gw, 3*T*P*P)`` on ``device``, normalised, in
        :func:`vlprep._tensors.patchify_images`' layout, and ``image_grid_thw`` int64
        ``(n, 3)`` rows ``[1, gh, gw]`` on CPU (as transformers' processors return it;
        :func:`vlprep.build_inputs` moves it with the rest).

    Raises:
        BackendUnavailableError: torchvision is missing (``pip install 'vlprep[gpu]'``).
        InvalidInputError: no elements, a malformed element, a bad device or no CUDA.
        DecodeError: a JPEG the device decoder refuses (named by position and origin).
        FetchError, UnsupportedFormatError, ResourceLimitError: as on the CPU path.
    """
    if not elements:
        raise InvalidInputError("images_to_device needs at least one image element")
    target_device = resolve_device(device)
    decode = decoder if decoder is not None else jpeg_decoder()
    options = options or _DEFAULT_OPTIONS
    call = budget if budget is not None else CallBudget()
    planned = list(
        ordered_map(
            lambda i: _plan(elements[i], preset, policy, options, call),
            len(elements),
            resolve_workers(workers),
            what="image",
        )
    )
    decode_on = target_device if target_device.type == "cuda" else torch.device("cpu")
    jpegs = [(number, item) for number, item in enumerate(planned, 1) if item.jpeg is not None]
    # A deque, emptied as it goes: each full-size decode is freed once resized.
    decoded = collections.deque(
        _decode_batch(decode, jpegs, len(planned), decode_on) if jpegs else []
    )
    resized: list[torch.Tensor] = []
    for number, item in enumerate(planned, start=1):
        if item.jpeg is not None:
            pixels = _upright(decoded.popleft(), item, number, len(planned))
        else:
            array = np.array(item.pixels)  # writable HWC copy: torch warns on read-only
            pixels = torch.from_numpy(array).permute(2, 0, 1)
        resized.append(resize_exact(pixels.to(target_device), *item.target))
        del pixels
    return patchify_image_tensors(resized, preset, dtype=dtype)
