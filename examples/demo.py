"""The main job on bundled media: sizes and token counts per preset, then process_vision_info.

Run with ``make demo`` (or ``python examples/demo.py [FOLDER ...]``). Reads ``fixtures/``
and the bundled test images (``tests/media/images``). Prints one row per image; errors are
printed as the typed vlprep error each input produced. Then ``vlprep-inspect`` on
``fixtures/`` and on a small chat dataset that points at it, and finally the model side:
``build_inputs`` for each family with an offline processor, and ``vlprep-run`` on a tiny
random-weight Qwen2.5-VL checkpoint (its answer is noise; the inputs, counts and timings
are real). Nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from vlprep import (
    QWEN2_5_VL,
    QWEN3_VL,
    ImageOptions,
    VideoOptions,
    VlprepError,
    fetch_image,
    fetch_video,
    inspect,
    probe_header,
    process_vision_info,
    smart_resize,
    tokens_for_size,
)
from vlprep.cli.inspect import main as inspect_main

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDERS = [REPO / "fixtures", REPO / "tests" / "media" / "images"]
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".mpo", ".avif", ".heif", ".heic"}


def describe(path: Path) -> str:
    try:
        header = probe_header(path.read_bytes())
    except VlprepError as exc:
        return f"{path.name:34} {type(exc).__name__}: {exc}"
    height, width = header.display_size
    cells = [f"{path.name:34} {header.format:5} {header.orientation:>2} {width:>5}x{height:<5}"]
    for preset in (QWEN2_5_VL, QWEN3_VL):
        rh, rw = smart_resize(
            height, width, preset.factor, preset.image_min_pixels, preset.image_max_pixels
        )
        cells.append(f"{rw:>5}x{rh:<5} {tokens_for_size(rh, rw, preset.factor):>6}")
    try:
        fetch_image({"image": str(path)})
        cells.append("decoded")
    except VlprepError as exc:
        cells.append(type(exc).__name__)
    return " | ".join(cells)


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or [f for f in DEFAULT_FOLDERS if f.is_dir()]
    files = sorted(p for f in folders for p in f.rglob("*") if p.suffix.lower() in SUFFIXES)
    print(
        f"{'image':34} {'fmt':5} {'or':>2} {'original':11} | {'qwen2.5-vl':12} {'tok':>6} | "
        f"{'qwen3-vl':12} {'tok':>6} | pixels"
    )
    for path in files:
        print(describe(path))
    sample = [
        REPO / "fixtures" / n
        for n in ("hopper_orientation_6.jpg", "transparent.png", "pil123p.png")
    ]
    conversation = [
        {
            "role": "user",
            "content": [
                *({"type": "image", "image": str(p)} for p in sample),
                {"type": "text", "text": "Describe."},
            ],
        }
    ]
    start = time.perf_counter()
    images, videos = process_vision_info(conversation)
    took = (time.perf_counter() - start) * 1000
    print(f"\nprocess_vision_info on a {len(sample)}-image conversation ({took:.1f} ms):")
    for path, image in zip(sample, images or [], strict=True):
        size = f"{image.width}x{image.height}"
        print(f"  {path.name}: {image.mode} {size}, top-left pixel {image.getpixel((0, 0))}")
    print(f"  videos: {videos}")
    print("Sizes are (width x height) as displayed; 'or' is the EXIF orientation (applied).")
    video_demo(REPO / "fixtures" / "nasa_13013.mp4")
    throughput_demo(REPO / "fixtures" / "nasa_13013.mp4")
    status = inspect_demo(REPO / "fixtures")
    return max(status, model_demo(REPO / "fixtures"))


def model_demo(folder: Path) -> int:
    """``build_inputs`` per family, then ``vlprep-run`` on a tiny offline checkpoint."""
    from vlprep import build_inputs
    from vlprep.cli.run import main as run_main
    from vlprep.testing import PROCESSOR_FAMILIES, load_processor, make_processor, save_checkpoint

    conversations = [
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": str(folder / "hopper_orientation_6.jpg")},
                    {"type": "text", "text": "What is in the picture?"},
                ],
            }
        ],
        [
            {
                "role": "user",
                "content": [
                    {"type": "video", "video": str(folder / "nasa_13013.mp4"), "nframes": 8},
                    {"type": "image", "image": str(folder / "flower2.jpg"), "max_pixels": 200_000},
                    {"type": "text", "text": "Describe both."},
                ],
            }
        ],
    ]
    print("\nbuild_inputs: a left-padded batch of 2 conversations per family (offline processors)")
    with tempfile.TemporaryDirectory(prefix="vlprep-demo-model-") as tmp:
        for family in PROCESSOR_FAMILIES:
            processor = load_processor(family, Path(tmp) / "processors")
            start = time.perf_counter()
            inputs = build_inputs(conversations, processor)
            took = (time.perf_counter() - start) * 1000
            shapes = ", ".join(
                f"{key} {tuple(value.shape)}"
                for key, value in inputs.items()
                if key != "attention_mask"
            )
            print(f"  {family:11} {took:6.0f} ms  {shapes}")
        # the first generation takes images only, through its own (remote-code) tokenizer:
        # here the offline stand-in with the same special tokens
        start = time.perf_counter()
        inputs = build_inputs(conversations[:1], make_processor("qwen-vl"))
        took = (time.perf_counter() - start) * 1000
        shapes = ", ".join(f"{key} {tuple(value.shape)}" for key, value in inputs.items())
        print(f"  {'qwen-vl':11} {took:6.0f} ms  {shapes} (first conversation: images only)")
        checkpoint = save_checkpoint("qwen2.5-vl", Path(tmp) / "tiny-qwen2.5-vl")
        argv = [
            "--model",
            str(checkpoint),
            "--image",
            str(folder / "hopper.jpg"),
            "--max-new-tokens",
            "8",
            "--device",
            "cpu",
            "--json",
            "Describe the picture.",
        ]
        print(
            "\n$ vlprep-run --model tiny-qwen2.5-vl --image fixtures/hopper.jpg "
            "--max-new-tokens 8 --device cpu --json 'Describe the picture.'"
        )
        return run_main(argv)


def inspect_demo(folder: Path) -> int:
    """``vlprep-inspect`` on the bundled media, then on a two-conversation JSONL dataset."""
    folder = Path(os.path.relpath(folder))  # shorter rows; datasets resolve paths from here
    argv = [str(folder), "--model", "qwen2.5-vl", "--max-tokens", "2048"]
    print(f"\n$ vlprep-inspect {' '.join(argv)}")
    status = inspect_main(argv)
    with tempfile.TemporaryDirectory(prefix="vlprep-demo-") as tmp:
        dataset = Path(tmp) / "chat.jsonl"
        conversations = [
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": str(folder / "hopper.jpg")},
                        {
                            "type": "image",
                            "image": str(folder / "flower2.jpg"),
                            "max_pixels": 50176,
                        },
                        {"type": "text", "text": "Compare the two pictures."},
                    ],
                }
            ],
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "video", "video": str(folder / "nasa_13013.mp4"), "fps": 1.0},
                        {"type": "text", "text": "What happens in this clip?"},
                    ],
                }
            ],
        ]
        dataset.write_text("".join(json.dumps(c) + "\n" for c in conversations))
        argv = [str(dataset), "--model", "qwen3-vl", "--max-tokens", "1024"]
        print(f"\n$ vlprep-inspect {' '.join(argv)}")
        status = max(status, inspect_main(argv))
    return status


def video_demo(path: Path) -> None:
    """Inspect a video from its container (no pixels), then load it as the model would."""
    element = {"type": "video", "video": str(path)}
    first = inspect(element, QWEN2_5_VL)
    print(
        f"\n{path.name}: {first.format}, {first.original_width}x{first.original_height}, "
        f"{first.native_fps:.3f} fps, {first.duration:.2f} s"
    )
    for preset in (QWEN2_5_VL, QWEN3_VL):
        est = inspect(element, preset)  # from the container's metadata: no frame decoded
        print(
            f"  {preset.name:11} plan: {est.frames} frames at {est.sample_fps:.3f} fps, "
            f"each {est.width}x{est.height} -> {est.tokens} tokens"
        )
    start = time.perf_counter()
    (video, metadata), sample_fps = fetch_video({"video": str(path)}, 14, True, True)
    took = (time.perf_counter() - start) * 1000
    print(
        f"  fetch_video: {tuple(video.shape)} {video.dtype} in {took:.0f} ms, "
        f"sample fps {sample_fps:.3f}, frames {metadata['frames_indices'][:6]}..."
    )


def _best_of(run: Callable[[], object], rounds: int = 3) -> float:
    """Milliseconds of the fastest of ``rounds`` calls of ``run`` (after one warm-up)."""
    run()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, (time.perf_counter() - start) * 1000)
    return best


def throughput_demo(video: Path) -> None:
    """The opt-in fast modes: same sizes and token counts, fewer milliseconds."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (189, 252, 3), dtype=np.uint8)
    picture = Image.fromarray(small).resize((4032, 3024), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=90)
    ele = {"image": buf.getvalue(), "max_pixels": 1280 * 28 * 28}
    fast_options = ImageOptions(decode="fast")
    exact = fetch_image(ele, 14)
    fast = fetch_image(ele, 14, image_options=fast_options)
    diff = np.asarray(exact, dtype=np.float64) - np.asarray(fast, dtype=np.float64)
    psnr = 10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-12))
    t_exact = _best_of(lambda: fetch_image(ele, 14))
    t_fast = _best_of(lambda: fetch_image(ele, 14, image_options=fast_options))
    print(
        f"\nfast image mode, a generated 12 MP JPEG at 1280 tokens: exact {t_exact:.0f} ms, "
        f"fast {t_fast:.0f} ms, both {exact.width}x{exact.height}, PSNR {psnr:.1f} dB"
    )
    element = {"video": str(video)}
    t_video = _best_of(lambda: fetch_video(element, 14), rounds=1)
    long_options = VideoOptions.long_video()
    t_long = _best_of(lambda: fetch_video(element, 14, video_options=long_options), rounds=1)
    frames, meta = fetch_video(element, 14, return_video_metadata=True, video_options=long_options)
    print(
        f"long-video mode on {video.name}: exact {t_video:.0f} ms, keyframes + decoder "
        f"scaler {t_long:.0f} ms, {tuple(frames.shape)}, keyframes "
        f"{sorted(set(meta['frames_indices']))}"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
