"""``vlprep-inspect``: token counts for files, folders, globs, URLs and chat datasets.

Sizes images from their headers and videos from their container metadata; decodes pixels
only for ``--verify`` (every image, and every planned frame of each video, loaded as the
loaders load them) and ``--draw``. ``--fit N`` fits each dataset conversation into ``N``
tokens with :func:`vlprep.fit` (text counted with ``--processor``). Exit status: 0 when
every input was estimated (and, with ``--verify``, decoded; with ``--fit``, every
conversation fitted or found not to fit), 1 when some failed (each reported on stderr with
its typed error), 2 for a usage error. Like ``--max-tokens``' OVER LIMIT, a conversation
that cannot fit is reported, not a failure.
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
from vlprep._fit import STRATEGIES
from vlprep._inspect_batch import (
    DEFAULT_WORKERS,
    Item,
    Pictures,
    Row,
    Settings,
    conversations,
    run,
)
from vlprep._inspect_fit import FitRow, FitSettings, fit_rows, fit_summary
from vlprep._presets import DEFAULT_FAMILY, FAMILIES, as_family, get_preset, preset_from_processor
from vlprep._version import __version__
from vlprep.cli._expand import expand
from vlprep.cli._output import Fits, summarize, write
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
        default=None,
        metavar="{" + ",".join(MODELS) + "}",
        help="model family or an alias (qwen-vl-chat, qwen2_5_vl, ...): patch size and default "
        f"image bounds; qwen-vl squashes every image to 448x448 (default {DEFAULT_MODEL}, "
        "or the --processor's family)",
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
    fitting = parser.add_argument_group(
        "fitting a conversation into a context length (chat datasets; see docs/budget.md)"
    )
    fitting.add_argument(
        "--fit",
        type=_count(1),
        metavar="N",
        help="fit each dataset conversation into N tokens (vlprep.fit): report whether it "
        "fits as it is, its total before and after, and each item's fitted size and frames",
    )
    fitting.add_argument(
        "--reserve",
        type=_count(0),
        metavar="N",
        help="with --fit: tokens kept free for the answer (max_new_tokens; default 0)",
    )
    fitting.add_argument(
        "--fit-strategy",
        choices=STRATEGIES,
        help="with --fit: uniform (one common scale) or recent (older turns shrink first); "
        "default uniform",
    )
    fitting.add_argument(
        "--processor",
        metavar="DIR",
        help="a transformers Qwen-VL processor (folder, or hub name if cached) whose chat "
        "template and tokenizer count the text tokens for --fit (its family is the default "
        "--model); without it --fit counts image and video tokens only. Needs pip install "
        "'vlprep[runner]'",
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


def _check_fit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.fit is None:
        for option, value in (("--reserve", args.reserve), ("--fit-strategy", args.fit_strategy)):
            if value is not None:
                parser.error(f"{option} needs --fit N")
        return
    args.reserve = args.reserve or 0
    args.fit_strategy = args.fit_strategy or "uniform"
    if args.reserve >= args.fit:
        parser.error(f"--reserve ({args.reserve}) must be below --fit ({args.fit})")
    if args.ray is not None:
        parser.error(
            "--fit runs locally; on a cluster use vlprep.integrations.ray.audit(..., fit=N)"
        )
    if args.model == "qwen-vl":
        parser.error("--fit: qwen-vl gives every image a fixed 256 tokens; nothing to fit")


def _load_processor(name: str) -> Any:
    """``AutoProcessor.from_pretrained(name)``.

    Raises:
        BackendUnavailableError: transformers is not installed (names the extra).
        InvalidInputError: it cannot be loaded (the message says why, not its files).
    """
    from vlprep.runner import transformers_module

    transformers = transformers_module()
    try:
        return transformers.AutoProcessor.from_pretrained(name)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise InvalidInputError(
            f"cannot load a processor from {name[:200]!r}: {type(exc).__name__}; pass a "
            "folder saved with save_pretrained (or a cached hub name)"
        ) from None


def _parse(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> argparse.Namespace | int:
    parser = build_parser()
    try:
        with _streams(out, err):
            args = parser.parse_args(_ray_argv(sys.argv[1:] if argv is None else argv))
            if args.ray is not None and args.draw is not None:
                parser.error("--draw writes pictures locally; it cannot be used with --ray")
            _check_fit(parser, args)
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
    processor = _resolve_model(args, err)
    if isinstance(processor, int):
        return processor
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
    plan = expand(args.inputs, keep_messages=args.fit is not None)
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
    fits, fit_info = None, None
    if args.fit is not None:
        fitted, fit_info = _fit(args, plan.conversations, plan.messages or {}, settings, processor)
        fits = Fits.of(rows, fitted)
    summary = summarize(rows, convs, has_datasets=bool(plan.conversations), fit=fit_info)
    info = {"model": args.model, **{k: v for k, v in defaults.items() if v is not None}}
    if args.max_tokens is not None:
        info["max_tokens"] = args.max_tokens
    if args.fit is not None:
        info.update(fit=args.fit, reserve=args.reserve, fit_strategy=args.fit_strategy)
        info["text_counted"] = processor is not None
    write(
        args.format,
        out=out,
        err=err,
        rows=rows,
        convs=convs,
        summary=summary,
        settings=info,
        decoded=settings.decodes,
        fits=fits,
    )
    if args.fit is not None and not plan.conversations:
        print(f"{_PROG}: --fit: no chat dataset among the inputs, nothing fitted", file=err)
    return _report_failures(rows, fits, err)


def _resolve_model(args: argparse.Namespace, err: TextIO) -> Any:
    """Load ``--processor`` and settle ``args.model`` (given, the processor's family, or
    the default); the processor (or ``None``), or 2 for a usage error."""
    processor = None
    if args.processor is not None:
        try:
            processor = _load_processor(args.processor)
            if args.model is None:
                args.model = preset_from_processor(processor).family
        except VlprepError as exc:
            print(f"{_PROG}: --processor: {type(exc).__name__}: {exc}", file=err)
            return 2
    if args.model is None:
        args.model = DEFAULT_MODEL
    if args.fit is not None and args.model == "qwen-vl":
        print(f"{_PROG}: --fit: qwen-vl gives every image a fixed 256 tokens", file=err)
        return 2
    return processor


def _report_failures(rows: Sequence[Row], fits: Fits | None, err: TextIO) -> int:
    """Each failed item (and fit not already reported) on ``err``; the exit status."""
    failed_conversations = set()
    for row in rows:
        if not row.ok:
            failed_conversations.add(row.item.conversation)
            print(f"{_PROG}: {row.item.label}: {row.error_type}: {row.error}", file=err)
    fit_failed = False
    for fitted in fits.rows if fits is not None else ():
        if fitted.status == "error":
            fit_failed = True
            if fitted.conversation not in failed_conversations:  # not reported above
                message = f"{fitted.error_type}: {fitted.error}"
                print(f"{_PROG}: {fitted.conversation}: --fit: {message}", file=err)
    return 0 if all(row.ok for row in rows) and not fit_failed else 1


def _fit(
    args: argparse.Namespace,
    ids: Sequence[str],
    messages: dict[str, list[Any]],
    settings: Settings,
    processor: Any,
) -> tuple[list[FitRow], dict[str, Any]]:
    """``--fit``: a fit per conversation (a record that could not be read fails with the
    error of its item row)."""
    fit_settings = FitSettings(
        max_tokens=args.fit,
        preset=settings.preset,
        reserve=args.reserve,
        strategy=args.fit_strategy,
        processor=processor,
        defaults=settings.defaults,
    )
    unread = "InvalidInputError", "the conversation could not be read (see its item row)"
    fitted = fit_rows(
        [(cid, messages.get(cid)) for cid in ids],
        fit_settings,
        settings.workers,
        failure=lambda _cid: unread,
    )
    return fitted, fit_summary(fitted, fit_settings)


if __name__ == "__main__":
    raise SystemExit(main())
