"""Rewrite the coordinates of a chat dataset in place (:func:`vlprep.grounding.convert_dataset`).

The dataset's JSON text is edited where the numbers are: each string that holds a user
prompt or an assistant answer is located in the raw text, decoded with a map from its
characters back to the raw ones, converted with :func:`convert_text`, and only the bytes of
the numbers that change are replaced. Everything else (key order, spacing, escapes, line
endings, other records) is the input's, byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vlprep._decode.image import ImageOptions
from vlprep._errors import InvalidInputError, VlprepError
from vlprep._image import HEADER_PREFIX, read_header
from vlprep._planning import upright_size
from vlprep._presets import Preset, get_preset
from vlprep._sources import FetchPolicy
from vlprep._specs import parse_image_element
from vlprep.grounding._convert import Edit, apply_edits, coordinate_frame, rewrite
from vlprep.grounding._locate import check_format, detect_format, model_space, scan
from vlprep.grounding._types import TextFormat

__all__ = ["DatasetConversion", "DatasetProblem", "DatasetRewrite", "convert_dataset"]

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_IMG_TAG = re.compile(r"<img>(.*?)</img>", re.DOTALL)  # Qwen-VL: the path is in the text
_ROLES = frozenset({"user", "assistant", "human", "gpt"})
_ESCAPES = frozenset('"\\/bfnrt')
Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class DatasetRewrite:
    """One string whose coordinates were (or, with ``check``, would be) rewritten.

    Attributes:
        where: ``"line 3: messages[1].content (assistant)"``-style location.
        items: boxes, points and quads found in it.
        numbers: numbers written differently.
    """

    where: str
    items: int
    numbers: int


@dataclass(frozen=True, slots=True)
class DatasetProblem:
    """A record left unchanged, and why (``error`` is ``"TypeName: message"``)."""

    where: str
    error: str


@dataclass(frozen=True, slots=True)
class DatasetConversion:
    """The result of :func:`convert_dataset`.

    Attributes:
        text: the converted dataset (the input where nothing changed).
        records: conversations read (JSONL lines that are not blank; JSON records).
        items: boxes, points and quads converted.
        rewrites: the strings rewritten, in file order.
        problems: the records left unchanged because something in them could not be read
            or converted, in file order.
    """

    text: str
    records: int
    items: int
    rewrites: tuple[DatasetRewrite, ...] = field(default=())
    problems: tuple[DatasetProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """No problems: every coordinate found was converted."""
        return not self.problems


# ------------------------------------------------------------------------ JSON positions


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidInputError(f"duplicate key {key[:40]!r} in an object")
        out[key] = value
    return out


def _strings(value: Any, path: Path, counter: list[int], out: dict[Path, int]) -> None:
    """Number every string of ``value`` in document order (keys count, only values are
    recorded by path): the k-th string is the k-th string token of the raw text."""
    if isinstance(value, str):
        out[path] = counter[0]
        counter[0] += 1
    elif isinstance(value, dict):
        for key, inner in value.items():
            counter[0] += 1  # the key
            _strings(inner, (*path, key), counter, out)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _strings(inner, (*path, index), counter, out)


def _positions(raw: str) -> list[int]:
    """For the body of a JSON string token, the raw offset of each decoded character
    (and one past the end)."""
    offsets: list[int] = []
    i, n = 0, len(raw)
    while i < n:
        offsets.append(i)
        if raw[i] != "\\":
            i += 1
        elif raw[i + 1] in _ESCAPES:
            i += 2
        else:  # \uXXXX, a surrogate pair \uD8xx\uDCxx being one character
            code = int(raw[i + 2 : i + 6], 16)
            pair = 0xD800 <= code < 0xDC00 and raw[i + 6 : i + 8] == "\\u"
            if pair and 0xDC00 <= int(raw[i + 8 : i + 12], 16) < 0xE000:
                i += 12
            else:
                i += 6
    offsets.append(n)
    return offsets


@dataclass(slots=True)
class _Document:
    """One parsed JSON text: its value, and where each string value sits in ``raw``."""

    raw: str
    value: Any
    tokens: list[re.Match[str]]
    index: dict[Path, int]

    @classmethod
    def parse(cls, raw: str) -> _Document:
        try:
            value = json.loads(raw, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        index: dict[Path, int] = {}
        counter = [0]
        _strings(value, (), counter, index)
        tokens = list(_STRING.finditer(raw))
        if len(tokens) != counter[0]:  # cannot happen for valid JSON; refuse rather than guess
            raise InvalidInputError("could not locate the strings of the JSON text")
        return cls(raw, value, tokens, index)

    def edits(self, path: Path, value: str, edits: list[Edit]) -> list[Edit]:
        """``edits`` of the decoded string at ``path`` (``value``), moved to the raw text.

        The replacements are numbers (ASCII digits and signs), which JSON never escapes.
        """
        token = self.tokens[self.index[path]]
        body = token.start() + 1
        offsets = _positions(token.group()[1:-1])
        if len(offsets) != len(value) + 1:
            raise InvalidInputError("could not map a JSON string to its raw text")
        return [(body + offsets[start], body + offsets[end], new) for start, end, new in edits]


# ----------------------------------------------------------------------------- records


@dataclass(slots=True)
class _Text:
    path: Path
    where: str
    value: str


def _messages(record: Any) -> tuple[list[Any], Path]:
    if isinstance(record, list):
        return record, ()
    if isinstance(record, dict):
        for key in ("messages", "conversations"):
            if isinstance(record.get(key), list):
                return record[key], (key,)
        raise InvalidInputError(
            "a record must be a list of messages or a dict with a 'messages' (or ShareGPT "
            f"'conversations') list, got a dict with keys {sorted(record)[:8]}"
        )
    raise InvalidInputError(f"a record must be a list or a dict, got {type(record).__name__}")


def _image_element(part: Mapping[str, Any]) -> bool:
    return part.get("image") is not None or part.get("image_url") is not None


def _walk_record(record: Any) -> tuple[list[_Text], list[Mapping[str, Any]]]:
    """The prompt and answer strings of a record, and its image elements in order."""
    messages, base = _messages(record)
    name = ".".join(str(p) for p in base) or "messages"
    texts: list[_Text] = []
    images: list[Mapping[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidInputError(f"{name}[{i}] is a {type(message).__name__}, not a dict")
        role = message.get("role", message.get("from"))
        key = "content" if "content" in message else "value"
        content = message.get(key)
        rewrite = isinstance(role, str) and role.lower() in _ROLES
        where = f"{name}[{i}].{key} ({role})"
        if isinstance(content, str):
            if rewrite:
                texts.append(_Text((*base, i, key), where, content))
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    continue
                if _image_element(part):
                    images.append(part)
                elif isinstance(part.get("text"), str) and rewrite:
                    path = (*base, i, key, j, "text")
                    texts.append(_Text(path, f"{name}[{i}].{key}[{j}] ({role})", part["text"]))
    for text in texts:  # Qwen-VL data: "Picture 1: <img>path</img>\n..." in the prompt
        images.extend({"image": path} for path in _IMG_TAG.findall(text.value))
    extra = record.get("images") if isinstance(record, dict) else None
    if isinstance(extra, str):
        extra = [extra]
    if isinstance(extra, list):  # ms-swift / LLaMA-Factory: {"messages": [...], "images": [...]}
        for value in extra:
            if not isinstance(value, dict):
                images.append({"image": value})
            elif "path" in value and "image" not in value:  # {"path": ..., "bytes": ...}
                images.append({"image": value["path"]})
            else:
                images.append(value)
    return texts, images


@dataclass(slots=True)
class _Converter:
    source: Preset
    target: Preset
    format: TextFormat
    policy: FetchPolicy | None
    options: ImageOptions
    sizes: dict[str, tuple[int, int] | VlprepError] = field(default_factory=dict)

    @property
    def needs_size(self) -> bool:
        both_norm = model_space(self.source) == model_space(self.target) == "norm1000"
        return not both_norm and self.source != self.target

    def original(self, element: Mapping[str, Any]) -> tuple[int, int]:
        source = parse_image_element(element).source
        key = source if isinstance(source, str) else None
        if key is not None and key in self.sizes:
            found = self.sizes[key]
            if isinstance(found, VlprepError):
                raise found
            return found
        try:
            header = read_header(
                source, policy=self.policy, options=self.options, prefix=HEADER_PREFIX
            )
            size = upright_size(header, self.options.exif_transpose)
        except VlprepError as exc:
            if key is not None:
                self.sizes[key] = exc
            raise
        if key is not None:
            self.sizes[key] = size
        return size

    def frame_of(self, images: list[Mapping[str, Any]]) -> tuple[tuple[int, int], Any]:
        """The original size and element to convert with: every image must give the same
        frames, or the boxes' image is ambiguous."""
        if not images:
            raise InvalidInputError(
                "the record has coordinates but no image to size them with "
                f"({self.source.family} -> {self.target.family} depends on the image size)"
            )
        seen: dict[tuple[tuple[int, int], tuple[int, int]], tuple[tuple[int, int], Any]] = {}
        for element in images:
            size = self.original(element)
            frames = (
                coordinate_frame(size, self.source, element=element),
                coordinate_frame(size, self.target, element=element),
            )
            seen.setdefault(frames, (size, element))
        if len(seen) > 1:
            raise InvalidInputError(
                f"the record has {len(images)} images with different coordinate frames "
                f"{sorted(seen)[:3]}: cannot tell which image its coordinates refer to"
            )
        return next(iter(seen.values()))

    def record(
        self, doc: _Document, record: Any, prefix: Path, label: str
    ) -> tuple[list[Edit], list[DatasetRewrite], int]:
        texts, images = _walk_record(record)
        found = []
        for text in texts:
            read = detect_format(text.value) if self.format == "auto" else self.format
            if self.format == "auto" and read == "plain":
                continue
            count = len(scan(text.value, read, "raise"))
            if count:
                found.append((text, count))
        if not found:
            return [], [], 0
        if not self.needs_size:  # the same frame on both sides: nothing changes
            done = [DatasetRewrite(f"{label}: {t.where}", count, 0) for t, count in found]
            return [], done, sum(count for _, count in found)
        size, element = self.frame_of(images)
        edits: list[Edit] = []
        rewrites = []
        items = 0
        for text, _ in found:
            changes, count, _ = rewrite(
                text.value, size, self.source, self.target, element=element, format=self.format
            )
            items += count
            rewrites.append(DatasetRewrite(f"{label}: {text.where}", count, len(changes)))
            edits += doc.edits((*prefix, *text.path), text.value, changes)
        return edits, rewrites, items


def _records(doc: _Document) -> Iterator[tuple[Any, Path, str]]:
    value = doc.value
    is_conversation = (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and ("role" in m or "from" in m) for m in value)
    )
    if isinstance(value, list) and not is_conversation:
        for i, record in enumerate(value):
            yield record, (i,), f"record {i}"
    else:
        yield value, (), "record 0"


def _describe(exc: VlprepError) -> str:
    return f"{type(exc).__name__}: {exc}"


def convert_dataset(
    data: str,
    source: str | Preset,
    target: str | Preset,
    *,
    lines: bool = False,
    format: TextFormat = "auto",
    policy: FetchPolicy | None = None,
    options: ImageOptions | None = None,
) -> DatasetConversion:
    """Convert every box, point and quad of a chat dataset from ``source`` to ``target``.

    Records: a list of messages, or a dict with a ``messages`` list (or a ShareGPT
    ``conversations`` list of ``from``/``value`` turns). The strings rewritten are the
    ``content`` / ``value`` of ``user`` and ``assistant`` turns (``human``/``gpt`` too),
    and the ``text`` of their content parts; system prompts and everything else are left
    alone. Coordinates are converted with :func:`convert_text` (the text form is kept).

    The image a record's coordinates refer to: its ``image`` / ``image_url`` content
    elements, Qwen-VL ``<img>path</img>`` spans in its prompts, and a record-level
    ``images`` list. Their upright sizes are read from headers only (EXIF applied), through
    ``policy`` (vlprep's guarded fetch; relative paths against the current directory), and
    only when the conversion depends on them (Qwen2.5-VL on one side and not the same
    preset on both). All images of a record must give the same frames.

    A record is converted whole or not at all: when anything in it cannot be read (a
    malformed box, an unreadable image, no image, images of different frames) it is left
    unchanged and reported in ``problems``.

    Args:
        data: the dataset text (a ``.json`` file, or ``.jsonl`` with ``lines=True``).
        source, target: family names or :class:`Preset` objects, as for :func:`convert`.
        lines: JSON Lines: one record per line, blank lines kept as they are.
        format: as for :func:`convert_text`.
        policy, options: fetch and decode rules for the image headers.

    Raises:
        InvalidInputError: ``data`` is not a str, or (``lines=False``) not valid JSON;
            unknown families or format.
    """
    if not isinstance(data, str):
        raise InvalidInputError(f"data must be a str, got {type(data).__name__}")
    check_format(format)
    converter = _Converter(
        get_preset(source), get_preset(target), format, policy, options or ImageOptions()
    )
    rewrites: list[DatasetRewrite] = []
    problems: list[DatasetProblem] = []
    records = items = 0

    def one(doc: _Document, record: Any, prefix: Path, label: str) -> list[Edit]:
        nonlocal records, items
        records += 1
        try:
            edits, done, count = converter.record(doc, record, prefix, label)
        except VlprepError as exc:
            problems.append(DatasetProblem(label, _describe(exc)))
            return []
        rewrites.extend(done)
        items += count
        return edits

    if not lines:
        doc = _Document.parse(data)
        edits: list[Edit] = []
        for record, prefix, label in _records(doc):
            edits += one(doc, record, prefix, label)
        text = apply_edits(data, edits)
    else:
        out = []
        for number, line in enumerate(data.split("\n"), start=1):
            if not line.strip():
                out.append(line)
                continue
            label = f"line {number}"
            try:
                doc = _Document.parse(line)
            except InvalidInputError as exc:
                records += 1
                problems.append(DatasetProblem(label, _describe(exc)))
                out.append(line)
                continue
            out.append(apply_edits(line, one(doc, doc.value, (), label)))
        text = "\n".join(out)
    return DatasetConversion(text, records, items, tuple(rewrites), tuple(problems))
