"""Runner benchmark: preprocessing vs prefill vs decode, and the decode loops against generate.

Usage::

    python benchmarks/runner.py [--config 2b|small] [--tokens N] [--out docs/performance.md]

Builds a random-weight Qwen2-VL model (``--config 2b``: the released Qwen2-VL-2B-Instruct
architecture — 28 layers, hidden 1536, 12 heads / 2 KV heads, vocab 151,936, a 32-block
1280-wide ViT; ``small``: 4 layers, hidden 256, for CPUs) with the offline tokenizer from
``tests/hf_fixtures.py``, saves it and loads it with ``Runner.from_pretrained``. On a GPU:
bf16 and ``--config 2b`` by default; without one: float32 and ``small``, and the report says
so. Two prompts: a 12 MP JPEG at a 1280-token budget and a 16-frame video.

For each prompt: preprocessing (``build_inputs``), prefill (one forward pass), decode
tokens/s of ``--tokens`` greedy tokens with the runner's loop and with transformers'
``generate`` on the same inputs, peak memory, and preprocessing's share of time to first
token and of the end-to-end latency. Then the decode loops: eager (dynamic cache), static
cache and, on CUDA, the compiled static-cache step (``torch.compile(mode="reduce-overhead")``),
with a token-equality check against the eager float32 loop.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _report  # noqa: E402
from _media import make_photo  # noqa: E402

import vlprep  # noqa: E402
from tests.videos import write_clip  # noqa: E402
from vlprep.runner import Runner, Sampling  # noqa: E402
from vlprep.testing import make_processor, vision_token_ids  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/runner.py --out docs/performance.md"


def qwen2_vl_config(size: str, processor: Any) -> Any:
    from transformers import Qwen2VLConfig

    tok = processor.tokenizer
    ids = vision_token_ids(tok)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    if size == "2b":
        text = {
            "vocab_size": 151_936,
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32_768,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [16, 24, 24],
                "rope_theta": 1_000_000.0,
            },
            "tie_word_embeddings": True,
        }
        vision = {
            "depth": 32,
            "embed_dim": 1280,
            "hidden_size": 1536,
            "num_heads": 16,
            "mlp_ratio": 4,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
    else:
        text = {
            "vocab_size": len(tok),
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32_768,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [8, 12, 12],
                "rope_theta": 1_000_000.0,
            },
        }
        vision = {
            "depth": 2,
            "embed_dim": 128,
            "hidden_size": 256,
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
    text.update({"bos_token_id": eos, "eos_token_id": eos, "pad_token_id": 0})
    return Qwen2VLConfig(text_config=text, vision_config=vision, **ids)


def build_checkpoint(directory: Path, size: str) -> Path:
    from transformers import Qwen2VLForConditionalGeneration

    processor = make_processor("qwen2-vl")
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(qwen2_vl_config(size, processor))
    processor.save_pretrained(str(directory))
    model.save_pretrained(str(directory))
    return directory


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _generate_rate(runner: Runner, inputs: Any, tokens: int) -> float:
    """transformers' decode rate: (N - 1) tokens over the time N tokens take beyond 1."""
    times = []
    for count in (1, tokens):
        with torch.inference_mode():
            started = time.perf_counter()
            runner.model.generate(
                **inputs, max_new_tokens=count, min_new_tokens=count, do_sample=False
            )
            _sync(runner.device)
        times.append(time.perf_counter() - started)
    return (tokens - 1) / max(times[1] - times[0], 1e-9)


def measure_prompt(runner: Runner, conversation: Any, tokens: int, repeat: int) -> dict[str, Any]:
    device = runner.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pre, prefill, ours, hf = [], [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        inputs = runner.prepare(conversation)
        _sync(device)
        pre.append(time.perf_counter() - started)
        result = runner._decode(inputs, Sampling(max_new_tokens=tokens))
        prefill.append(result.prefill_s)
        steps = result.tokens.shape[1] - 1  # forward passes after the prefill
        ours.append(steps / result.decode_s if result.decode_s else 0.0)
        hf.append(_generate_rate(runner, inputs, tokens))
    median = statistics.median
    decode_s = tokens / median(ours) if median(ours) else 0.0
    return {
        "vision_tokens": int((inputs["mm_token_type_ids"] > 0).sum()),
        "prompt_tokens": int(inputs["attention_mask"].sum()),
        "preprocess_ms": median(pre) * 1e3,
        "prefill_ms": median(prefill) * 1e3,
        "runner_tok_s": median(ours),
        "generate_tok_s": median(hf),
        "ttft_share": median(pre) / (median(pre) + median(prefill)),
        "e2e_share": median(pre) / (median(pre) + median(prefill) + decode_s),
        "peak_mib": _peak_mib(device),
        "mode": result.mode,
    }


def decode_loops(runner: Runner, conversation: Any, tokens: int) -> list[tuple[str, float, bool]]:
    """tokens/s and token equality (vs eager float32) of each decode loop."""
    modes = ["eager", "static"] + (["compiled"] if runner.device.type == "cuda" else [])
    inputs32 = runner.prepare(conversation)
    model32 = runner.model.float() if runner.dtype != torch.float32 else runner.model
    inputs32 = type(inputs32)(
        {k: (v.float() if v.is_floating_point() else v) for k, v in inputs32.items()}
    )
    from vlprep.runner._decode import decode

    def run(mode: str) -> Any:
        return decode(
            model32,
            inputs32,
            family=runner.family,
            sampling=Sampling(max_new_tokens=tokens),
            stop_ids=[-1],
            pad_id=runner.pad_id,
            mode=mode,
        )

    reference = run("eager").tokens
    rows = []
    for mode in modes:
        run(mode)  # warm-up (compilation, CUDA graph capture)
        result = run(mode)
        rate = (tokens - 1) / result.decode_s
        rows.append((result.mode, rate, torch.equal(result.tokens, reference)))
    if runner.dtype != torch.float32:
        runner.model.to(runner.dtype)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", choices=["auto", "2b", "small"], default="auto")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*cap_pixels_per_frame.*")
    gpu = torch.cuda.is_available()
    size = args.config if args.config != "auto" else ("2b" if gpu else "small")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vlprep-runner-") as tmp:
        root = Path(tmp)
        checkpoint = build_checkpoint(root / "ckpt", size)
        runner = Runner.from_pretrained(checkpoint)
        photo = root / "photo_12mp.jpg"
        make_photo(4032, 3024, torch_rng()).save(photo, "JPEG", quality=90)
        clip = write_clip(root / "clip.mp4", width=1280, height=720, fps=30, frames=240)
        prompts = {
            "image, 12 MP JPEG at max_pixels=1280·28²": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": str(photo), "max_pixels": 1280 * 28 * 28},
                        {"type": "text", "text": "Describe the picture."},
                    ],
                }
            ],
            "video, 16 frames of 720p": [
                {
                    "role": "user",
                    "content": [
                        {"type": "video", "video": str(clip), "nframes": 16},
                        {"type": "text", "text": "What happens?"},
                    ],
                }
            ],
        }
        rows = {
            name: measure_prompt(runner, c, args.tokens, args.repeat) for name, c in prompts.items()
        }
        loops = decode_loops(runner, next(iter(prompts.values())), args.tokens)
        device_name = torch.cuda.get_device_name(0) if gpu else f"CPU ({_report.cpu_model()})"
        body = render(rows, loops, size, runner, device_name, args, time.perf_counter() - started)
    print(body)
    if args.out is not None:
        _report.write_section(args.out, "runner", "Runner", body)
    return 0


def torch_rng() -> Any:
    import numpy as np

    return np.random.default_rng(0)


def render(
    rows: dict[str, dict[str, Any]],
    loops: list[tuple[str, float, bool]],
    size: str,
    runner: Runner,
    device_name: str,
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    dtype = str(runner.dtype).replace("torch.", "")
    note = (
        ""
        if size == "2b"
        else (
            " **No GPU was available: this is a small random model (4 layers, hidden 256) on the "
            "CPU; the 2B numbers need a GPU run.**"
        )
    )
    lines = [
        f"Environment: {dt.date.today().isoformat()} · {device_name} · Python "
        f"{platform.python_version()}, torch {_report.version('torch')}, transformers "
        f"{_report.version('transformers')}, vlprep {vlprep.__version__} · model config "
        f"`{size}`, {dtype}, random weights, greedy, {args.tokens} new tokens, median of "
        f"{args.repeat}.{note}",
        "",
        "| prompt | vision / prompt tokens | preprocess ms | prefill ms | runner decode tok/s "
        "| generate tok/s | runner / generate | preprocess share of TTFT | of end-to-end "
        "| peak MiB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['vision_tokens']:,} / {r['prompt_tokens']:,} | "
            f"{r['preprocess_ms']:.1f} | {r['prefill_ms']:.1f} | {r['runner_tok_s']:.1f} | "
            f"{r['generate_tok_s']:.1f} | {r['runner_tok_s'] / r['generate_tok_s']:.2f}x | "
            f"{r['ttft_share']:.0%} | {r['e2e_share']:.0%} | {r['peak_mib']:,.0f} |"
        )
    lines += [
        "",
        f"Decode loops on the image prompt in float32 ({args.tokens} tokens after a warm-up "
        "run; equality against the eager float32 loop):",
        "",
        "| loop | tokens/s | same tokens |",
        "|---|--:|---|",
        *[f"| {mode} | {rate:.1f} | {'yes' if same else 'NO'} |" for mode, rate, same in loops],
        "",
        f"Peak memory is GPU `max_memory_allocated` on CUDA, process max RSS on CPU. Total run "
        f"{elapsed:.0f} s. Reproduce: `{COMMAND}`",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
