"""Pixel deviation of the faster resize modes from the exact one, on the shared real videos.

Usage::

    python benchmarks/video_deviation.py [--nframes 8] [--media tests/media/videos]

For every video in the shared media folder (and the generated 720p benchmark clip when it
is cached), ``fetch_video`` runs with ``VideoOptions(resize=...)`` for ``"fast"`` and
``"decoder"`` and is compared with the default ``"exact"`` output of the same call (same
plan, same indices, same size). Reported per file and mode: PSNR (dB, peak 255), mean
absolute difference, 99th percentile and maximum of the absolute difference (levels), and
the mean signed difference (a bias shows up there). Prints a Markdown table.

``--truth`` adds a ground-truth check: frames with known RGB (two shared photos and a frame
of the generated benchmark footage) are encoded losslessly as 4:2:0 H.264 (``qp 0``), so the
only loss is the chroma subsampling, and each mode's output is compared with the original
RGB resized by the exact kernel, at half, 0.8x and double size.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MEDIA = HERE.parent / "tests" / "media" / "videos"  # bundled copies of the shared videos
IMAGES = MEDIA.parent / "images"
TRUTH_IMAGES = ("flower2.jpg", "hopper.png")
TRUTH_SCALES = (0.5, 0.8, 2.0)
BENCH_CLIP = HERE / "out" / "video" / "v1_1280x720_30fps_30s.mp4"
MODES = ("fast", "decoder")


def measure(path: Path, nframes: int) -> dict[str, Any]:
    """Deviation of each mode from exact on ``path``; also the sizes involved."""
    from vlprep._decode.video import VideoOptions, probe_video
    from vlprep._video import fetch_video

    ele = {"video": str(path), "nframes": nframes}
    exact = fetch_video(ele)
    meta = probe_video(str(path))
    row: dict[str, Any] = {
        "name": path.name,
        "source": f"{meta.width}x{meta.height} {meta.pix_fmt}",
        "target": f"{exact.shape[-1]}x{exact.shape[-2]}",
        "frames": int(exact.shape[0]),
    }
    for mode in MODES:
        video = fetch_video(ele, options=VideoOptions(resize=mode))  # type: ignore[arg-type]
        delta = (video - exact).flatten()
        absolute = delta.abs()
        mse = float((delta**2).mean())
        row[mode] = {
            "psnr": math.inf if mse == 0 else 10 * math.log10(255**2 / mse),
            "mean": float(absolute.mean()),
            "p99": float(torch.quantile(absolute[:: max(1, absolute.numel() // 1_000_000)], 0.99)),
            "max": float(absolute.max()),
            "signed": float(delta.mean()),
        }
    return row


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _lossless_420(rgb: Any) -> bytes:
    """Two copies of ``rgb`` (H, W, 3 uint8, even sides) as lossless 4:2:0 H.264 in MP4."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
        for _ in range(2):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _truth_sources() -> list[tuple[str, Any]]:
    import numpy as np
    from _video_media import CLIPS, clip_frames
    from PIL import Image

    sources = []
    for name in TRUTH_IMAGES:
        rgb = np.asarray(Image.open(IMAGES / name).convert("RGB"))
        sources.append((name, rgb))
    spec = next(c for c in CLIPS if c.key == "a")
    sources.append((f"benchmark footage {spec.width}x{spec.height}", next(clip_frames(spec))))
    return [
        (n, np.ascontiguousarray(a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2]))
        for n, a in sources
    ]


def truth_rows() -> list[str]:
    """PSNR of exact and decoder outputs against the original RGB, resized exactly."""
    from vlprep._decode.video import VideoOptions
    from vlprep._tensors import FrameResizer
    from vlprep._video import fetch_video

    lines = [
        "| source | size | target | exact PSNR dB | decoder PSNR dB |",
        "|---|---|---|--:|--:|",
    ]
    for name, rgb in _truth_sources():
        data = _lossless_420(rgb)
        height, width = rgb.shape[:2]
        for scale in TRUTH_SCALES:
            ele = {
                "video": data,
                "nframes": 2,
                "resized_height": max(28, round(height * scale)),
                "resized_width": max(28, round(width * scale)),
            }
            exact = fetch_video(ele)
            decoder = fetch_video(ele, options=VideoOptions(resize="decoder"))
            truth = torch.empty_like(exact[0])
            FrameResizer(exact.shape[-2], exact.shape[-1])(rgb, truth)
            lines.append(
                f"| {name} | {width}x{height} | {exact.shape[-1]}x{exact.shape[-2]} | "
                f"{_psnr(exact[0], truth):.1f} | {_psnr(decoder[0], truth):.1f} |"
            )
    return lines


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| video | source | target | mode | PSNR dB | mean abs | p99 | max | mean signed |",
        "|---|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        for mode in MODES:
            d = row[mode]
            lines.append(
                f"| {row['name']} | {row['source']} | {row['target']} | {mode} | "
                f"{d['psnr']:.1f} | {d['mean']:.2f} | {d['p99']:.0f} | {d['max']:.0f} | "
                f"{d['signed']:+.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--nframes", type=int, default=8, help="frames per video (even)")
    parser.add_argument("--media", type=Path, default=MEDIA, help="folder of videos")
    parser.add_argument("--truth", action="store_true", help="add the ground-truth table")
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.media.iterdir() if p.suffix in (".mp4", ".mkv"))
    if BENCH_CLIP.exists():
        paths.append(BENCH_CLIP)
    rows = []
    for path in paths:
        rows.append(measure(path, args.nframes))
        print(f"measured {path.name}", file=sys.stderr, flush=True)
    print(table(rows))
    if args.truth:
        print("\n" + "\n".join(truth_rows()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
