"""Pixel deviation of the faster resize modes from the exact one, on the shared real videos.

Usage::

    python benchmarks/video_deviation.py [--nframes 8] [--media ../shared/media/videos]

For every video in the shared media folder (and the generated 720p benchmark clip when it
is cached), ``fetch_video`` runs with ``VideoOptions(resize=...)`` for ``"fast"`` and
``"decoder"`` and is compared with the default ``"exact"`` output of the same call (same
plan, same indices, same size). Reported per file and mode: PSNR (dB, peak 255), mean
absolute difference, 99th percentile and maximum of the absolute difference (levels), and
the mean signed difference (a bias shows up there). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
MEDIA = HERE.parent.parent / "shared" / "media" / "videos"
BENCH_CLIP = HERE / "out" / "video" / "v1_1280x720_30fps_30s.mp4"
MODES = ("fast", "decoder")


def measure(path: Path, nframes: int) -> dict[str, Any]:
    """Deviation of each mode from exact on ``path``; also the sizes involved."""
    from vlprep.decode.video import VideoOptions, probe_video
    from vlprep.video import fetch_video

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
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.media.iterdir() if p.suffix in (".mp4", ".mkv"))
    if BENCH_CLIP.exists():
        paths.append(BENCH_CLIP)
    rows = []
    for path in paths:
        rows.append(measure(path, args.nframes))
        print(f"measured {path.name}", file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
