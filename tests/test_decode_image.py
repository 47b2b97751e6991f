"""Hostile and unusual image bytes: typed errors or the documented correct result, fast."""

from __future__ import annotations

import builtins
import dataclasses
import io
import os
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import HOSTILE, encode, media_dir, photo
from vlprep import (
    DecodeError,
    ImageOptions,
    InvalidInputError,
    ResourceLimitError,
    UnsupportedFormatError,
    VlprepError,
    fetch_image,
)
from vlprep._decode.image import decode_image, open_image, probe_header


def png_header_only(width: int, height: int, extra_chunks: bytes = b"") -> bytes:
    """A PNG whose IHDR claims width x height, with one tiny (wrong) IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + extra_chunks
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


EXPECTED_HOSTILE: dict[str, Any] = {
    "decompression_bomb.gif": ResourceLimitError,
    "decompression_bomb.ico": UnsupportedFormatError,
    "decompression_bomb_extents.gif": "ok",
    "hopper.fits": UnsupportedFormatError,
    "hopper.psd": UnsupportedFormatError,
    "hopper.tif": UnsupportedFormatError,
    "hopper_16bit.pgm": UnsupportedFormatError,
    "hopper_bad_exif.jpg": "ok",
    "junk_jpeg_header.jpg": "ok",
    "pngtest_bad.png.bin": DecodeError,
    "sugarshack_bad_mpo_header.jpg": "ok",
    "tRNS_null_1x1.png": "ok",
    "truncated_jpeg.jpg": DecodeError,
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.name)
def test_hostile_files(path: Path) -> None:
    expected = EXPECTED_HOSTILE[path.name]
    start = time.monotonic()
    if expected == "ok":
        image = fetch_image({"image": str(path)})
        assert image.mode == "RGB" and min(image.size) >= 28
    else:
        with pytest.raises(expected) as info:
            fetch_image({"image": str(path)})
        message = str(info.value)
        assert "0x" not in message and "BytesIO" not in message
    assert time.monotonic() - start < 5


def test_junk_header_decodes_full_size() -> None:
    assert (
        probe_header((media_dir() / "hostile" / "junk_jpeg_header.jpg").read_bytes()).width
        == 1024
    )


def test_opt_in_formats() -> None:
    hostile = media_dir() / "hostile"
    tiff = decode_image(
        (hostile / "hopper.tif").read_bytes(), ImageOptions(formats=frozenset({"TIFF"}))
    )
    assert tiff.size == (128, 128) and tiff.mode == "RGB"
    pgm = (hostile / "hopper_16bit.pgm").read_bytes()
    gray = decode_image(pgm, ImageOptions(formats=frozenset({"PPM"})))
    with Image.open(io.BytesIO(pgm)) as raw:
        source = np.asarray(raw).astype(np.float64)
    out = np.asarray(gray)[..., 0].astype(np.float64)
    # 16-bit samples scaled, not clipped to white: the mean follows source / 257.
    assert out.mean() == pytest.approx(source.mean() / 257, abs=0.6)
    assert out.max() < 255 or source.max() > 65000


def test_16bit_png_is_scaled_not_clipped() -> None:
    values = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    out = np.asarray(decode_image(data))[..., 0].astype(int)
    expected = np.floor(values.astype(np.float64) / 257 + 0.5)
    assert np.abs(out - expected).max() <= 1
    assert (out == 255).mean() < 0.01 and out.min() == 0  # clipping would make ~99% white


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (b"", DecodeError, "empty"),
        (b"\x00" * 100, DecodeError, "not a recognised image"),
        (b"<html><body>404</body></html>", DecodeError, "not a recognised image"),
        (b"%PDF-1.4\n...", UnsupportedFormatError, "PDF"),
        (
            b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>",
            UnsupportedFormatError,
            "SVG",
        ),
        (b"%!PS-Adobe-3.0 EPSF-3.0", UnsupportedFormatError, "EPS"),
    ],
)
def test_bad_bytes(data: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        fetch_image({"image": data})
    assert "0x" not in str(info.value)


def test_truncated_half_jpeg() -> None:
    data = encode(photo(400, 300), "JPEG")
    with pytest.raises(DecodeError, match="corrupt or truncated"):
        fetch_image({"image": data[: len(data) // 2]})


def test_tiny_image_upscaled_like_qwen() -> None:
    assert fetch_image({"image": encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")}).size == (
        56,
        56,
    )


def test_thin_image_small_budget_never_zero() -> None:
    data = encode(photo(5600, 28), "PNG")
    assert fetch_image({"image": data, "max_pixels": 128 * 28 * 28}).size == (4480, 28)


@pytest.mark.parametrize(("w", "h"), [(100000, 1), (1, 300)])
def test_aspect_ratio_from_header_without_decoding(
    w: int, h: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = png_header_only(w, h)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded pixels"))
    with pytest.raises(ResourceLimitError, match="aspect ratio"):
        open_image(data)


@pytest.mark.parametrize(("w", "h"), [(30000, 30000), (10000, 10000)])
def test_pixel_bombs_refused_before_decoding(
    w: int, h: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = png_header_only(w, h)
    assert len(data) < 1_000_000
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded pixels"))
    with pytest.raises(ResourceLimitError, match="pixels"):
        fetch_image({"image": data})


def test_huge_text_chunk_is_a_decode_error() -> None:
    # iTXt, compressed flag set: 100 MB of text behind a ~100 KB chunk (Pillow caps at 1 MB).
    body = b"Comment\x00\x01\x00\x00\x00" + zlib.compress(b"a" * (100 * 1024 * 1024), 9)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    good = encode(Image.new("RGB", (8, 8)), "PNG")
    data = good[:33] + chunk(b"iTXt", body) + good[33:]
    with pytest.raises(DecodeError):
        fetch_image({"image": data})


def test_first_frame_of_animation_only() -> None:
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert fetch_image({"image": buf.getvalue()}).getpixel((10, 10))[0] > 200
    webp = io.BytesIO()
    frames[1].save(webp, "WEBP", save_all=True, append_images=[frames[0]], lossless=True)
    assert fetch_image({"image": webp.getvalue()}).getpixel((10, 10))[1] > 200


def test_cmyk_matches_its_rgb_twin() -> None:
    images = media_dir() / "images"
    cmyk = np.asarray(decode_image((images / "pil_sample_cmyk.jpg").read_bytes())).astype(int)
    rgb = np.asarray(decode_image((images / "pil_sample_rgb.jpg").read_bytes())).astype(int)
    assert cmyk.shape == rgb.shape
    # Pillow's profile-less CMYK conversion (as qwen-vl-utils): measured mean 4.7 levels
    # from the colour-managed RGB twin; a wrong inversion would be ~100+.
    assert np.abs(cmyk - rgb).mean() < 6
    assert np.abs(cmyk.mean(axis=(0, 1)) - rgb.mean(axis=(0, 1))).max() < 8


@pytest.mark.parametrize(
    "name",
    [
        "uncompressed_la.png",
        "pil123p.png",
        "p_trns_single.png",
        "transparent.png",
        "caption_6_33_22.png",
    ],
)
def test_transparency_is_composited_on_white(name: str) -> None:
    data = (media_dir() / "images" / name).read_bytes()
    out = np.asarray(decode_image(data)).astype(int)
    with Image.open(io.BytesIO(data)) as raw:
        alpha = np.asarray(raw.convert("RGBA"))[..., 3]
    assert (alpha == 0).any()
    assert (out[alpha == 0] == 255).all()


def test_orientation_tags_and_bad_exif() -> None:
    images = media_dir() / "images"
    base = np.asarray(decode_image((images / "hopper.jpg").read_bytes())).astype(int)
    for i in range(2, 9):
        header = probe_header((images / f"hopper_orientation_{i}.jpg").read_bytes())
        assert header.orientation == i
        rotated = np.asarray(
            decode_image((images / f"hopper_orientation_{i}.jpg").read_bytes())
        ).astype(int)
        # Every orientation file shows the same upright portrait (within JPEG noise).
        assert np.abs(rotated - base).mean() < 12, i
    bad = media_dir() / "hostile" / "hopper_bad_exif.jpg"
    assert probe_header(bad.read_bytes()).orientation == 1


def test_heif_without_plugin_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (media_dir() / "images" / "hopper.heif").read_bytes()
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "OPEN", {k: v for k, v in PILImage.OPEN.items() if k != "HEIF"})
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    real_import = builtins.__import__

    def no_heif(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pillow_heif":
            raise ImportError("no pillow_heif")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_heif)
    with pytest.raises(UnsupportedFormatError, match=r"vlprep\[heif\]"):
        fetch_image({"image": data})


def test_heif_with_plugin_decodes() -> None:
    image = fetch_image({"image": str(media_dir() / "images" / "hopper.heif")})
    assert image.size == (140, 140)


def test_options_validation() -> None:
    with pytest.raises(InvalidInputError, match="cannot be enabled"):
        ImageOptions(formats=frozenset({"PSD"}))
    assert ImageOptions(formats=frozenset({"jpeg"})).formats == frozenset({"JPEG"})


def test_custom_pixel_limit() -> None:
    data = encode(photo(200, 100), "PNG")
    with pytest.raises(ResourceLimitError, match="20000 pixels"):
        fetch_image({"image": data}, image_options=ImageOptions(max_source_pixels=10_000))


def test_every_error_is_a_vlprep_error() -> None:
    for data in (
        b"",
        b"GIF89a",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0",
        b"BM" + b"\x00" * 60,
        b"RIFF\x00\x00\x00\x00WEBP",
    ):
        with pytest.raises(VlprepError):
            fetch_image({"image": data})


def test_probe_reads_orientation_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    images = media_dir() / "images"
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded pixels"))
    # ImageMagick stores EXIF in a PNG text chunk; the header probe still sees Orientation 3.
    png = probe_header((images / "exif_imagemagick_orientation.png").read_bytes())
    assert (png.format, png.orientation) == ("PNG", 3)
    jpeg = probe_header((images / "hopper_orientation_6.jpg").read_bytes())
    assert (jpeg.orientation, jpeg.display_size) == (6, (128, 128))
    assert probe_header((images / "hopper.png").read_bytes()).orientation == 1


# ------------------------------------------------ structure limits (scans, markers, chunks)


def _progressive_jpeg(side: int) -> bytes:
    """A smooth ``side x side`` progressive JPEG, cheap to encode (no per-pixel noise)."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (17, 17, 3), dtype=np.uint8))
    return encode(small.resize((side, side), Image.Resampling.BILINEAR), "JPEG", progressive=True)


# An AC refinement scan of the luma component (Ss=1, Se=63, Ah=1, Al=0) with no entropy data:
# libjpeg still walks every luma block of the image for it.
_EMPTY_SCAN = b"\xff\xda\x00\x08\x01\x01\x00\x01\x3f\x10"


def _with_empty_scans(data: bytes, count: int) -> bytes:
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + _EMPTY_SCAN * count + data[eoi:]


@pytest.mark.timeout(30)
def test_jpeg_stuffed_with_empty_scans_is_refused_before_decoding() -> None:
    # 1024x1024 with 20,000 empty scans (200 KB): measured 4.3 s of libjpeg before the
    # scan limit (the red team's 4096x4096 one of 833 KB: 24-31 s); now refused from the
    # markers.
    bomb = _with_empty_scans(_progressive_jpeg(1024), 20_000)
    for options in (ImageOptions(), ImageOptions(decode="fast")):
        start = time.monotonic()
        with pytest.raises(ResourceLimitError, match=r"more than 100 scans.*max_jpeg_scans"):
            fetch_image({"image": bomb, "max_pixels": 64 * 28 * 28}, image_options=options)
        assert time.monotonic() - start < 1.0
    # the header probe does not read the scans (nor does Pillow to open it)
    assert probe_header(bomb).width == 1024


def test_jpeg_scan_limit_is_an_option() -> None:
    data = _progressive_jpeg(64)
    scans = data.count(b"\xff\xda")  # no 0xFFDA inside this small file's entropy data
    assert 5 <= scans <= 12  # an ordinary progressive JPEG
    padded = _with_empty_scans(data, 150)
    with pytest.raises(ResourceLimitError, match="max_jpeg_scans"):
        decode_image(padded)
    assert decode_image(padded, ImageOptions(max_jpeg_scans=scans + 150)).size == (64, 64)
    with pytest.raises(ResourceLimitError, match="max_jpeg_scans"):
        decode_image(data, ImageOptions(max_jpeg_scans=scans - 1))
    # one interleaved baseline scan: libjpeg refuses a second one, so the walk stops there
    baseline = encode(photo(64, 64), "JPEG")
    assert decode_image(baseline, ImageOptions(max_jpeg_scans=1)).size == (64, 64)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidInputError, match="max_jpeg_scans"):
            ImageOptions(max_jpeg_scans=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "padding",
    [b"\xff\xfe\x00\x02" * 500_000, b"\xff" * (2 << 20), b"\x00" * (4 << 20)],
    ids=["empty-comments", "fill-bytes", "junk"],
)
def test_jpeg_header_padding_is_bounded(padding: bytes) -> None:
    # Pillow steps over each segment (about 1.3 us) or padding byte (about 0.7 us) in
    # Python before the first scan: 8 M empty comments fit in 32 MiB.
    data = encode(photo(32, 32), "JPEG")
    at = 4 + int.from_bytes(data[4:6], "big")  # after SOI and APP0: the sniffer sees a JPEG
    bomb = data[:at] + padding + data[at:]
    start = time.monotonic()
    with pytest.raises(ResourceLimitError, match="max_jpeg_segments"):
        probe_header(bomb)
    with pytest.raises(ResourceLimitError, match="max_jpeg_segments"):
        decode_image(bomb)
    assert time.monotonic() - start < 0.5
    few = data[:at] + padding[:400] + data[at:]
    assert decode_image(few).size == (32, 32)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.parametrize("where", ["before IDAT", "after IDAT"])
def test_png_with_many_chunks_is_refused_before_decoding(where: str) -> None:
    # 500,000 empty private chunks (6 MB): 2.4-2.8 s of Pillow's chunk loop before the
    # limit (2.5 M in 30 MB: 6.3 s reported); now refused from the chunk headers.
    good = encode(photo(16, 16), "PNG")
    at = 33 if where == "before IDAT" else good.rindex(b"IEND") - 4
    bomb = good[:at] + _png_chunk(b"quIt", b"") * 500_000 + good[at:]
    start = time.monotonic()
    with pytest.raises(ResourceLimitError, match=r"more than 10000 chunks.*max_png_chunks"):
        decode_image(bomb)
    with pytest.raises(ResourceLimitError, match="max_png_chunks"):
        probe_header(bomb)
    assert time.monotonic() - start < 0.5


def test_png_chunk_limit_counts_the_first_frame_only() -> None:
    still = encode(photo(16, 16), "PNG")  # IHDR, IDAT, IEND
    with pytest.raises(ResourceLimitError, match="max_png_chunks"):
        decode_image(still, ImageOptions(max_png_chunks=2))
    assert decode_image(still, ImageOptions(max_png_chunks=3)).size == (16, 16)
    frames = [Image.new("RGB", (16, 16), (i * 20, 0, 0)) for i in range(12)]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    # IHDR acTL fcTL IDAT, then 11 frames of fcTL + fdAT: Pillow stops at the second fcTL
    assert buf.getvalue().count(b"fdAT") == 11
    image = decode_image(buf.getvalue(), ImageOptions(max_png_chunks=5))
    assert image.getpixel((0, 0)) == (0, 0, 0)
    for bad in (0, 2.0, False):
        with pytest.raises(InvalidInputError, match="max_png_chunks"):
            ImageOptions(max_png_chunks=bad)  # type: ignore[arg-type]


# ------------------------------------------------ decode memory (16-bit, WebP canvases)

_PEAK_CHILD = r"""
import json, os, resource, sys, time, types

# vlprep as a bare namespace package: its __init__ imports torch, the decoder needs none
package = types.ModuleType("vlprep")
package.__path__ = [sys.argv[1]]
sys.modules["vlprep"] = package
from vlprep._decode.image import ImageOptions, decode_image
from vlprep._errors import VlprepError

with open(sys.argv[2], "rb") as fh:
    data = fh.read()
options = ImageOptions(**json.loads(sys.argv[3]))


def peak_rss():
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak across exec into
    # ru_maxrss, so a child of a large pytest process would see no growth at all
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) * 1024


with open("/proc/self/statm") as fh:
    size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
_, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), hard))  # never the whole machine
before = peak_rss()
start = time.monotonic()
try:
    image = decode_image(data, options)
    result = ["ok", image.mode, image.width, image.height]
except VlprepError as exc:
    result = [type(exc).__name__, str(exc)]
except MemoryError:
    result = ["MemoryError", ""]
grown = peak_rss() - before
print(json.dumps({"result": result, "grown": grown, "seconds": time.monotonic() - start}))
"""


def _decode_in_child(path: Path, **options: Any) -> dict[str, Any]:
    """Decode ``path`` in a child capped at its size + 1 GiB; its result and peak RSS growth."""
    import json
    import subprocess

    import vlprep

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _PEAK_CHILD,
            str(Path(vlprep.__file__).parent),
            str(path),
            json.dumps(options),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"child died ({proc.returncode}): {proc.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _gray16_png(width: int, height: int) -> bytes:
    """A ``width x height`` 16-bit grayscale PNG of zeros (compresses ~1000:1), built row by row."""
    packer = zlib.compressobj(9)
    row = bytes(1 + 2 * width)
    idat = b"".join([packer.compress(row) for _ in range(height)] + [packer.flush()])
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@pytest.mark.timeout(60)
def test_16bit_png_peak_memory_follows_the_8bit_output(tmp_path: Path) -> None:
    # 4000x4000 16-bit (31 KB): whole-image int64 arithmetic grew the peak RSS by 323 MiB
    # (20 bytes per pixel; 1.78 GiB for a 172 KB 9400x9400 one). Now the 2-byte source,
    # the 1-byte L result and the 4-byte RGB image (Pillow stores RGB in 4): 112 MiB.
    path = tmp_path / "gray16.png"
    path.write_bytes(_gray16_png(4000, 4000))
    report = _decode_in_child(path)
    assert report["result"] == ["ok", "RGB", 4000, 4000]
    assert report["grown"] < 4000 * 4000 * 8.5, report


def test_high_depth_bands_are_bit_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    from vlprep._decode import _pillow as image_module

    monkeypatch.setattr(image_module, "_BAND_PIXELS", 1000)  # 7 rows per band, 15 bands
    rng = np.random.default_rng(3)
    samples = rng.integers(0, 65536, (101, 131), dtype=np.uint16)
    floats = rng.random((101, 131), dtype=np.float32)
    floats[60, 5] = 1.5  # one value above 1 in a later band: nothing is multiplied by 255
    small = rng.integers(-5, 200, (101, 131), dtype=np.int32)  # all <= 255: clipped, not scaled
    cases = {
        "I;16": (Image.fromarray(samples), (samples.astype(np.int64) + 128) // 257),
        "I small": (Image.fromarray(small), np.clip(small, 0, 255)),
        "F": (Image.fromarray(floats), np.clip(np.rint(floats), 0, 255)),
    }
    for name, (source, expected) in cases.items():
        out = np.asarray(image_module._scale_high_depth(source))
        assert np.array_equal(out, expected.astype(np.uint8)), name


def _webp_animation(width: int, height: int) -> bytes:
    """An animated WebP: a ``width x height`` canvas, two 1x1 lossless frames (~140 bytes)."""

    def riff(fourcc: bytes, body: bytes) -> bytes:
        return fourcc + struct.pack("<I", len(body)) + body + b"\0" * (len(body) % 2)

    vp8l = encode(Image.new("RGBA", (1, 1), (255, 0, 0, 128)), "WEBP", lossless=True)[12:]
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    frame = bytes(12) + (100).to_bytes(3, "little") + b"\0"  # at 0,0; 1x1; 100 ms
    body = b"WEBP" + riff(b"VP8X", b"\x12\0\0\0" + canvas) + riff(b"ANIM", bytes(6))
    body += riff(b"ANMF", frame + vp8l) * 2
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.timeout(60)
def test_webp_canvas_counts_against_the_decode_memory_limit(tmp_path: Path) -> None:
    # 9400x9400 = 88 M pixels passes max_source_pixels, but libwebp keeps two RGBA canvases
    # and Pillow a copy of the frame: +1.35-1.4 GiB for a 140-byte file. Refused from the
    # header now, before libwebp allocates anything.
    path = tmp_path / "canvas.webp"
    path.write_bytes(_webp_animation(9400, 9400))
    assert path.stat().st_size < 400
    report = _decode_in_child(path)
    kind, message = report["result"]
    assert kind == "ResourceLimitError", report
    assert "9400x9400" in message and "max_decode_bytes" in message, message
    assert report["grown"] < 64 << 20 and report["seconds"] < 1.0, report
    # the same canvas decodes once the limit allows it (a smaller one, to stay cheap)
    small = _webp_animation(300, 200)
    with pytest.raises(ResourceLimitError, match="max_decode_bytes"):
        decode_image(small, ImageOptions(max_decode_bytes=300 * 200 * 17 - 1))
    image = decode_image(small, ImageOptions(max_decode_bytes=300 * 200 * 17))
    assert image.size == (300, 200) and image.getpixel((0, 0)) == (255, 127, 127)


def test_decode_memory_estimate_per_path() -> None:
    from vlprep._decode.image import decode_bytes_per_pixel

    gray = Image.linear_gradient("L").resize((64, 48))
    rgb = Image.merge("RGB", [gray, gray, gray])

    def per_pixel(data: bytes) -> int:
        return decode_bytes_per_pixel(open_image(data))

    assert per_pixel(encode(rgb, "JPEG")) == 4  # the RGB image only
    assert per_pixel(encode(rgb, "JPEG", progressive=True)) == 4 + 6  # libjpeg's coefficients
    assert per_pixel(encode(rgb, "PNG")) == 4
    assert per_pixel(encode(gray, "PNG")) == 1 + 4
    assert per_pixel(encode(rgb.convert("RGBA"), "PNG")) == 4 + 4 + 1
    assert per_pixel(encode(gray.convert("LA"), "PNG")) == 4 + 4 + 4 + 1
    assert per_pixel(encode(gray.convert("P"), "PNG", transparency=0)) == 1 + 4 + 4 + 1
    assert per_pixel(_gray16_png(64, 48)) == 2 + 1 + 4
    assert per_pixel(encode(rgb, "WEBP", lossless=True)) == 4 + 8 + 4
    rotated = (media_dir() / "images" / "hopper_orientation_6.jpg").read_bytes()
    assert decode_bytes_per_pixel(open_image(rotated), transposed=True) == 4 + 4
    for bad in (0, -1, 1.0, True):
        with pytest.raises(InvalidInputError, match="max_decode_bytes"):
            ImageOptions(max_decode_bytes=bad)  # type: ignore[arg-type]


# ------------------------------------------------ ImageOptions(decode_timeout=...)

_LAX = {"max_jpeg_scans": 1_000_000, "max_jpeg_segments": 1_000_000}


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, int]]:
    """``(ChildProcess, pid)`` of every decoder child started during the test."""
    from vlprep._decode import _child

    started: list[tuple[Any, int]] = []
    real_init = _child.ChildProcess.__init__

    def recording(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        started.append((self, self.proc.pid))

    monkeypatch.setattr(_child.ChildProcess, "__init__", recording)
    return started


@pytest.mark.timeout(30)
def test_decode_timeout_kills_a_slow_decode(children: list[tuple[Any, int]]) -> None:
    # The scan limit raised out of the way: 4.3 s of libjpeg in process (see above).
    bomb = _with_empty_scans(_progressive_jpeg(1024), 20_000)
    start = time.monotonic()
    with pytest.raises(ResourceLimitError, match=r"decode_timeout=1 s.*ImageOptions\.decode_timeout"):
        fetch_image({"image": bomb}, image_options=ImageOptions(**_LAX, decode_timeout=1.0))
    assert time.monotonic() - start < 3.0
    ((child, pid),) = children
    assert child.proc is None  # killed and reaped
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.timeout(60)
def test_isolated_decode_gives_the_same_pixels_and_errors() -> None:
    images = media_dir() / "images"
    isolated = ImageOptions(decode_timeout=20.0)
    for name in ("hopper_orientation_6.jpg", "transparent.png", "flower.webp"):
        data = (images / name).read_bytes()
        got, expected = decode_image(data, isolated), decode_image(data)
        assert got.mode == "RGB" and got.size == expected.size
        assert np.array_equal(np.asarray(got), np.asarray(expected)), name
    gray16 = _gray16_png(40, 30)
    assert np.array_equal(np.asarray(decode_image(gray16, isolated)), np.asarray(decode_image(gray16)))
    # decode="fast": the target comes from the header, the JPEG is drafted in the child
    fast = ImageOptions(decode="fast", decode_timeout=20.0)
    data = encode(photo(400, 300), "JPEG")
    image, target = fetch_image_sized(data, fast)
    same, same_target = fetch_image_sized(data, ImageOptions(decode="fast"))
    assert target == same_target and image.size == same.size == (100, 75)
    assert np.array_equal(np.asarray(image), np.asarray(same))
    for bad, options in (
        (b"\x00" * 100, ImageOptions(decode_timeout=20.0)),
        (data, ImageOptions(decode_timeout=20.0, max_source_pixels=1000)),
    ):
        with pytest.raises(VlprepError) as direct:
            decode_image(bad, dataclasses.replace(options, decode_timeout=None))
        with pytest.raises(VlprepError) as inside:
            decode_image(bad, options)
        assert type(inside.value) is type(direct.value)
        assert str(inside.value) == str(direct.value)


def fetch_image_sized(data: bytes, options: ImageOptions) -> tuple[Image.Image, tuple[int, int]]:
    from vlprep._decode.image import decode_image_for

    return decode_image_for(data, options, lambda h, w: (h // 4, w // 4))


@pytest.mark.timeout(30)
def test_isolated_decoder_crash_is_a_decode_error(children: list[tuple[Any, int]]) -> None:
    import signal
    import threading

    bomb = _with_empty_scans(_progressive_jpeg(1024), 20_000)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            decode_image(bomb, ImageOptions(**_LAX, decode_timeout=20.0))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    while not children and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # into the decode
    os.kill(children[0][1], signal.SIGSEGV)  # what a decoder bug does
    thread.join(20)
    assert len(outcome) == 1 and isinstance(outcome[0], DecodeError), outcome
    assert "image decoder crashed (SIGSEGV)" in str(outcome[0])


def test_decode_timeout_validation() -> None:
    assert ImageOptions().decode_timeout is None
    assert ImageOptions(decode_timeout=2).decode_timeout == 2
    for bad in (0, -1.0, float("nan"), float("inf"), True, "5"):
        with pytest.raises(InvalidInputError, match="decode_timeout"):
            ImageOptions(decode_timeout=bad)  # type: ignore[arg-type]
