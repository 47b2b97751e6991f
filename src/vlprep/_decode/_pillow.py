"""The in-process Pillow work behind :mod:`vlprep._decode.image` (private).

Encoded image bytes -> header facts and an RGB ``PIL.Image``, within limits.

Order of work: sniff the magic number, count JPEG scans and markers or PNG chunks (bounded
walks, :mod:`vlprep._decode._structure`), open the header with an allow-listed set of Pillow
plugins, check source pixels and aspect ratio, and only then decode pixels. The result is
upright (EXIF orientation applied by default), RGB, with any transparency composited on
white and 16-bit samples scaled (not clipped) to 8 bit.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from vlprep._decode._sniff import sniff_format
from vlprep._decode._structure import (
    check_jpeg_structure,
    check_png_structure,
    png_late_exif,
    webp_canvas_size,
)
from vlprep._errors import (
    BackendUnavailableError,
    DecodeError,
    ResourceLimitError,
    UnsupportedFormatError,
)

__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_OPTIONS",
    "PLUGIN_FORMATS",
    "ImageDecode",
    "ImageHeader",
    "ImageOptions",
    "apply_draft",
    "decode_bytes_per_pixel",
    "ensure_plugin",
    "fast_plan",
    "finish",
    "finish_image",
    "open_checked",
    "open_image",
    "orient_and_convert",
    "orientation_of",
    "probe_header",
    "quiet_pillow",
    "to_rgb",
]

logger = logging.getLogger(__name__)

DEFAULT_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO", "HEIF", "AVIF"})
"""Formats decoded by default. TIFF and PPM are opt-in through ``ImageOptions.formats``."""

_OPT_IN_FORMATS = frozenset({"TIFF", "PPM"})
_DCT_SCALED_FORMATS = frozenset({"JPEG", "MPO"})  # libjpeg can decode these at 1/2, 1/4, 1/8

ImageDecode = Literal["exact", "fast"]
"""How pixels are decoded and resized.

``"exact"`` (default): full-size decode, Pillow bicubic resize (qwen-vl-utils' pixels).
``"fast"``: a JPEG is decoded at the largest DCT scale (1/2, 1/4 or 1/8) whose size stays at
or above the target, then resized with torch's uint8 antialiased bicubic kernel; other
formats get only the faster resize. Same output size, pixels within the deviation measured
in ``docs/deviations.md``.
"""
_DECODES = ("exact", "fast")
PLUGIN_FORMATS = frozenset({"HEIF", "AVIF"})
# Pillow raises these from plugin code on malformed input (see Pillow's own fuzz tests).
_DECODER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    NotImplementedError,
    OverflowError,
    zlib.error,
    Image.DecompressionBombError,
)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """How image bytes are decoded.

    Attributes:
        formats: Pillow format names accepted. Default JPEG, PNG, WEBP, GIF, BMP, MPO and
            HEIF/AVIF (the latter need a plugin, see the ``heif`` extra). Add ``"TIFF"`` or
            ``"PPM"`` to opt in; other formats are refused.
        max_source_pixels: largest ``width * height`` in the header (Pillow's default bomb
            threshold, 89,478,485), checked before any pixel is decoded.
        max_aspect_ratio: largest ``max(w, h) / min(w, h)`` in the header (qwen's 200).
        exif_transpose: apply the EXIF Orientation tag (``False`` = qwen-vl-utils' behaviour).
        decode: ``"exact"`` (default, qwen-vl-utils' pixels) or ``"fast"`` (reduced-scale
            JPEG decode and a uint8 resize; see :data:`ImageDecode`).
        max_output_pixels: largest ``height * width`` an image is resized *to*, checked from
            the plan (element keys and bounds) before anything is allocated (default
            ``2**25``, twice the largest default bound, Qwen3-VL's ``16384 * 32**2``): a
            tiny file with ``"min_pixels": 4e8`` is a ``ResourceLimitError``, not 1.5 GiB.
        max_jpeg_scans: most scans (SOS segments) in a JPEG, counted before decoding
            (default 100; ordinary progressive JPEGs have about 10). libjpeg makes a pass
            over the whole image for each scan, so a file padded with empty scans costs
            minutes of CPU without it.
        max_jpeg_segments: most marker segments in a JPEG, padding bytes before the first
            scan counted one each (default 10,000; real files have tens): Pillow parses
            those in Python, one step per segment or padding byte.
        max_png_chunks: most chunks in a PNG up to the end of its first frame, counted
            before decoding (default 10,000; a 32 MiB PNG in libpng's 8 KiB ``IDAT``
            chunks has about 4,100): Pillow reads each in Python.
        max_decode_bytes: most memory decoding one image may take, estimated from the
            header before decoding (default 1 GiB: 12 bytes per pixel at the default
            ``max_source_pixels``, Pillow's own assumption). The estimate counts what the
            decode path keeps alive at its peak: the decoded image (1 byte per pixel for
            L/P, 2 for 16-bit, 4 for the rest, as Pillow stores them), the RGB conversion,
            the EXIF rotation, libjpeg's coefficients for a progressive JPEG and libwebp's
            canvases (a WebP costs about 16 bytes per pixel, so a 372-byte animation with a
            9400x9400 canvas would take 1.4 GiB: refused).
        decode_timeout: ``None`` (default): decode in this process. Seconds: decode in a
            child process (as ``VideoOptions(isolate=True)``, without torch) that is
            killed past this wall-clock time, start-up included (about 0.2 s), and whose
            address space is capped at ``max_decode_bytes`` + 256 MiB beyond its imports:
            ``ResourceLimitError`` for either, ``DecodeError`` if the decoder crashes.
            Applies to :func:`decode_image` and :func:`decode_image_for` (so to every
            fetch of image bytes); the result carries the pixels only (an empty ``info``).
            POSIX only.
    """

    formats: frozenset[str] = field(default=DEFAULT_FORMATS)
    max_source_pixels: int = 89_478_485
    max_aspect_ratio: float = 200.0
    exif_transpose: bool = True
    decode: ImageDecode = "exact"
    max_output_pixels: int = 1 << 25
    max_jpeg_scans: int = 100
    max_jpeg_segments: int = 10_000
    max_png_chunks: int = 10_000
    max_decode_bytes: int = 1 << 30
    decode_timeout: float | None = None

    def __post_init__(self) -> None:
        from vlprep._errors import InvalidInputError

        timeout = self.decode_timeout
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise InvalidInputError(
                "ImageOptions.decode_timeout must be None or a positive number of seconds, "
                f"got {timeout!r:.32}"
            )

        for name in (
            "max_output_pixels",
            "max_jpeg_scans",
            "max_jpeg_segments",
            "max_png_chunks",
            "max_decode_bytes",
        ):
            limit = getattr(self, name)
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InvalidInputError(
                    f"ImageOptions.{name} must be a positive int, got {limit!r:.32}"
                )

        if self.decode not in _DECODES:
            raise InvalidInputError(
                f"ImageOptions.decode must be one of {list(_DECODES)}, "
                f"got {str(self.decode)[:32]!r}"
            )

        formats = frozenset(f.upper() for f in self.formats)
        unknown = formats - DEFAULT_FORMATS - _OPT_IN_FORMATS
        if unknown:
            raise InvalidInputError(
                f"formats {sorted(unknown)} cannot be enabled; valid: "
                f"{sorted(DEFAULT_FORMATS | _OPT_IN_FORMATS)}"
            )
        object.__setattr__(self, "formats", formats)
        if self.max_source_pixels < 1 or not self.max_aspect_ratio >= 1:
            raise InvalidInputError("max_source_pixels must be >= 1 and max_aspect_ratio >= 1")


DEFAULT_OPTIONS = ImageOptions()


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What the header says, before decoding.

    ``width``/``height`` are as stored; ``display_width``/``display_height`` after the EXIF
    orientation (swapped for orientations 5-8) when ``ImageOptions.exif_transpose`` is on.
    ``frames`` is 1 for a still image and 2 for an animated one ("more than one"; frames
    are not counted, since counting walks the whole file).
    """

    format: str
    mode: str
    width: int
    height: int
    orientation: int
    frames: int

    @property
    def display_size(self) -> tuple[int, int]:
        """``(height, width)`` as displayed (after orientation)."""
        if self.orientation in (5, 6, 7, 8):
            return self.width, self.height
        return self.height, self.width


@contextmanager
def quiet_pillow() -> Iterator[None]:
    """Keep Pillow's warnings (bomb, malformed MPO) out of the caller; log them instead.

    Entered once per decode. ``warnings.catch_warnings`` swaps process-wide filters, so
    concurrent decodes in threads may briefly see each other's filters (Python < 3.14).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        logger.debug("pillow warning: %s", w.message)


def ensure_plugin(fmt: str) -> None:
    Image.init()
    if fmt in Image.OPEN:
        return
    try:
        import pillow_heif
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{fmt} images need the pillow-heif plugin: pip install 'vlprep[heif]'"
        ) from exc
    pillow_heif.register_heif_opener()
    if fmt == "AVIF" and "AVIF" not in Image.OPEN and hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()


@functools.lru_cache(maxsize=16)
def _registered_for(formats: frozenset[str], n_plugins: int) -> list[str]:
    return sorted(f for f in formats if f in Image.OPEN)


def _registered(formats: frozenset[str]) -> list[str]:
    """The allowed formats Pillow can open now (plugins such as pillow-heif register late)."""
    Image.init()
    return _registered_for(formats, len(Image.OPEN))


def open_image(data: bytes, options: ImageOptions | None = None) -> Image.Image:
    """Open ``data`` lazily (header only) and check it against the limits.

    Returns:
        A lazy ``PIL.Image.Image`` (pixels not yet decoded), first frame selected.

    Raises:
        DecodeError: empty, truncated or unrecognised data.
        UnsupportedFormatError: a recognised format outside ``options.formats``, or
            HEIF/AVIF without the plugin (the message names ``vlprep[heif]``).
        ResourceLimitError: more pixels, a higher aspect ratio, more JPEG scans or
            markers, more PNG chunks or a larger decode-memory estimate than allowed.
    """
    with quiet_pillow():
        return open_checked(data, options or DEFAULT_OPTIONS)


def open_checked(data: bytes, options: ImageOptions, *, decoding: bool = True) -> Image.Image:
    """Sniff, walk the structure and open the header; ``decoding=False`` for a header-only
    probe, which skips the JPEG scans (Pillow does not read past the first one to open).
    """
    if not data:
        raise DecodeError("empty image data (0 bytes)")
    sniffed = sniff_format(data[:512])
    if sniffed is not None and sniffed not in options.formats:
        hint = " (enable it with ImageOptions(formats=...))" if sniffed in _OPT_IN_FORMATS else ""
        raise UnsupportedFormatError(
            f"{sniffed} images are not accepted{hint}; accepted: {sorted(options.formats)}"
        )
    if sniffed == "JPEG":  # MPO too: its first frame is a JPEG
        check_jpeg_structure(
            data, options.max_jpeg_scans, options.max_jpeg_segments, whole=decoding
        )
    elif sniffed == "PNG":
        check_png_structure(data, options.max_png_chunks)
    elif sniffed == "WEBP" and (canvas := webp_canvas_size(data)) is not None:
        # Pillow's WebP plugin has libwebp allocate its canvases inside Image.open
        _check_limits(*canvas, options)
        _check_decode_bytes(*canvas, _WEBP_MIN_BYTES, "WEBP", options)
    if sniffed in PLUGIN_FORMATS:
        try:
            ensure_plugin(sniffed)
        except BackendUnavailableError as exc:
            raise UnsupportedFormatError(str(exc)) from exc
    try:
        image = Image.open(io.BytesIO(data), formats=_registered(options.formats))
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(
            f"image header claims more than {options.max_source_pixels} pixels "
            "(decompression bomb); refused before decoding"
        ) from exc
    except MemoryError as exc:
        raise ResourceLimitError("not enough memory to read the image header") from exc
    except _DECODER_ERRORS as exc:
        what = f"{sniffed} data is corrupt or truncated" if sniffed else "not a recognised image"
        raise DecodeError(f"cannot decode image ({len(data)} bytes): {what}") from _scrubbed(exc)
    _check_limits(image.width, image.height, options)
    transposed = options.exif_transpose and orientation_of(image) != 1
    per_pixel = decode_bytes_per_pixel(image, transposed=transposed)
    _check_decode_bytes(image.width, image.height, per_pixel, str(image.format), options)
    return image


_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_WEBP_CANVASES = 8  # libwebp's animation decoder: two RGBA canvases, alive with the image
_WEBP_FRAME_COPY = 4  # ... and the frame handed to Pillow as a bytes copy while loading
_WEBP_MIN_BYTES = 4 + _WEBP_CANVASES + _WEBP_FRAME_COPY


def decode_bytes_per_pixel(image: Image.Image, *, transposed: bool = False) -> int:
    """Estimated peak bytes per source pixel of decoding ``image`` to upright RGB.

    ``stored + resident + max(transient, rotated copy, conversion)``: the image as Pillow
    stores it (1 byte per pixel for 1/L/P, 2 for 16-bit, otherwise 4), what the decoder
    keeps alive with it (libwebp's two RGBA canvases), what it frees after loading
    (libjpeg's 64 int16 coefficients per 8x8 block and component for a progressive JPEG,
    libwebp's frame copy), the rotated copy (``transposed``) and :func:`to_rgb`'s
    allocations. Within 0.3 bytes per pixel of the peak RSS measured for JPEG (baseline,
    progressive, CMYK), PNG (L, RGB, RGBA, LA, P+tRNS, 16-bit, APNG), GIF, BMP and WebP
    (still and animated) at 16 MP; an overestimate for 4:2:0 progressive JPEGs.
    """
    stored = _STORED_BYTES.get(image.mode, 4)
    resident = transient = 0
    if image.format == "WEBP":
        resident, transient = _WEBP_CANVASES, _WEBP_FRAME_COPY
    elif image.format in _DCT_SCALED_FORMATS and image.info.get("progressive"):
        transient = 2 * max(1, int(getattr(image, "layers", 0) or 3))
    if image.mode == "RGB" and "transparency" not in image.info:
        conversion = 0
    elif image.mode.startswith("I") or image.mode == "F":
        conversion = 1 + 4  # the L band output, then RGB
    elif _has_transparency(image):
        conversion = (0 if image.mode == "RGBA" else 4) + 4 + 1  # RGBA, RGB canvas, alpha
    else:
        conversion = 4
    return stored + resident + max(transient, stored if transposed else 0, conversion)


def _check_decode_bytes(
    width: int, height: int, per_pixel: int, what: str, options: ImageOptions
) -> None:
    needed = width * height * per_pixel
    if needed > options.max_decode_bytes:
        raise ResourceLimitError(
            f"decoding this {width}x{height} {what} image needs about {needed >> 20} MiB "
            f"({per_pixel} bytes per pixel), above ImageOptions.max_decode_bytes = "
            f"{options.max_decode_bytes >> 20} MiB; refused before decoding (raise "
            "max_decode_bytes if intended)"
        )


def _check_limits(width: int, height: int, options: ImageOptions) -> None:
    if width < 1 or height < 1:
        raise DecodeError(f"image header has an empty size {width}x{height}")
    pixels = width * height
    if pixels > options.max_source_pixels:
        raise ResourceLimitError(
            f"image is {width}x{height} = {pixels} pixels, above the limit of "
            f"{options.max_source_pixels}; raise ImageOptions.max_source_pixels if intended"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > options.max_aspect_ratio:
        raise ResourceLimitError(
            f"image is {width}x{height}: aspect ratio {ratio:g} exceeds the limit of "
            f"{options.max_aspect_ratio:g}; crop or pad it first"
        )


def orientation_of(image: Image.Image) -> int:
    """The EXIF Orientation (1-8) of ``image``; 1 when absent or unreadable.

    Reads only metadata already parsed with the header (``exif`` or an ImageMagick
    ``Raw profile type exif`` PNG chunk): never decodes pixels. A PNG whose ``eXIf`` chunk
    follows the pixel data shows its orientation only once the image is loaded.
    """
    if "exif" not in image.info and "Raw profile type exif" not in image.info:
        return 1
    try:
        # The base-class method: PngImageFile.getexif() would decode the pixels first.
        value = Image.Image.getexif(image).get(_ORIENTATION_TAG, 1)
    except _DECODER_ERRORS:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def probe_header(data: bytes, options: ImageOptions | None = None) -> ImageHeader:
    """Header facts of ``data`` without decoding pixels (see :func:`open_image`)."""
    options = options or DEFAULT_OPTIONS
    with quiet_pillow():
        image = open_checked(data, options, decoding=False)
        orientation = orientation_of(image) if options.exif_transpose else 1
        if options.exif_transpose and image.format == "PNG":
            orientation = _late_png_orientation(image, data, options, orientation)
        frames = _frames_hint(image)
    return ImageHeader(
        format=str(image.format),
        mode=image.mode,
        width=image.width,
        height=image.height,
        orientation=orientation,
        frames=frames,
    )


def _late_png_orientation(
    image: Image.Image, data: bytes, options: ImageOptions, orientation: int
) -> int:
    """The orientation a decode of this PNG applies, read from the header's bytes.

    Pillow sees an ``eXIf`` chunk that follows the pixel data only once it loads them,
    and :func:`finish` then applies it (unless EXIF came before the pixels: Pillow keeps
    what it read first). ``data`` cut before ``IEND`` gives the header's answer.
    """
    if "exif" in image.info or "Raw profile type exif" in image.info:
        return orientation
    late, _ = png_late_exif(data, options.max_png_chunks)
    if late is None:
        return orientation
    try:
        exif = Image.Exif()
        exif.load(late)
        value = exif.get(_ORIENTATION_TAG, 1)
    except _DECODER_ERRORS:
        return orientation
    return value if isinstance(value, int) and value in _TRANSPOSE else orientation


def _frames_hint(image: Image.Image) -> int:
    """1 for a still image, 2 for an animated one: frames are never counted.

    Counting (``n_frames``) walks every frame or IFD of the file, which a 10,000-frame GIF
    or a looping TIFF turns into unbounded work; ``is_animated`` looks at one more frame.
    """
    try:
        return 2 if getattr(image, "is_animated", False) else 1
    except _DECODER_ERRORS as exc:
        raise DecodeError(
            f"cannot read the frame table of this {image.format} image ({type(exc).__name__})"
        ) from exc


_ADDRESS = re.compile(r"<[^<>]{0,80} at 0x[0-9A-Fa-f]+>")


def _scrubbed(exc: BaseException) -> BaseException:
    """``exc`` for chaining, with object addresses removed from its text.

    Pillow's text names the buffer (``<_io.BytesIO object at 0x...>``): a heap address in
    every log that prints the chain. The cause keeps its class and traceback.
    """
    text = str(exc)
    if not _ADDRESS.search(text):
        return exc
    clean = _ADDRESS.sub("<buffer>", text)
    try:
        scrubbed = type(exc)(clean)
    except Exception:
        scrubbed = RuntimeError(f"{type(exc).__name__}: {clean}")
    return scrubbed.with_traceback(exc.__traceback__)


_BAND_PIXELS = 1 << 20  # pixels per band of the high-depth conversion (8 MiB of int64)


def _bands(image: Image.Image) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(top, bottom, samples)`` for consecutive row bands of about ``_BAND_PIXELS``."""
    rows = max(1, _BAND_PIXELS // image.width)
    for top in range(0, image.height, rows):
        bottom = min(top + rows, image.height)
        yield top, bottom, np.asarray(image.crop((0, top, image.width, bottom)))


def _scale_high_depth(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit int or float samples -> mode ``L``, one row band at a time.

    Whole-image arithmetic made an int64 copy (and two more temporaries) of every sample:
    a 172 KB 16-bit PNG of 88 MP cost 1.78 GiB. Bands keep the extra memory at a few MiB
    besides the 1-byte output, with the same per-sample arithmetic (bit-identical).
    """
    out = np.empty((image.height, image.width), dtype=np.uint8)
    if image.mode == "F":
        # np.max, not max(): a NaN anywhere must win, as in a whole-image max
        peak = float(np.max([b.max(initial=0.0) for _, _, b in _bands(image)], initial=0.0))
        for top, bottom, band in _bands(image):
            scaled = band * 255.0 if peak <= 1.0 else band
            out[top:bottom] = np.clip(np.rint(scaled), 0, 255)
    else:
        scale = image.mode.startswith("I;16") or any(
            int(b.max(initial=0)) > 255 for _, _, b in _bands(image)
        )
        for top, bottom, band in _bands(image):
            wide = band.astype(np.int64)
            if scale:
                wide = (np.clip(wide, 0, 65535) + 128) // 257
            out[top:bottom] = np.clip(wide, 0, 255)
    return Image.fromarray(out, mode="L")


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB.

    RGB images are returned as is (no copy). RGBA is pasted on white with the alpha as
    mask, exactly as qwen-vl-utils does; every other mode with transparency (LA, PA, P or
    L/RGB/1 with ``tRNS``) is first expanded to RGBA and composited the same way.
    16-bit and 32-bit samples are scaled to 8 bit; CMYK, YCbCr, LAB, P and L convert.
    """
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _scale_high_depth(image).convert("RGB")
    if _has_transparency(image):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def fast_plan(image: Image.Image, options: ImageOptions) -> tuple[tuple[int, int], bool] | None:
    """``((height, width) upright, turned)`` of a JPEG decoded at reduced scale, else None.

    ``turned``: the EXIF orientation swaps the sides (5-8, when applied).
    """
    if options.decode != "fast" or image.format not in _DCT_SCALED_FORMATS:
        return None
    turned = options.exif_transpose and orientation_of(image) in (5, 6, 7, 8)
    upright = (image.width, image.height) if turned else (image.height, image.width)
    return upright, turned


def apply_draft(image: Image.Image, target: tuple[int, int], turned: bool) -> None:
    """Have libjpeg decode ``image`` at the largest DCT scale still ``>=`` the upright target."""
    stored = (target[0], target[1]) if turned else (target[1], target[0])  # (w, h) as stored
    try:
        image.draft(None, stored)
    except _DECODER_ERRORS as exc:
        raise DecodeError(
            f"cannot decode {image.format} pixels: the data is corrupt or truncated"
        ) from exc


def finish_image(image: Image.Image, options: ImageOptions) -> Image.Image:
    """Decode the pixels of an image from :func:`open_image`, orient it, convert it to RGB."""
    with quiet_pillow():
        return finish(image, options.exif_transpose)


def orient_and_convert(image: Image.Image, exif_transpose: bool = True) -> Image.Image:
    """Apply the EXIF orientation (when asked) and convert to RGB (see :func:`to_rgb`).

    For images that are already decoded (``PIL.Image`` sources); a lazy image is loaded.
    """
    with quiet_pillow():
        return finish(image, exif_transpose)


def finish(image: Image.Image, exif_transpose: bool) -> Image.Image:
    try:
        image.load()
        if exif_transpose:
            method = _TRANSPOSE.get(orientation_of(image))
            if method is not None:
                image = image.transpose(method)
        return to_rgb(image)
    except MemoryError as exc:
        raise ResourceLimitError("not enough memory to decode the image") from exc
    except _DECODER_ERRORS as exc:
        raise DecodeError(
            f"cannot decode {image.format or 'image'} pixels: the data is corrupt or truncated"
        ) from exc
