"""Command-line arguments -> the list of things to estimate, in a stable order.

Files, folders (recursive, by extension), globs, URLs, ``data:`` URIs and chat datasets
(``.json``: one conversation or a list of them; ``.jsonl``: one conversation per line).
Nothing here reads media bytes: that happens later, in the worker threads.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from vlprep._errors import (
    FetchError,
    InvalidInputError,
    SourceNotFoundError,
    VlprepError,
    describe_source,
)
from vlprep._estimates import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from vlprep._inspect_batch import Item, element_label, label_of
from vlprep._messages import extract_vision_info

__all__ = ["DATASET_SUFFIXES", "Plan", "expand"]

DATASET_SUFFIXES = frozenset({".json", ".jsonl"})
_MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
_URL = re.compile(r"^(https?|data|file):", re.IGNORECASE)


@dataclass(slots=True)
class Plan:
    """The items in order, and the dataset conversations (ids in order of appearance)."""

    items: list[Item] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)


def _walk(folder: str) -> Iterator[str]:
    """Media files under ``folder``, recursively, sorted per directory (no symlinked dirs)."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in _MEDIA_SUFFIXES:
                yield os.path.join(root, name)


def _records(path: str) -> Iterator[tuple[str, object]]:
    """``(conversation id, record)`` of a dataset file; a bad line yields an error record."""
    try:
        with open(path, encoding="utf-8") as fh:
            if path.lower().endswith(".jsonl"):
                for number, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield f"{path}:{number}", json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield (
                            f"{path}:{number}",
                            InvalidInputError(
                                f"line {number} of {describe_source(path)} is not valid JSON "
                                f"(column {exc.colno}: {exc.msg})"
                            ),
                        )
                return
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                yield (
                    path,
                    InvalidInputError(
                        f"{describe_source(path)} is not valid JSON "
                        f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
                    ),
                )
                return
    except UnicodeDecodeError:
        yield path, InvalidInputError(f"{describe_source(path)} is not UTF-8 text")
        return
    except OSError as exc:
        yield path, FetchError(f"cannot read {describe_source(path)}: {exc.strerror}")
        return
    if _is_conversation(data) or isinstance(data, Mapping):
        yield path, data
    elif isinstance(data, list):
        for index, record in enumerate(data):
            yield f"{path}#{index}", record
    else:
        yield path, data


def _is_conversation(value: object) -> bool:
    """A list of message dicts (not a list of records with a ``messages`` key)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, Mapping) and "messages" not in m for m in value)
    )


def _messages(record: object) -> object:
    if isinstance(record, Mapping):
        if "messages" in record:
            return record["messages"]
        raise InvalidInputError(
            "a dataset record must be a list of messages or a dict with a 'messages' key, "
            f"got a dict with keys {sorted(str(k) for k in record)[:8]}"
        )
    return record


def _dataset(path: str, plan: Plan) -> None:
    for conversation, record in _records(path):
        plan.conversations.append(conversation)
        if isinstance(record, VlprepError):
            plan.items.append(Item(label=path, conversation=conversation, error=record))
            continue
        try:
            elements = extract_vision_info(_messages(record))  # type: ignore[arg-type]
        except VlprepError as exc:
            plan.items.append(Item(label=path, conversation=conversation, error=exc))
            continue
        for ele in elements:
            plan.items.append(
                Item(label=element_label(ele), element=ele, conversation=conversation)
            )


def _add_path(path: str, plan: Plan) -> None:
    if os.path.isdir(path):
        plan.items.extend(Item(label=p, source=p) for p in _walk(path))
    elif os.path.isfile(path) and os.path.splitext(path)[1].lower() in DATASET_SUFFIXES:
        _dataset(path, plan)
    else:
        plan.items.append(Item(label=path, source=path))


def _glob(pattern: str, plan: Plan) -> None:
    """Matches of ``pattern``: folders walked, files kept when they have a media or dataset
    extension, each path once (``**`` matches a folder and its files)."""
    files: dict[str, None] = {}
    for match in sorted(glob.glob(pattern, recursive=True)):
        if os.path.isdir(match):
            files.update(dict.fromkeys(_walk(match)))
        elif os.path.splitext(match)[1].lower() in _MEDIA_SUFFIXES | DATASET_SUFFIXES:
            files[match] = None
    if not files:
        error = SourceNotFoundError(f"no image, video or dataset files match {pattern!r:.80}")
        plan.items.append(Item(label=pattern, error=error))
    for path in files:
        _add_path(path, plan)


def expand(arguments: Sequence[str]) -> Plan:
    """Turn the command's positional arguments into items, in argument order.

    A folder contributes its image and video files (by extension, recursively, sorted);
    a glob its matching media and dataset files (folders it matches are walked; ``**``
    recurses); a ``.json``/``.jsonl`` file its conversations'
    image and video elements; anything else one source (a path that does not exist fails
    later with :class:`SourceNotFoundError`, as the loader would).
    """
    plan = Plan()
    for argument in arguments:
        if _URL.match(argument):
            plan.items.append(Item(label=label_of(argument), source=argument))
        elif not os.path.exists(argument) and glob.has_magic(argument):
            _glob(argument, plan)
        else:
            _add_path(argument, plan)
    return plan
