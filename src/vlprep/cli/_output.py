"""The summary and the four output formats of ``vlprep-inspect`` (rows and conversation
totals come from :mod:`vlprep._inspect_batch`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from vlprep._inspect_batch import ConversationRow, Row

__all__ = ["CSV_FIELDS", "HEADERS_ONLY", "Summary", "summarize", "write"]


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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {"items": self.items, "conversations": self.conversations}


def summarize(rows: Sequence[Row], convs: Sequence[ConversationRow], has_datasets: bool) -> Summary:
    """Item and (for datasets) conversation statistics."""
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
    return Summary(items, conv)


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


HEADERS_ONLY = "headers only: pixel data not decoded; pass --verify to decode"
"""The table's line when no item's pixels were decoded: a file truncated after its header
still gets an estimate."""


def _csv_row(row: Row) -> dict[str, Any]:
    data = row.as_dict()
    grid = data.pop("grid") or [None, None, None]
    data["grid_t"], data["grid_h"], data["grid_w"] = grid
    indices = data.pop("frame_indices") or []
    data["frame_indices"] = " ".join(str(i) for i in indices)
    return {key: "" if data.get(key) is None else data[key] for key in CSV_FIELDS}


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


def _item_cells(row: Row, with_conv: bool) -> list[str]:
    est = row.estimate
    cells = [str(row.index), _short(row.item.label)]
    if with_conv:
        cells.append(_short(row.item.conversation or "", 32))
    if est is None:
        cells += ["", "", "", "", "", ""]
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


def write_table(
    out: TextIO,
    rows: Sequence[Row],
    convs: Sequence[ConversationRow],
    summary: Summary,
    *,
    decoded: bool = False,
) -> None:
    """A readable table of items, then conversations (datasets only), then the summary;
    :data:`HEADERS_ONLY` above it unless the pixels were ``decoded``."""
    with_conv = summary.conversations is not None
    headers = ["#", "source", *(["conversation"] if with_conv else [])]
    headers += ["kind", "original", "resized", "grid", "tokens", "frames @ fps", "note"]
    shift = 1 if with_conv else 0
    right = {0, 6 + shift, 7 + shift}
    for line in _table(headers, [_item_cells(r, with_conv) for r in rows], right):
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
    print(file=out)
    if not decoded:
        print(HEADERS_ONLY, file=out)
    print("summary: " + _stats_line("items", summary.items), file=out)
    if summary.conversations is not None:
        print("         " + _stats_line("conversations", summary.conversations), file=out)


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
) -> None:
    """Write ``rows`` in ``fmt`` to ``out`` (csv: the summary goes to ``err``).

    ``decoded``: the run decoded pixel data (``--verify``, ``--draw``); the table says when
    it did not (each item's ``decoded`` field says it in the other formats).
    """
    if fmt == "table":
        write_table(out, rows, convs, summary, decoded=decoded)
    elif fmt == "json":
        document = {
            "settings": settings,
            "items": [r.as_dict() for r in rows],
            "conversations": [c.as_dict() for c in convs]
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
                out.write(json.dumps({"record": "conversation", **conv.as_dict()}) + "\n")
        out.write(
            json.dumps({"record": "summary", "settings": settings, **summary.as_dict()}) + "\n"
        )
    else:
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(_csv_row(row))
        print("summary: " + _stats_line("items", summary.items), file=err)
        if summary.conversations is not None:
            print("summary: " + _stats_line("conversations", summary.conversations), file=err)
