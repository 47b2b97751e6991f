"""Text scanners behind :func:`vlprep.grounding.parse`.

They return :data:`RawItem` tuples in the model's own numbers; ``_locate.parse`` types them.
Rules for malformed and truncated answers are documented in ``docs/grounding.md``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from vlprep._errors import GroundingParseError
from vlprep._numbers import is_finite_number

__all__ = [
    "NUMBER",
    "PAIRS",
    "TAGS",
    "TOKENS",
    "RawItem",
    "parse_json",
    "parse_plain",
    "parse_tags",
    "parse_tokens",
]

logger = logging.getLogger("vlprep.grounding")

RawItem: TypeAlias = tuple[
    Literal["box", "point", "quad"], tuple[float, ...], str | None, Mapping[str, Any]
]
"""``(kind, numbers as written, label, other JSON keys)``."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SNIPPET = 60


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "...")


def _fail(on_error: str, message: str) -> None:
    if on_error == "raise":
        raise GroundingParseError(f"{message}; parse(..., on_error='skip') drops such items")
    logger.warning("skipped a malformed grounding item: %s", message)


# ---------------------------------------------------------------- special-token form

_NUM = r"[-+]?\d+(?:\.\d+)?"
TOKENS = re.compile(
    r"<\|object_ref_start\|>(?P<ref>.*?)(?:<\|object_ref_end\|>|(?=<\|)|\Z)"
    r"|<\|box_start\|>(?P<box>.*?)(?P<end><\|box_end\|>|(?=<\|)|\Z)",
    re.DOTALL,
)
NUMBER = re.compile(_NUM)
_TOKEN = re.compile(r"<\|[a-z_]+\|>")


def _tail_start(text: str) -> int:
    """Where the trailing run of whitespace and special tokens (``<|im_end|>``) begins."""
    end = len(text)
    while True:
        while end and text[end - 1].isspace():
            end -= 1
        start = text.rfind("<|", 0, end) if text.endswith("|>", 0, end) else -1
        if start < 0 or not _TOKEN.fullmatch(text, start, end):
            return end
        end = start


# What may separate a ref from the boxes it labels: spaces, punctuation, "and" (also in
# Chinese: the first generation answers in both languages).
_JOIN = re.compile(
    r"[\s,;:&\uff0c\u3001\uff1b\uff1a]*(?:(?:and|和|与|及)[\s,\uff0c\u3001]*)?", re.IGNORECASE
)
PAIRS = re.compile(rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)")


def parse_tokens(text: str, on_error: str) -> list[RawItem]:
    """Boxes in ``<|object_ref_start|>..<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` form."""
    items: list[RawItem] = []
    label: str | None = None
    last_end = 0
    tail = _tail_start(text)
    for match in TOKENS.finditer(text):
        if match.group("ref") is not None:
            label = " ".join(match.group("ref").split()) or None
            last_end = match.end()
            continue
        if label is not None and not _JOIN.fullmatch(text[last_end : match.start()]):
            label = None
        last_end = match.end()
        numbers = [float(n) for n in NUMBER.findall(match.group("box"))]
        truncated = not match.group("end") and match.end() >= tail
        if truncated:  # unclosed at the end of the output: keep the complete boxes
            usable = len(numbers) - len(numbers) % 4
        elif not numbers or len(numbers) % 4:
            _fail(
                on_error,
                f"a <|box_start|> region holds {len(numbers)} numbers, expected 4 per box "
                f"as (x1,y1),(x2,y2): {_snippet(match.group(0))}",
            )
            continue
        else:
            usable = len(numbers)
        for i in range(0, usable, 4):
            items.append(("box", tuple(numbers[i : i + 4]), label, _EMPTY))
    return items


# ------------------------------------------------- first-generation tag form (Qwen-VL)

_TAG = r"</?(?:ref|box|quad|img)>"
TAGS = re.compile(
    rf"<ref>(?P<ref>.*?)(?:</ref>|(?={_TAG}|<\|)|\Z)"
    rf"|<(?P<kind>box|quad)>(?P<body>.*?)(?P<end></(?P=kind)>|(?={_TAG}|<\|)|\Z)",
    re.DOTALL,
)


def parse_tags(text: str, on_error: str) -> list[RawItem]:
    """Boxes and quads in ``<ref>label</ref><box>(x1,y1),(x2,y2)</box>`` form (Qwen-VL).

    A ref labels every box or quad that follows it, as in :func:`parse_tokens`; a ``<box>``
    holds 4 numbers per box, a ``<quad>`` 8 per quadrilateral. Cut-off output (an unclosed
    tag at the end) keeps its complete boxes, as in the special-token form.
    """
    items: list[RawItem] = []
    label: str | None = None
    last_end = 0
    tail = _tail_start(text)
    for match in TAGS.finditer(text):
        if match.group("ref") is not None:
            label = " ".join(match.group("ref").split()) or None
            last_end = match.end()
            continue
        if label is not None and not _JOIN.fullmatch(text[last_end : match.start()]):
            label = None
        last_end = match.end()
        kind: Literal["box", "quad"] = "box" if match.group("kind") == "box" else "quad"
        per = 4 if kind == "box" else 8
        numbers = [float(n) for n in NUMBER.findall(match.group("body"))]
        truncated = not match.group("end") and match.end() >= tail
        if truncated:
            usable = len(numbers) - len(numbers) % per
        elif not numbers or len(numbers) % per:
            shape = "(x1,y1),(x2,y2)" if kind == "box" else "four (x,y) corners"
            _fail(
                on_error,
                f"a <{kind}> region holds {len(numbers)} numbers, expected {per} per {kind} "
                f"as {shape}: {_snippet(match.group(0))}",
            )
            continue
        else:
            usable = len(numbers)
        for i in range(0, usable, per):
            items.append((kind, tuple(numbers[i : i + per]), label, _EMPTY))
    return items


def parse_plain(text: str) -> list[RawItem]:
    """Unlabelled ``(x1,y1),(x2,y2)`` boxes (special tokens stripped from the answer)."""
    return [
        ("box", tuple(float(v) for v in m.groups()), None, _EMPTY) for m in PAIRS.finditer(text)
    ]


# ---------------------------------------------------------------------- JSON form

_MAX_DEPTH = 32
_TRAILING_COMMA = re.compile(r',(\s*[}\]])|("(?:[^"\\]|\\.)*")', re.DOTALL)


def _brackets(text: str) -> Iterator[tuple[int, int, int]]:
    """``(start, end, depth)`` of every bracketed span ``{...}`` / ``[...]`` in ``text``.

    One pass; quotes are tracked only inside brackets. Unterminated spans get ``end = -1``.
    Spans nested deeper than the limit are not reported (they stay inside their parent).
    """
    stack: list[tuple[int, int]] = []  # (start, max relative depth below)
    spans: list[tuple[int, int, int]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"' and stack:
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "{[":
            stack.append((i, 0))
        elif ch in "}]" and stack:
            start, below = stack.pop()
            if stack:
                parent, other = stack[-1]
                stack[-1] = (parent, max(other, below + 1))
            if below <= _MAX_DEPTH:
                spans.append((start, i + 1, below))
        i += 1
    spans.extend((start, -1, 0) for start, _ in stack)
    yield from sorted(spans)


_DECODER = json.JSONDecoder(strict=False)  # strict=False: raw newlines inside strings


def _loads(chunk: str) -> Any:
    try:
        return _DECODER.decode(chunk)
    except ValueError:
        pass
    fixed = _TRAILING_COMMA.sub(lambda m: m.group(1) if m.group(2) is None else m.group(2), chunk)
    try:
        return _DECODER.decode(fixed)
    except ValueError:
        return None


def _walk(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        if "bbox_2d" in value or "point_2d" in value:
            yield value
        else:
            for inner in value.values():
                yield from _walk(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner)


def _json_objects(text: str, on_error: str) -> Iterator[Mapping[str, Any]]:
    consumed = 0
    for start, end, _ in _brackets(text):
        if start < consumed or end < 0:
            continue  # inside a parsed span, or unterminated (truncated): look inside
        value = _loads(text[start:end])
        if value is not None:
            consumed = end
            yield from _walk(value)
        elif (
            text[start] == "{"
            and "{" not in text[start + 1 : end]
            and ("bbox_2d" in text[start:end] or "point_2d" in text[start:end])
        ):
            consumed = end
            _fail(on_error, f"a grounding object is not valid JSON: {_snippet(text[start:end])}")


def _numbers(value: Any, count: int) -> tuple[float, ...] | None:
    if not isinstance(value, list) or len(value) != count:
        return None
    out = []
    for v in value:
        if not is_finite_number(v):  # a 400-digit int from the JSON too
            return None
        out.append(float(v))
    return tuple(out)


def parse_json(text: str, on_error: str) -> list[RawItem]:
    """``bbox_2d`` / ``point_2d`` objects anywhere in the text (fences, prose, lists)."""
    items: list[RawItem] = []
    for obj in _json_objects(text, on_error):
        label_value = obj.get("label")
        label = None if label_value is None else " ".join(str(label_value).split()) or None
        extra = MappingProxyType(
            {k: v for k, v in obj.items() if k not in ("bbox_2d", "point_2d", "label")}
        )
        for key, count in (("bbox_2d", 4), ("point_2d", 2)):
            if key not in obj:
                continue
            raw = _numbers(obj[key], count)
            if raw is None:
                _fail(
                    on_error,
                    f"{key} must be a list of {count} finite numbers, got "
                    f"{_snippet(json.dumps(obj[key]))}",
                )
            else:
                items.append(("box" if count == 4 else "point", raw, label, extra))
    return items
