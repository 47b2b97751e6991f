"""``vlprep-inspect``: token counts for files, folders, globs, URLs and chat datasets.

Sizes images from their headers and videos from their container metadata; decodes pixels
only for ``--verify`` (every image, and every planned frame of each video, loaded as the
loaders load them) and ``--draw``. Exit status: 0 when every input was estimated (and, with
``--verify``, decoded), 1 when some failed (each reported on stderr with its typed error),
2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from vlprep._errors import InvalidInputError, VlprepError
from vlprep._inspect_batch import (
    DEFAULT_WORKERS,
    Item,
    Pictures,
    Row,
    Settings,
    conversations,
    run,
)
from vlprep._presets import DEFAULT_FAMILY, FAMILIES, as_family, get_preset
from vlprep._version import __version__
from vlprep.cli._expand import expand
from vlprep.cli._output import summarize, write
from vlprep.cli._pictures import draw, picture_name

__all__ = ["MODELS", "Settings", "build_parser", "main", "run"]

MODELS, DEFAULT_MODEL = FAMILIES, DEFAULT_FAMILY
MAX_WORKERS = 256
_PROG = "vlprep-inspect"


# --------------------------------------------------------------------------- arguments


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:20]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text[:20]!r}")
    return int(value) if value.is_integer() else value


def _model(text: str) -> str:
    """A family name or alias (``qwen-vl-chat``, ``qwen2_5_vl``) -> its canonical name."""
    try:
        return as_family(text)
    except InvalidInputError:
        raise argparse.ArgumentTypeError(
            f"unknown model {text[:40]!r}; choose from {', '.join(MODELS)} (or an alias)"
        ) from None


def _count(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:20]!r}") from None
        if value < low or (high is not None and value > high):
            limit = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"expected an integer {limit}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``vlprep-inspect`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Estimate the resized size, patch grid and vision tokens of images and videos "
            "for Qwen-VL models, from headers and container metadata (no pixels decoded "
            "unless --verify or --draw)."
        ),
        epilog=(
            "Exit status: 0 all inputs estimated (and decoded, with --verify), 1 some inputs "
            "failed (reported on stderr with their typed error), 2 usage error. Element keys "
            "in datasets win over the bound options, which only fill in keys an element does "
            "not set."
        ),
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image or video file, folder (recursive), glob, http(s) URL, data: URI, or a "
        "chat dataset (.json: one conversation or a list; .jsonl: one per line)",
    )
    parser.add_argument(
        "--model",
        type=_model,
        default=DEFAULT_MODEL,
        metavar="{" + ",".join(MODELS) + "}",
        help="model family or an alias (qwen-vl-chat, qwen2_5_vl, ...): patch size and default "
        f"image bounds; qwen-vl squashes every image to 448x448 (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--min-pixels", type=_positive_number, metavar="N", help="min pixels")
    parser.add_argument("--max-pixels", type=_positive_number, metavar="N", help="max pixels")
    parser.add_argument(
        "--total-pixels",
        type=_positive_number,
        metavar="N",
        help="pixel budget of a whole video (spread over its frames)",
    )
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--fps", type=_positive_number, help="video sampling rate (default 2)")
    rate.add_argument("--nframes", type=_positive_number, metavar="N", help="frames per video")
    parser.add_argument(
        "--max-tokens",
        type=_count(1),
        metavar="N",
        help="flag every item and conversation with more than N vision tokens",
    )
    parser.add_argument(
        "--workers",
        type=_count(1, MAX_WORKERS),
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"threads estimating at once; output order is kept (default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--format",
        choices=("table", "json", "jsonl", "csv"),
        default="table",
        help="output on stdout (default table)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also decode every image, and every planned frame of each video, as the "
        "loaders do: data that fails to decode (a file truncated after its header) is "
        "reported as a failed input. Without it only headers and container metadata are read",
    )
    parser.add_argument(
        "--draw",
        type=Path,
        metavar="DIR",
        help="write a picture per item into DIR: images with the patch grid and token "
        "blocks, videos as a contact sheet of the sampled frames (decodes pixels)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="estimate on a Ray cluster (auto, ray://HOST:PORT, HOST:PORT; a new local "
        "instance without ADDRESS) and print the same output; needs pip install 'vlprep[ray]'",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


# --------------------------------------------------------------------------- running


def _run_on_ray(
    items: Sequence[Item], settings: Settings, address: str | None, progress: Callable[[int], None]
) -> list[Row]:
    from vlprep.integrations import inspect_items

    return inspect_items(items, settings, address, progress)


class _Progress:
    """``[#####.....] 50/100`` on a terminal's stderr, redrawn at most every 1/200 of the run."""

    WIDTH = 30

    def __init__(self, stream: TextIO, total: int) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = total > 1 and callable(isatty) and bool(isatty())
        self.stream, self.total = stream, total
        self.step = max(1, total // 200)

    def __call__(self, done: int) -> None:
        if not self.enabled or (done % self.step and done != self.total):
            return
        filled = self.WIDTH * done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r{_PROG}: [{bar}] {done}/{self.total}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (self.WIDTH + len(_PROG) + 30) + "\r")
            self.stream.flush()


@contextlib.contextmanager
def _streams(out: TextIO, err: TextIO) -> Iterator[None]:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield


_ADDRESS = re.compile(r"^(auto|local|[a-z][a-z0-9+.-]*://.+|[\w.\-\[\]:]+:\d+)$", re.IGNORECASE)


def is_address(text: str) -> bool:
    """Whether ``text`` reads as a Ray address (``auto``, ``ray://host:port``, ``host:port``)."""
    return bool(_ADDRESS.match(text))


def _ray_argv(argv: Sequence[str]) -> list[str]:
    """``--ray INPUT`` -> ``--ray= INPUT``: the value after ``--ray`` is an ADDRESS only
    when it reads as one (``auto``, ``ray://...``, ``HOST:PORT``), else the first input."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--":
            break
        if arg == "--ray" and not out[i + 1].startswith("-") and not is_address(out[i + 1]):
            out[i] = "--ray="
    return out


def _parse(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> argparse.Namespace | int:
    parser = build_parser()
    try:
        with _streams(out, err):
            args = parser.parse_args(_ray_argv(sys.argv[1:] if argv is None else argv))
            if args.ray is not None and args.draw is not None:
                parser.error("--draw writes pictures locally; it cannot be used with --ray")
            if args.draw is not None:
                try:
                    args.draw.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    parser.error(f"--draw: cannot create {args.draw}: {exc.strerror}")
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    return args


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run ``vlprep-inspect`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parsed = _parse(argv, out, err)
    if isinstance(parsed, int):
        return parsed
    args = parsed
    defaults: dict[str, Any] = {
        "min_pixels": args.min_pixels,
        "max_pixels": args.max_pixels,
        "total_pixels": args.total_pixels,
        "fps": args.fps,
        "nframes": args.nframes,
    }
    settings = Settings(
        preset=get_preset(args.model),
        defaults=defaults,
        max_tokens=args.max_tokens,
        workers=args.workers,
        pictures=None if args.draw is None else Pictures(args.draw, picture_name, draw),
        verify=args.verify,
    )
    plan = expand(args.inputs)
    progress = _Progress(err, len(plan.items))
    try:
        if args.ray is None:
            rows = run(plan.items, settings, progress)
        else:
            try:
                rows = _run_on_ray(plan.items, settings, args.ray or None, progress)
            except VlprepError as exc:  # Ray missing, or the cluster could not be reached
                print(f"{_PROG}: --ray: {type(exc).__name__}: {exc}", file=err)
                return 2
    finally:
        progress.close()
    convs = conversations(rows, plan.conversations, settings.max_tokens)
    summary = summarize(rows, convs, has_datasets=bool(plan.conversations))
    info = {"model": args.model, **{k: v for k, v in defaults.items() if v is not None}}
    if args.max_tokens is not None:
        info["max_tokens"] = args.max_tokens
    write(
        args.format,
        out=out,
        err=err,
        rows=rows,
        convs=convs,
        summary=summary,
        settings=info,
        decoded=settings.decodes,
    )
    for row in rows:
        if not row.ok:
            print(f"{_PROG}: {row.item.label}: {row.error_type}: {row.error}", file=err)
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
