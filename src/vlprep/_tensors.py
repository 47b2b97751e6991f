"""Resized RGB images and video frames -> ``pixel_values`` and grids, as transformers computes them.

One pass per output element from uint8 (or integer-valued float) pixels: the patches are
copied into the merge-blocked layout of the preallocated float32 output, then normalised in
place with ``(x / 255 - mean) / std`` in float32. For every level 0..255, ``float32(x) / 255``
equals transformers' PIL-backend ``float32(float64(x) * (1/255))`` (checked by a test), so
the result is bit-identical to that backend without float64 arrays; torch runs both steps on
all cores.

``dtype`` (``torch.float32`` default, ``torch.bfloat16``, ``torch.float16``) is the dtype of
the output written: the arithmetic stays float32 on a scratch of one item (an image's one
temporal slot, a video's clip) and is rounded once into the output, so the result equals
``float32_result.to(dtype)`` bit for bit, without ever holding the float32 output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image

from vlprep._errors import InvalidInputError
from vlprep._presets import Preset

__all__ = [
    "PIXEL_DTYPES",
    "FrameResizer",
    "ResizeMode",
    "patchify_image",
    "patchify_image_tensors",
    "patchify_images",
    "patchify_video",
    "patchify_videos",
    "pixel_dtype",
    "resize_exact",
    "resize_frame",
    "resize_uint8",
]

ResizeMode = Literal["exact", "fast"]

PIXEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def pixel_dtype(dtype: object) -> torch.dtype:
    """``dtype`` as one of :data:`PIXEL_DTYPES` (``None`` is float32; names like ``"bfloat16"``).

    Raises:
        InvalidInputError: any other dtype.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if isinstance(dtype, torch.dtype) and dtype in PIXEL_DTYPES:
        return dtype
    raise InvalidInputError(
        f"pixel dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype!r:.40}"
    )


def _as_rgb_array(image: Image.Image | np.ndarray, preset: Preset) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInputError(
            f"expected an RGB uint8 (H, W, 3) image, got {arr.dtype} {arr.shape}"
        )
    height, width = arr.shape[:2]
    if height % preset.factor or width % preset.factor:
        raise InvalidInputError(
            f"image size {height}x{width} is not a multiple of {preset.factor}; resize it first"
        )
    return arr


def _normalise_(blocks: torch.Tensor, preset: Preset, channel_dim: int) -> None:
    """In place: ``(x / 255 - mean) / std`` along ``channel_dim`` of ``blocks`` (float32)."""
    shape = [1] * blocks.ndim
    shape[channel_dim] = 3
    mean = torch.tensor(preset.image_mean, dtype=torch.float32, device=blocks.device).view(shape)
    std = torch.tensor(preset.image_std, dtype=torch.float32, device=blocks.device).view(shape)
    blocks.div_(255.0).sub_(mean).div_(std)


# Float32 elements normalised at once on CPU (4 MiB): measured fastest on a 12 MP image
# (1,000-2,000 rows of 588 values: 31 ms against 39 ms unchunked and 37 ms at 256 rows).
_CHUNK_FLOATS = 1 << 20

# (gh/m, m, P, gw/m, m, P, C) -> (gh/m, gw/m, m, m, C, P, P): the merge-blocked row order.
_BLOCK_ORDER = (0, 3, 1, 4, 6, 2, 5)


def _merge_blocks(pixels: np.ndarray | torch.Tensor, preset: Preset) -> torch.Tensor:
    """``(H, W, 3)`` pixels -> a fresh contiguous ``(gh * gw, 3, P * P)`` tensor of patches.

    Same dtype as ``pixels`` (the reorder runs on uint8 when given uint8: a quarter of the
    bytes of float32); a torch input may be a strided view (e.g. CHW permuted) on any device.
    """
    p, m = preset.patch_size, preset.merge_size
    gh, gw = pixels.shape[0] // p, pixels.shape[1] // p
    shape = (gh // m, m, p, gw // m, m, p, 3)
    if isinstance(pixels, np.ndarray):
        reordered = np.ascontiguousarray(pixels.reshape(shape).transpose(_BLOCK_ORDER))
        blocks = torch.from_numpy(reordered)
    else:
        blocks = pixels.reshape(shape).permute(_BLOCK_ORDER).contiguous()
        if blocks.data_ptr() == pixels.data_ptr():
            blocks = blocks.clone()  # normalised in place below: never the caller's memory
    return blocks.view(gh * gw, 3, p * p)


def _patchify_image_into(
    pixels: np.ndarray | torch.Tensor, preset: Preset, out: torch.Tensor
) -> None:
    """Write the patches of ``pixels`` (``(H, W, 3)``) into ``out`` (``(gh * gw, 3 * T * P * P)``).

    The merge-blocked reorder, the normalisation on that contiguous copy, and one
    broadcasting copy that fills every temporal slot of ``out``; all on ``out``'s device.
    """
    p, t = preset.patch_size, preset.temporal_patch_size
    blocks = _merge_blocks(pixels, preset)
    rows = blocks.shape[0]
    target = out.view(rows, 3, t, p * p)
    # On CPU, row chunks of about 4 MB of float32 keep the float conversion, the three
    # normalisation passes and the (casting) copy in cache; one pass on an accelerator.
    step = rows if out.device.type != "cpu" else max(1, _CHUNK_FLOATS // (3 * p * p))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        patches = blocks[start:stop].float()
        _normalise_(patches, preset, channel_dim=1)
        target[start:stop].copy_(patches.unsqueeze(2).expand(stop - start, 3, t, p * p))


def patchify_image(
    image: Image.Image | np.ndarray, preset: Preset
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Patchify one resized image for ``preset``.

    Args:
        image: RGB ``PIL.Image`` or uint8 array ``(H, W, 3)``; H and W multiples of
            ``preset.factor`` (run :func:`vlprep.smart_resize` / :func:`vlprep.fetch_image` first).
        preset: patch, merge and temporal sizes, mean and std.

    Returns:
        ``(patches, (1, gh, gw))``: ``patches`` float32 ``(gh * gw, 3 * T * P * P)`` in the
        merge-blocked row order (rows of one ``m x m`` window adjacent), columns ordered
        ``(channel, t, dy, dx)``; the still image is repeated ``T = temporal_patch_size`` times.
    """
    pixel_values, grid = patchify_images([image], preset)
    gh, gw = int(grid[0, 1]), int(grid[0, 2])
    return pixel_values.numpy(), (1, gh, gw)


def patchify_images(
    images: Sequence[Image.Image | np.ndarray],
    preset: Preset,
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patchify several images into one preallocated output, in order.

    Args:
        images: RGB ``PIL.Image`` objects or uint8 ``(H, W, 3)`` arrays, sides multiples of
            the factor.
        preset: patch, merge and temporal sizes, mean and std.
        dtype: the output's dtype (float32, bfloat16 or float16): the float32 values
            rounded once, equal to ``.to(dtype)`` of the float32 output bit for bit.

    Returns:
        ``pixel_values`` ``dtype`` ``(sum gh*gw, 3*T*P*P)`` and ``image_grid_thw`` int64
        ``(n_images, 3)`` rows ``[1, gh, gw]``, equal to transformers' Qwen2-VL image
        processor (PIL backend) called with ``do_resize=False``, bit for bit (then cast).
    """
    if not images:
        raise InvalidInputError("patchify_images needs at least one image")
    arrays = [_as_rgb_array(image, preset) for image in images]
    p = preset.patch_size
    grids = [(1, a.shape[0] // p, a.shape[1] // p) for a in arrays]
    rows = [gh * gw for _, gh, gw in grids]
    out = torch.empty(
        (sum(rows), 3 * preset.temporal_patch_size * p * p), dtype=pixel_dtype(dtype)
    )
    start = 0
    for arr, n in zip(arrays, rows, strict=True):
        _patchify_image_into(arr, preset, out[start : start + n])
        start += n
    return out, torch.tensor(grids, dtype=torch.int64)


def _check_image_tensor(image: object, preset: Preset, device: torch.device) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(getattr(image, "shape", ()))
        raise InvalidInputError(f"expected an RGB image tensor (3, H, W), got shape {shape}")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise InvalidInputError(f"image tensors must be uint8 or float, got {image.dtype}")
    if image.device != device:
        raise InvalidInputError(
            f"all image tensors must be on one device: {image.device} after {device}"
        )
    height, width = image.shape[1], image.shape[2]
    if height % preset.factor or width % preset.factor:
        raise InvalidInputError(
            f"image size {height}x{width} is not a multiple of {preset.factor}; resize it first"
        )
    return image


def patchify_image_tensors(
    images: Sequence[torch.Tensor],
    preset: Preset,
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`patchify_images` for resized image tensors, computed on their device.

    Args:
        images: each ``(3, H, W)``, uint8 or float levels 0..255 (integers, as
            :func:`resize_exact` returns), all on one device (CPU or an accelerator); H and
            W multiples of ``preset.factor``.
        preset: patch, merge and temporal sizes, mean and std.
        dtype: the output's dtype, as for :func:`patchify_images`.

    Returns:
        ``pixel_values`` ``dtype`` ``(sum gh*gw, 3*T*P*P)`` on the images' device and
        ``image_grid_thw`` int64 ``(n_images, 3)`` rows ``[1, gh, gw]`` on CPU (host
        metadata, as transformers' processors return it: reading it needs no device
        sync); the same layout and arithmetic as :func:`patchify_images` (bit-identical
        for the same pixels).

    Raises:
        InvalidInputError: no images, a wrong shape or dtype, mixed devices, a size off the grid.
    """
    if not images:
        raise InvalidInputError("patchify_image_tensors needs at least one image")
    device = images[0].device if isinstance(images[0], torch.Tensor) else torch.device("cpu")
    checked = [_check_image_tensor(image, preset, device) for image in images]
    p = preset.patch_size
    grids = [(1, int(c.shape[1]) // p, int(c.shape[2]) // p) for c in checked]
    rows = [gh * gw for _, gh, gw in grids]
    out = torch.empty(
        (sum(rows), 3 * preset.temporal_patch_size * p * p),
        dtype=pixel_dtype(dtype),
        device=device,
    )
    start = 0
    for chw, n in zip(checked, rows, strict=True):
        _patchify_image_into(chw.permute(1, 2, 0), preset, out[start : start + n])
        start += n
    return out, torch.tensor(grids, dtype=torch.int64)


def _video_frames(video: torch.Tensor | np.ndarray, preset: Preset) -> torch.Tensor:
    frames = torch.from_numpy(np.asarray(video)) if isinstance(video, np.ndarray) else video
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        shape = tuple(getattr(video, "shape", ()))
        raise InvalidInputError(f"expected video frames (T, 3, H, W), got shape {shape}")
    if frames.shape[0] < 1:
        raise InvalidInputError("a video needs at least one frame")
    height, width = frames.shape[2], frames.shape[3]
    if height % preset.factor or width % preset.factor:
        raise InvalidInputError(
            f"frame size {height}x{width} is not a multiple of {preset.factor}; resize it first"
        )
    if frames.dtype != torch.uint8 and not frames.is_floating_point():
        raise InvalidInputError(f"video frames must be uint8 or float, got {frames.dtype}")
    return frames.detach().cpu()


def _patchify_clip_into(frames: torch.Tensor, preset: Preset, out: torch.Tensor) -> None:
    p, m, t = preset.patch_size, preset.merge_size, preset.temporal_patch_size
    n, _, height, width = frames.shape
    gh, gw = height // p, width // p
    gt = -(-n // t)
    view = out.view(gt, gh // m, gw // m, m, m, 3, t, p, p)
    full = n // t
    order = (0, 3, 6, 4, 7, 2, 1, 5, 8)  # -> (gt, gh/m, gw/m, m, m, C, T, P, P)
    if full:
        source = frames[: full * t].reshape(full, t, 3, gh // m, m, p, gw // m, m, p)
        view[:full].copy_(source.permute(order))
    if full < gt:  # pad the last temporal patch by repeating the last frame
        index = [min(full * t + k, n - 1) for k in range(t)]
        last = frames[index].reshape(1, t, 3, gh // m, m, p, gw // m, m, p)
        view[full:].copy_(last.permute(order))
    _normalise_(view, preset, channel_dim=5)


def patchify_videos(
    videos: Sequence[torch.Tensor | np.ndarray],
    preset: Preset,
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patchify video clips into ``pixel_values_videos`` and ``video_grid_thw``.

    Args:
        videos: each ``(T, 3, H, W)`` uint8 or float levels 0..255 (what
            :func:`vlprep.fetch_video` returns); H and W multiples of ``preset.factor``.
        preset: patch, merge and temporal sizes, mean and std.
        dtype: the output's dtype (float32, bfloat16 or float16); each clip is normalised
            in a float32 scratch and rounded once, equal to ``.to(dtype)`` bit for bit.

    Returns:
        ``pixel_values_videos`` ``dtype`` ``(sum t*gh*gw, 3*T*P*P)`` and ``video_grid_thw``
        int64 ``(n_videos, 3)`` rows ``[ceil(frames / T), gh, gw]``. A clip whose frame count
        is not a multiple of ``T`` gets its last frame repeated, as transformers' video
        processors do. Rows are temporal-patch major, then the merge-blocked spatial order;
        columns ``(channel, t, dy, dx)``. Within 1e-6 of transformers' video processor (its
        fused ``(x - 255·mean) / (255·std)`` rounds differently by at most an ulp or two).

    Raises:
        InvalidInputError: no videos, a wrong shape or dtype, or a size off the grid.
    """
    if not videos:
        raise InvalidInputError("patchify_videos needs at least one video")
    clips = [_video_frames(video, preset) for video in videos]
    p, tp = preset.patch_size, preset.temporal_patch_size
    grids = [(-(-c.shape[0] // tp), c.shape[2] // p, c.shape[3] // p) for c in clips]
    rows = [gt * gh * gw for gt, gh, gw in grids]
    target = pixel_dtype(dtype)
    out = torch.empty((sum(rows), 3 * tp * p * p), dtype=target)
    start = 0
    for clip, n in zip(clips, rows, strict=True):
        if target == torch.float32:
            _patchify_clip_into(clip, preset, out[start : start + n])
        else:  # float32 arithmetic on one clip's scratch, rounded once into the output
            scratch = torch.empty((n, out.shape[1]), dtype=torch.float32)
            _patchify_clip_into(clip, preset, scratch)
            out[start : start + n].copy_(scratch)
            del scratch
        start += n
    return out, torch.tensor(grids, dtype=torch.int64)


def patchify_video(
    video: torch.Tensor | np.ndarray, preset: Preset
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """One clip: ``(pixel_values_videos, (t, gh, gw))``; see :func:`patchify_videos`."""
    pixel_values, grid = patchify_videos([video], preset)
    t, gh, gw = (int(v) for v in grid[0])
    return pixel_values, (t, gh, gw)


class FrameResizer:
    """Resize video frames to one size into a caller's float32 output, reusing buffers.

    ``"exact"`` = torchvision's float bicubic with antialias, rounded and clamped (what
    qwen-vl-utils' ``transforms.functional.resize`` does to uint8 video), written as float32
    integers 0..255: bit-identical to qwen-vl-utils' ``.float()`` output. ``"fast"`` = torch's
    uint8 antialiased bicubic kernel (rounds between its passes: mean < 0.2 levels, a few
    levels at clipped edges). Buffers are reused across frames: fresh allocations of
    frame-sized tensors cost page faults that dominated the resize time here.
    """

    def __init__(self, height: int, width: int, mode: ResizeMode = "exact") -> None:
        if mode not in ("exact", "fast"):
            raise InvalidInputError(f"resize mode must be 'exact' or 'fast', got {mode!r}")
        self.height, self.width, self.mode = height, width, mode
        self._scratch: torch.Tensor | None = None

    def __call__(self, frame: np.ndarray, out: torch.Tensor) -> None:
        """Resize uint8 ``(H, W, 3)`` ``frame`` into float32 ``out`` of shape ``(3, h, w)``."""
        if not frame.flags.writeable or not frame.flags.c_contiguous:
            frame = np.array(frame)  # torch.from_numpy warns on read-only arrays (e.g. from PIL)
        chw = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0)
        size = (self.height, self.width)
        if self.mode == "fast":
            resized = torch.nn.functional.interpolate(
                chw, size=size, mode="bicubic", antialias=True, align_corners=False
            )
            out.copy_(resized[0])
            return
        if self._scratch is None or self._scratch.shape != chw.shape:
            self._scratch = torch.empty(chw.shape, dtype=torch.float32)
        self._scratch.copy_(chw)
        _bicubic_exact_into(self._scratch, out)


def _bicubic_exact_into(nchw: torch.Tensor, out: torch.Tensor) -> None:
    """The exact mode's kernel: float32 ``(1, 3, H, W)`` -> rounded, clamped ``out`` ``(3, h, w)``.

    torchvision's float bicubic with antialias, rounded half to even and clamped to 0..255,
    on whatever device the tensors are on (the one implementation of "exact" resizing).
    """
    resized = torch.nn.functional.interpolate(
        nchw,
        size=(int(out.shape[1]), int(out.shape[2])),
        mode="bicubic",
        antialias=True,
        align_corners=False,
    )
    torch.round(resized[0], out=out)
    out.clamp_(0, 255)


def resize_exact(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize one RGB image tensor with the exact kernel of :class:`FrameResizer`, on its device.

    Args:
        image: ``(3, H, W)`` uint8 (or float levels 0..255) on any device.
        height, width: output size, each >= 1.

    Returns:
        float32 ``(3, height, width)`` integer levels 0..255 on ``image``'s device (the
        input converted to float32 when the size is already right).
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise InvalidInputError(f"expected an RGB image tensor (3, H, W), got {tuple(image.shape)}")
    if height < 1 or width < 1:
        raise InvalidInputError(f"resize target must be at least 1x1, got {height}x{width}")
    source = image.unsqueeze(0).to(torch.float32)
    if (image.shape[1], image.shape[2]) == (height, width):
        return source[0].clone() if source.data_ptr() == image.data_ptr() else source[0]
    out = torch.empty((3, height, width), dtype=torch.float32, device=image.device)
    _bicubic_exact_into(source, out)
    return out


def resize_uint8(image: Image.Image | np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an RGB image with torch's uint8 antialiased bicubic kernel (the fast mode).

    The kernel works on uint8 directly (two separable passes, rounded in between) in a
    channels-last layout, several times faster than Pillow's resize on one thread.

    Args:
        image: RGB ``PIL.Image`` or uint8 ``(H, W, 3)`` array.
        height, width: output size, each >= 1.

    Returns:
        uint8 ``(height, width, 3)`` array, levels 0..255.
    """
    if isinstance(image, Image.Image) and image.mode != "RGB":
        image = image.convert("RGB")  # an RGB image is read as is: convert() would copy it
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInputError(
            f"expected an RGB uint8 (H, W, 3) image, got {arr.dtype} {arr.shape}"
        )
    if (arr.shape[0], arr.shape[1]) == (height, width):
        return np.array(arr)
    if not arr.flags.writeable:
        arr = np.array(arr)  # torch.from_numpy warns on read-only arrays (PIL hands those out)
    nchw = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)  # channels-last strides
    out = np.empty((height, width, 3), dtype=np.uint8)
    _resize_uint8_into(nchw, torch.from_numpy(out).permute(2, 0, 1).unsqueeze(0))
    return out


def _resize_uint8_into(nchw: torch.Tensor, out: torch.Tensor) -> None:
    """Bicubic antialiased uint8 resize of ``nchw`` into channels-last ``out``.

    ``interpolate`` returns a contiguous NCHW tensor (turning it back into HWC is a strided
    copy about as costly as the resize); the op's ``out=`` overload writes the channels-last
    output directly. Both give the same bytes (tested); the public call is the fallback.
    """
    size = [int(out.shape[2]), int(out.shape[3])]
    try:
        torch.ops.aten._upsample_bicubic2d_aa.out(nchw, size, False, None, None, out=out)
        return
    except (AttributeError, RuntimeError, TypeError):  # op renamed or its schema changed
        pass
    resized = torch.nn.functional.interpolate(
        nchw, size=size, mode="bicubic", antialias=True, align_corners=False
    )
    out.copy_(resized)


def resize_frame(
    frame: np.ndarray, height: int, width: int, mode: ResizeMode = "exact"
) -> torch.Tensor:
    """Resize one video frame the way qwen-vl-utils resizes videos (see :class:`FrameResizer`).

    Args:
        frame: uint8 ``(H, W, 3)`` RGB.
        height, width: target size.
        mode: ``"exact"`` or ``"fast"``.

    Returns:
        uint8 tensor ``(3, height, width)``.
    """
    out = torch.empty((3, height, width), dtype=torch.float32)
    FrameResizer(height, width, mode)(frame, out)
    return out.to(torch.uint8)
