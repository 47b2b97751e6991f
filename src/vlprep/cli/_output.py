"""The summary and the four output formats of ``vlprep-inspect`` (rows and conversation
totals come from :mod:`vlprep._inspect_batch`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from vlprep._fit import ItemFit
from vlprep._inspect_batch import ConversationRow, Row
from vlprep._inspect_fit import FitRow

__all__ = ["CSV_FIELDS", "FIT_CSV_FIELDS", "HEADERS_ONLY", "Fits", "Summary", "summarize", "write"]


def _nearest_rank(values: Sequence[int], q: float) -> int:
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _stats(tokens: list[int]) -> dict[str, Any]:
    tokens = sorted(tokens)
    if not tokens:
        return {"total": 0, "mean": None, "p50": None, "p95": None, "max": None}
    return {
        "total": sum(tokens),
        "mean": round(sum(tokens) / len(tokens), 1),
        "p50": _nearest_rank(tokens, 0.50),
        "p95": _nearest_rank(tokens, 0.95),
        "max": tokens[-1],
    }


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts and token statistics (nearest-rank percentiles over the successful ones)."""

    items: dict[str, Any]
    conversations: dict[str, Any] | None
    fit: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (``fit`` only with ``--fit``)."""
        out = {"items": self.items, "conversations": self.conversations}
        if self.fit is not None:
            out["fit"] = self.fit
        return out


def summarize(
    rows: Sequence[Row],
    convs: Sequence[ConversationRow],
    has_datasets: bool,
    fit: dict[str, Any] | None = None,
) -> Summary:
    """Item and (for datasets) conversation statistics; ``fit``: the ``--fit`` counts
    (:func:`vlprep._inspect_fit.fit_summary`)."""
    items = {
        "count": len(rows),
        "ok": sum(r.ok for r in rows),
        "failures": sum(not r.ok for r in rows),
        "over_limit": sum(r.over_limit for r in rows),
        **_stats([r.estimate.tokens for r in rows if r.estimate is not None and r.ok]),
    }
    conv = None
    if has_datasets:
        conv = {
            "count": len(convs),
            "ok": sum(not c.failures for c in convs),
            "failures": sum(bool(c.failures) for c in convs),
            "over_limit": sum(c.over_limit for c in convs),
            **_stats([c.tokens for c in convs if not c.failures]),
        }
    return Summary(items, conv, fit)


@dataclass(frozen=True, slots=True)
class Fits:
    """``--fit``: a :class:`FitRow` per conversation, and each item's fitted bounds by row
    index (items of conversations that fit or were shrunk)."""

    rows: Sequence[FitRow]
    by_conversation: dict[str, FitRow]
    items: dict[int, ItemFit]

    @classmethod
    def of(cls, rows: Sequence[Row], fits: Sequence[FitRow]) -> Fits:
        """Match each conversation's item rows, in prompt order, with its fitted items."""
        members: dict[str, list[Row]] = {}
        for row in rows:
            if row.item.conversation is not None and row.item.element is not None:
                members.setdefault(row.item.conversation, []).append(row)
        items: dict[int, ItemFit] = {}
        for fitted in fits:
            group = members.get(fitted.conversation, [])
            if fitted.status in ("fits", "shrunk") and len(group) == len(fitted.items):
                items.update((r.index, f) for r, f in zip(group, fitted.items, strict=True))
        return cls(fits, {f.conversation: f for f in fits}, items)


# --------------------------------------------------------------------------- formats

CSV_FIELDS = [
    "index",
    "source",
    "conversation",
    "kind",
    "status",
    "error_type",
    "error",
    "format",
    "original_height",
    "original_width",
    "height",
    "width",
    "grid_t",
    "grid_h",
    "grid_w",
    "tokens",
    "duration",
    "native_fps",
    "frames",
    "sample_fps",
    "frame_indices",
    "over_limit",
    "picture",
    "decoded",
]

FIT_CSV_FIELDS = [
    "fit_height",
    "fit_width",
    "fit_frames",
    "fit_tokens",
    "conversation_fit",
    "conversation_total_before",
    "conversation_total",
    "conversation_deficit",
]
"""Columns added to :data:`CSV_FIELDS` with ``--fit``: the item's fitted bounds (empty
when its conversation cannot fit or failed), then its conversation's fit status
(``fits``, ``shrunk``, ``cannot_fit``, ``error``), totals before and after, and deficit."""


HEADERS_ONLY = "headers only: pixel data not decoded; pass --verify to decode"
"""The table's line when no item's pixels were decoded: a file truncated after its header
still gets an estimate."""


def _csv_row(row: Row, fits: Fits | None = None) -> dict[str, Any]:
    data = row.as_dict()
    grid = data.pop("grid") or [None, None, None]
    data["grid_t"], data["grid_h"], data["grid_w"] = grid
    indices = data.pop("frame_indices") or []
    data["frame_indices"] = " ".join(str(i) for i in indices)
    fields = CSV_FIELDS
    if fits is not None:
        fields = CSV_FIELDS + FIT_CSV_FIELDS
        item = fits.items.get(row.index)
        if item is not None:
            data["fit_height"], data["fit_width"] = item.size
            data["fit_frames"], data["fit_tokens"] = item.frames, item.tokens
        conv = fits.by_conversation.get(row.item.conversation or "")
        if conv is not None:
            data["conversation_fit"] = conv.status
            data["conversation_total_before"] = conv.total_before
            data["conversation_total"] = conv.total
            data["conversation_deficit"] = conv.deficit
    return {key: "" if data.get(key) is None else data[key] for key in fields}


def _size(height: int, width: int) -> str:
    return f"{width}x{height}"


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _table(headers: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in body)]


def _fit_cells(row: Row, fits: Fits) -> list[str]:
    item = fits.items.get(row.index)
    if item is None:
        return ["", ""]
    size = _size(*item.size)
    if item.frames is not None:
        size += f" x {item.frames}"
    return [size, str(item.tokens)]


def _item_cells(row: Row, with_conv: bool, fits: Fits | None = None) -> list[str]:
    est = row.estimate
    cells = [str(row.index), _short(row.item.label)]
    if with_conv:
        cells.append(_short(row.item.conversation or "", 32))
    if est is None:
        cells += ["", "", "", "", "", ""]
        if fits is not None:
            cells += ["", ""]
    else:
        frames = "" if est.frames is None else f"{est.frames} @ {est.sample_fps:.2f}"
        cells += [
            est.kind,
            _size(est.original_height, est.original_width),
            _size(est.height, est.width),
            "x".join(str(g) for g in est.grid),
            str(est.tokens),
            frames,
        ]
    if fits is not None:
        cells += _fit_cells(row, fits)
    notes = []
    if row.over_limit:
        notes.append("OVER LIMIT")
    if row.error_type is not None:
        notes.append(row.error_type)
    cells.append(", ".join(notes))
    return cells


def _stats_line(name: str, stats: dict[str, Any]) -> str:
    parts = [f"{stats['count']} {name}", f"{stats['failures']} failed"]
    if stats["mean"] is not None:
        parts += [
            f"tokens total {stats['total']:,}",
            f"mean {stats['mean']:,}",
            f"p50 {stats['p50']:,}",
            f"p95 {stats['p95']:,}",
            f"max {stats['max']:,}",
        ]
    parts.append(f"{stats['over_limit']} over the limit")
    return ", ".join(parts)


def fit_line(fit: dict[str, Any]) -> str:
    """The ``--fit`` summary: how many conversations fit, needed shrinking, cannot fit."""
    parts = [
        f"{fit['fit']} fit as they are",
        f"{fit['shrunk']} needed shrinking",
        f"{fit['cannot_fit']} cannot fit"
        + (f" (most over: {fit['max_deficit']:,} tokens)" if fit["cannot_fit"] else ""),
        f"{fit['failures']} failed",
    ]
    return f"fit {fit['budget']:,} tokens: " + ", ".join(parts)


def fit_heading(fit: dict[str, Any]) -> str:
    """What the fit counted: the budget, the strategy, and whether text tokens were counted."""
    budget = f"fit: {fit['max_tokens']:,} tokens"
    if fit["reserve"]:
        budget += f" - reserve {fit['reserve']:,} = budget {fit['budget']:,}"
    counted = (
        "text counted with the processor's chat template and tokenizer"
        if fit["text_counted"]
        else "image and video tokens only (no --processor: text not counted)"
    )
    return f"{budget}, strategy {fit['strategy']}, {counted}"


def _fit_note(fitted: FitRow) -> str:
    if fitted.status == "shrunk":
        return f"shrunk {fitted.shrunk_items} of {len(fitted.items)} items"
    if fitted.status == "cannot_fit":
        return f"CANNOT FIT: {fitted.deficit:,} over at the floors ({fitted.binding})"
    if fitted.status == "error":
        return f"failed: {fitted.error_type}"
    return "fits"


def _write_fit_table(out: TextIO, fits: Fits, fit: dict[str, Any]) -> None:
    print(file=out)
    print(fit_heading(fit), file=out)
    body = [
        [
            _short(f.conversation, 48),
            "" if f.total_before is None else str(f.total_before),
            "" if f.total is None else str(f.total),
            _fit_note(f),
        ]
        for f in fits.rows
    ]
    for line in _table(["conversation", "before", "after", "fit"], body, {1, 2}):
        print(line, file=out)


def write_table(
    out: TextIO,
    rows: Sequence[Row],
    convs: Sequence[ConversationRow],
    summary: Summary,
    *,
    decoded: bool = False,
    fits: Fits | None = None,
) -> None:
    """A readable table of items, then conversations (datasets only), then the ``--fit``
    table, then the summary; :data:`HEADERS_ONLY` above it unless the pixels were
    ``decoded``."""
    with_conv = summary.conversations is not None
    headers = ["#", "source", *(["conversation"] if with_conv else [])]
    headers += ["kind", "original", "resized", "grid", "tokens", "frames @ fps"]
    if fits is not None:
        headers += ["fitted", "fit tokens"]
    headers.append("note")
    shift = 1 if with_conv else 0
    right = {0, 6 + shift, 7 + shift}
    if fits is not None:
        right.add(9 + shift)
    for line in _table(headers, [_item_cells(r, with_conv, fits) for r in rows], right):
        print(line, file=out)
    if with_conv:
        body = [
            [
                _short(c.conversation, 48),
                str(c.images),
                str(c.videos),
                str(c.tokens),
                ", ".join(
                    (["OVER LIMIT"] if c.over_limit else [])
                    + ([f"{c.failures} failed"] if c.failures else [])
                ),
            ]
            for c in convs
        ]
        print(file=out)
        headers = ["conversation", "images", "videos", "tokens", "note"]
        for line in _table(headers, body, {1, 2, 3}):
            print(line, file=out)
    if fits is not None and summary.fit is not None:
        _write_fit_table(out, fits, summary.fit)
    print(file=out)
    if not decoded:
        print(HEADERS_ONLY, file=out)
    print("summary: " + _stats_line("items", summary.items), file=out)
    if summary.conversations is not None:
        print("         " + _stats_line("conversations", summary.conversations), file=out)
    if summary.fit is not None:
        print("         " + fit_line(summary.fit), file=out)


def _conversation_dict(conv: ConversationRow, fits: Fits | None) -> dict[str, Any]:
    out = conv.as_dict()
    if fits is not None:
        fitted = fits.by_conversation.get(conv.conversation)
        out["fit"] = None if fitted is None else fitted.as_dict()
    return out


def write(
    fmt: str,
    *,
    out: TextIO,
    err: TextIO,
    rows: Sequence[Row],
    convs: Sequence[ConversationRow],
    summary: Summary,
    settings: dict[str, Any],
    decoded: bool = False,
    fits: Fits | None = None,
) -> None:
    """Write ``rows`` in ``fmt`` to ``out`` (csv: the summary goes to ``err``).

    ``decoded``: the run decoded pixel data (``--verify``, ``--draw``); the table says when
    it did not (each item's ``decoded`` field says it in the other formats). ``fits``: the
    ``--fit`` outcome per conversation (a ``fit`` entry per conversation in JSON and JSONL,
    :data:`FIT_CSV_FIELDS` in CSV, the fitted columns and a fit table in the table).
    """
    if fmt == "table":
        write_table(out, rows, convs, summary, decoded=decoded, fits=fits)
    elif fmt == "json":
        document = {
            "settings": settings,
            "items": [r.as_dict() for r in rows],
            "conversations": [_conversation_dict(c, fits) for c in convs]
            if summary.conversations is not None
            else None,
            "summary": summary.as_dict(),
        }
        json.dump(document, out, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps({"record": "item", **row.as_dict()}) + "\n")
        if summary.conversations is not None:
            for conv in convs:
                record = {"record": "conversation", **_conversation_dict(conv, fits)}
                out.write(json.dumps(record) + "\n")
        out.write(
            json.dumps({"record": "summary", "settings": settings, **summary.as_dict()}) + "\n"
        )
    else:
        fields = CSV_FIELDS if fits is None else CSV_FIELDS + FIT_CSV_FIELDS
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(_csv_row(row, fits))
        print("summary: " + _stats_line("items", summary.items), file=err)
        if summary.conversations is not None:
            print("summary: " + _stats_line("conversations", summary.conversations), file=err)
        if summary.fit is not None:
            print("summary: " + fit_line(summary.fit), file=err)
