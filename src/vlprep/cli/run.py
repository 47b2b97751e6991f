"""``vlprep-run``: answer a prompt about images and videos with a Qwen-VL checkpoint.

Examples::

    vlprep-run --model Qwen/Qwen2-VL-2B-Instruct --image photo.jpg "What is in the picture?"
    vlprep-run --model ./ckpt --video clip.mp4 --max-new-tokens 64 --stream "Summarise."
    vlprep-run --model ./ckpt --messages chat.json --json
    vlprep-run --model ./ckpt --image street.jpg --boxes boxes.png "Outline every car."

Exit codes: 0 answered, 1 a typed vlprep error (message on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from vlprep._decode.image import ImageOptions
from vlprep._errors import InvalidInputError, VlprepError

__all__ = ["build_parser", "conversation_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlprep-run",
        description="Answer a prompt about images/videos with a Qwen-VL checkpoint.",
    )
    parser.add_argument("prompt", nargs="?", help="the question (omit with --messages)")
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id")
    parser.add_argument("--image", action="append", default=[], help="image path/URL (repeat)")
    parser.add_argument("--video", action="append", default=[], help="video path/URL (repeat)")
    parser.add_argument("--messages", type=Path, help="JSON file: one conversation (list)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument(
        "--max-total-tokens",
        type=int,
        help="fit the prompt and the answer into this many tokens: images and videos are "
        "shrunk (vlprep.fit) to leave --max-new-tokens for the answer",
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy")
    parser.add_argument("--seed", type=int, help="seed for --do-sample")
    parser.add_argument("--stream", action="store_true", help="print the answer as it comes")
    parser.add_argument("--json", action="store_true", help="print answer, counts, timings")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    parser.add_argument("--min-pixels", type=int, help="image min_pixels override")
    parser.add_argument("--max-pixels", type=int, help="image max_pixels override")
    parser.add_argument(
        "--decode",
        choices=("exact", "fast"),
        default="exact",
        help="image decode mode: exact (qwen-vl-utils pixels) or fast (reduced-scale JPEG "
        "decode + uint8 resize; same token counts)",
    )
    parser.add_argument(
        "--boxes", type=Path, help="draw the boxes/points parsed from the answer on the image"
    )
    return parser


def conversation_from_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The conversation the arguments describe (``--messages`` or media + prompt).

    Raises:
        InvalidInputError: neither or both of ``--messages`` and a prompt, or a bad file.
    """
    if args.messages is not None:
        if args.prompt or args.image or args.video:
            raise InvalidInputError("give either --messages or a prompt with --image/--video")
        try:
            data = json.loads(args.messages.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(
                f"--messages {str(args.messages)[:80]!r} is not a readable JSON file: "
                f"{type(exc).__name__}"
            ) from exc
        if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
            raise InvalidInputError("--messages must hold one conversation: a list of messages")
        return data
    if not args.prompt:
        raise InvalidInputError("a prompt is needed (or --messages FILE)")
    content: list[dict[str, Any]] = [{"type": "image", "image": i} for i in args.image]
    content += [{"type": "video", "video": v} for v in args.video]
    content.append({"type": "text", "text": args.prompt})
    return [{"role": "user", "content": content}]


def _draw_boxes(runner: Any, conversation: list[dict[str, Any]], answer: str, out: Path) -> int:
    """Parse the answer's boxes/points for the first image and draw them on it upright."""
    from vlprep import grounding
    from vlprep._image import load_image
    from vlprep._messages import extract_vision_info
    from vlprep._specs import parse_image_element

    images = [
        ele
        for ele in extract_vision_info(conversation)
        if ele.get("image") is not None or ele.get("image_url") is not None
    ]
    if not images:
        raise InvalidInputError("--boxes needs an image in the conversation")
    upright = load_image(parse_image_element(images[0]).source)
    items = grounding.locate(
        answer, images[0], runner.preset, family=runner.family, image=upright, on_error="skip"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    grounding.draw(upright, items).save(out)
    return len(items)


def _run(
    args: argparse.Namespace, conversation: list[dict[str, Any]], stdout: TextIO
) -> dict[str, Any]:
    from vlprep.runner import Runner, Sampling

    sampling = Sampling(
        args.max_new_tokens, args.do_sample, args.temperature, args.top_p, args.seed
    )
    runner = Runner.from_pretrained(
        args.model,
        device=args.device,
        dtype=args.dtype,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        image_options=ImageOptions(decode=args.decode),
        max_total_tokens=args.max_total_tokens,
    )
    if args.stream and not args.json:
        pieces = []
        for piece in runner.stream(
            conversation,
            max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            do_sample=sampling.do_sample,
            seed=sampling.seed,
        ):
            stdout.write(piece)
            stdout.flush()
            pieces.append(piece)
        stdout.write("\n")
        answer = raw = "".join(pieces)  # special tokens are gone when streaming
        report: dict[str, Any] = {"answer": answer}
    else:
        result = runner.run([conversation], sampling)
        answer, raw = result.texts[0], result.raw_texts[0]
        report = {
            "answer": answer,
            "model": str(args.model),
            "family": runner.family,
            "device": str(runner.device),
            "dtype": str(runner.dtype).replace("torch.", ""),
            "decode_mode": result.decode_mode,
            "prompt_tokens": result.prompt_tokens[0],
            "vision_tokens": result.vision_tokens[0],
            "generated_tokens": result.generated_tokens[0],
            "image_sizes": [list(s) for s in result.image_sizes],
            "timings": {k: round(v, 6) for k, v in result.timings.items()},
        }
    if args.boxes is not None:
        report["boxes_drawn"] = _draw_boxes(runner, conversation, raw, args.boxes)
        report["boxes_file"] = str(args.boxes)
    return report


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 typed error, 2 usage)."""
    out = stdout or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        conversation = conversation_from_args(args)
    except InvalidInputError as exc:
        print(f"vlprep-run: usage: {exc}", file=sys.stderr)
        return 2
    try:
        report = _run(args, conversation, out)
    except VlprepError as exc:
        print(f"vlprep-run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out.write(json.dumps(report, indent=2) + "\n")
    elif not args.stream:
        out.write(report["answer"] + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
