"""``vlprep-grounding``: move grounding coordinates of a chat dataset between generations.

``vlprep-grounding convert DATASET --from F --to F (-o OUT | --check)`` rewrites the boxes,
points and quads of the user prompts and assistant answers of a ``.json`` / ``.jsonl``
dataset from one generation's convention to another's, keeping every other byte
(:func:`vlprep.grounding.convert_dataset` does the work). Exit status: 0 every coordinate
found was converted, 1 some records could not be converted (left unchanged, each reported
on stderr), 2 a usage error or a dataset that cannot be read or written.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from vlprep._errors import VlprepError
from vlprep._presets import FAMILIES, Preset, get_preset
from vlprep._sources import FetchPolicy
from vlprep._version import __version__
from vlprep.grounding import DatasetConversion, convert_dataset

__all__ = ["build_parser", "main"]

_PROG = "vlprep-grounding"
_BOM = "\ufeff"


def _pixels(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:20]!r}") from None
    if not math.isfinite(value) or value < 1 or not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text[:20]!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    """The ``vlprep-grounding`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Grounding coordinates across Qwen-VL generations.",
        epilog="Exit status: 0 every coordinate found was converted, 1 some records could "
        "not be converted (left unchanged and reported on stderr), 2 usage error or a dataset "
        "that cannot be read or written.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = commands.add_parser(
        "convert",
        help="rewrite a chat dataset's boxes and points for another generation",
        description=(
            "Rewrite the boxes, points and quads in the user prompts and assistant answers "
            "of a chat dataset from one generation's coordinate convention to another's. "
            "Only the numbers change; every other byte is kept. Image sizes are read from "
            "headers (EXIF applied) only when the conversion needs them."
        ),
        epilog=convert_epilog(),
    )
    convert.add_argument("dataset", metavar="DATASET", type=Path, help=".json or .jsonl file")
    convert.add_argument(
        "--from",
        dest="source",
        required=True,
        choices=FAMILIES,
        help="the generation whose convention the data is in",
    )
    convert.add_argument(
        "--to", dest="target", required=True, choices=FAMILIES, help="the generation to convert to"
    )
    where = convert.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write the converted dataset here ('-': stdout); may be DATASET",
    )
    where.add_argument(
        "--check",
        action="store_true",
        help="only report what would change and what cannot be converted",
    )
    convert.add_argument(
        "--format",
        choices=("auto", "json", "tokens", "tags", "plain"),
        default="auto",
        help="the text form to read (default auto: special tokens, <ref>/<box> tags or JSON; "
        "bare (x1,y1),(x2,y2) pairs only with 'plain')",
    )
    for side in ("from", "to"):
        for bound in ("min", "max"):
            convert.add_argument(
                f"--{side}-{bound}-pixels",
                type=_pixels,
                metavar="N",
                help=f"image {bound}_pixels of the --{side} model's preset (Qwen2.5-VL sizes "
                "depend on it; element keys in the dataset still win)",
            )
    convert.add_argument(
        "--allow-private-networks",
        action="store_true",
        help="let image URLs in the dataset reach loopback and private addresses (refused "
        "by default: a dataset is data from elsewhere)",
    )
    convert.add_argument(
        "-v", "--verbose", action="store_true", help="list every rewritten string on stderr"
    )
    return parser


def convert_epilog() -> str:
    """The ``convert`` help epilog (exit status)."""
    return (
        "Exit status: 0 every coordinate found was converted (or, with --check, can be), "
        "1 some records cannot be converted: they are left unchanged and each is reported on "
        "stderr, 2 usage error, or a dataset that cannot be read, parsed (.json) or written."
    )


def _preset(family: str, low: int | None, high: int | None) -> Preset:
    preset = get_preset(family)
    changes = {}
    if low is not None:
        changes["image_min_pixels"] = low
    if high is not None:
        changes["image_max_pixels"] = high
    return preset.replace(**changes) if changes else preset


def _write(path: str, text: str, out: TextIO) -> None:
    if path == "-":
        out.write(text)
        out.flush()
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _report(result: DatasetConversion, args: argparse.Namespace, err: TextIO) -> None:
    if args.verbose:
        for rewrite in result.rewrites:
            print(
                f"{_PROG}: {rewrite.where}: {rewrite.items} item(s), "
                f"{rewrite.numbers} number(s) rewritten",
                file=err,
            )
    for problem in result.problems:
        print(f"{_PROG}: {problem.where}: not converted: {problem.error}", file=err)
    numbers = sum(r.numbers for r in result.rewrites)
    strings = sum(r.numbers > 0 for r in result.rewrites)
    verb = "would rewrite" if args.check else "rewrote"
    print(
        f"{_PROG}: {args.source} -> {args.target}: {result.records} record(s), "
        f"{result.items} item(s) found, {verb} {numbers} number(s) in {strings} string(s), "
        f"{len(result.problems)} record(s) not converted",
        file=err,
    )


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run ``vlprep-grounding`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        raw = args.dataset.read_bytes()
    except OSError as exc:
        print(f"{_PROG}: cannot read {args.dataset}: {exc.strerror}", file=err)
        return 2
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        print(f"{_PROG}: {args.dataset} is not UTF-8 (byte {exc.start})", file=err)
        return 2
    bom = _BOM if text.startswith(_BOM) else ""
    try:
        result = convert_dataset(
            text[len(bom) :],
            _preset(args.source, args.from_min_pixels, args.from_max_pixels),
            _preset(args.target, args.to_min_pixels, args.to_max_pixels),
            lines=args.dataset.suffix.lower() == ".jsonl",
            format=args.format,
            policy=FetchPolicy(allow_private_networks=args.allow_private_networks),
        )
    except VlprepError as exc:  # bad bounds, or a .json file that is not JSON
        print(f"{_PROG}: {args.dataset}: {type(exc).__name__}: {exc}", file=err)
        return 2
    _report(result, args, err)
    if not args.check:
        try:
            _write(args.output, bom + result.text, out)
        except OSError as exc:
            print(f"{_PROG}: cannot write {args.output}: {exc.strerror}", file=err)
            return 2
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
