"""The ``vlprep-inspect`` batch engine, shared by the CLI and the Ray integrations.

Items (a bare source or a message element, or an error found while expanding) go in;
rows (an estimate, or a typed error, or both) come out in input order, estimated on a
bounded thread pool (:func:`vlprep._pool.ordered_map`). ``vlprep.cli`` turns command-line
arguments into items and rows into output; ``vlprep.integrations`` feeds it conversations
from Ray batches. Nothing here parses arguments, prints, or draws: ``--draw`` passes its
drawer in through :class:`Pictures`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import VlprepError, describe_source
from vlprep._estimates import MediaEstimate, element_for, inspect
from vlprep._image import fetch_image_for
from vlprep._pool import ordered_map
from vlprep._presets import Preset
from vlprep._sources import FetchPolicy
from vlprep._video import load_clip

__all__ = [
    "DEFAULT_WORKERS",
    "UNEXPECTED",
    "ConversationRow",
    "Drawer",
    "Item",
    "Pictures",
    "Row",
    "Settings",
    "conversations",
    "element_label",
    "label_of",
    "run",
]

DEFAULT_WORKERS = 4
UNEXPECTED = "unexpected error inside vlprep (a bug: please report it with the input's format)"
"""The message of a row whose estimate raised something other than a ``VlprepError``."""

_SOURCE_KEYS = ("image", "image_url", "video", "video_url")


# --------------------------------------------------------------------------- items


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to estimate: a bare source or a message element, or an error found early.

    Attributes:
        label: how the source is shown (paths and URLs as given, payloads shortened).
        source: a bare source string (its kind is found when it is estimated).
        element: a message element from a dataset (keys honoured as the loader does).
        conversation: the dataset conversation it belongs to (``file:line`` for JSONL,
            ``file#index`` for a JSON list, ``file`` for a single conversation).
        error: a failure found while expanding (unreadable dataset, no glob match).
    """

    label: str
    source: str | None = None
    element: Mapping[str, Any] | None = None
    conversation: str | None = None
    error: VlprepError | None = None


def label_of(source: object) -> str:
    """A source as shown in the output: strings as given, ``data:`` URIs and bytes shortened."""
    if isinstance(source, str) and source[:5].lower() != "data:":
        return source
    if isinstance(source, (list, tuple)):
        return f"<{len(source)} frames>"
    return describe_source(source)


def element_label(ele: Mapping[str, Any]) -> str:
    """How a message element's source is shown (OpenAI-style ``{"url": ...}`` unwrapped)."""
    source = next((ele[k] for k in _SOURCE_KEYS if ele.get(k) is not None), None)
    if isinstance(source, Mapping):  # OpenAI style {"url": ...}
        source = source.get("url")
    return label_of(source)


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class Row:
    """The outcome for one item: an estimate, or a typed error (or both when decoding or
    drawing failed). ``decoded``: the pixel data was decoded (``--verify``, ``--draw``), not
    only the headers read."""

    index: int
    item: Item
    estimate: MediaEstimate | None
    error_type: str | None = None
    error: str | None = None
    picture: str | None = None
    over_limit: bool = False
    decoded: bool = False

    @property
    def ok(self) -> bool:
        """No error for this item."""
        return self.error_type is None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values; estimate fields are ``None`` when it failed."""
        est = self.estimate.as_dict() if self.estimate is not None else {}
        est.pop("source", None)
        kind = est.pop("kind", None)
        if kind is None and self.item.element is not None:
            kind = (
                "video"
                if any(self.item.element.get(k) for k in ("video", "video_url"))
                else "image"
            )
        out: dict[str, Any] = {
            "index": self.index,
            "source": self.item.label,
            "conversation": self.item.conversation,
            "kind": kind,
            "status": "ok" if self.ok else "error",
            "error_type": self.error_type,
            "error": self.error,
        }
        for name in MediaEstimate.__dataclass_fields__:
            if name not in ("source", "kind"):
                out[name] = est.get(name)
        out["over_limit"] = self.over_limit
        out["picture"] = self.picture
        out["decoded"] = self.decoded
        return out


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """One dataset conversation: its items' tokens added up."""

    conversation: str
    images: int
    videos: int
    tokens: int
    failures: int
    over_limit: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "conversation": self.conversation,
            "images": self.images,
            "videos": self.videos,
            "tokens": self.tokens,
            "status": "ok" if not self.failures else "error",
            "failures": self.failures,
            "over_limit": self.over_limit,
        }


def conversations(
    rows: Sequence[Row], ids: Sequence[str], max_tokens: int | None
) -> list[ConversationRow]:
    """Per conversation (in ``ids`` order): counts, summed tokens, failures, the flag."""
    grouped: dict[str, list[Row]] = {cid: [] for cid in ids}
    for row in rows:
        if row.item.conversation is not None:
            grouped.setdefault(row.item.conversation, []).append(row)
    out = []
    for cid, members in grouped.items():
        ests = [r.estimate for r in members if r.estimate is not None]
        tokens = sum(e.tokens for e in ests)
        out.append(
            ConversationRow(
                conversation=cid,
                images=sum(e.kind == "image" for e in ests),
                videos=sum(e.kind == "video" for e in ests),
                tokens=tokens,
                failures=sum(not r.ok for r in members),
                over_limit=max_tokens is not None and tokens > max_tokens,
            )
        )
    return out


# --------------------------------------------------------------------------- settings

Drawer = Callable[[Mapping[str, Any], MediaEstimate, Preset, Path], object]
"""Decodes an element as the loader does and writes its picture to the path.

Raises ``VlprepError`` when the media does not decode, ``OSError`` when the picture cannot
be written."""


@dataclass(frozen=True, slots=True)
class Pictures:
    """``--draw``: a picture per estimated item, written into ``folder``.

    Attributes:
        folder: where the pictures go (it exists).
        name: the file name of item ``index`` (from 1) with label ``label``.
        draw: writes one picture (the CLI's, in ``vlprep.cli._pictures``).
    """

    folder: Path
    name: Callable[[int, str], str]
    draw: Drawer


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs: the model, the bound defaults, the limits and the options."""

    preset: Preset
    defaults: dict[str, Any]
    max_tokens: int | None = None
    workers: int = DEFAULT_WORKERS
    pictures: Pictures | None = None
    policy: FetchPolicy | None = None
    image_options: ImageOptions | None = None
    video_options: VideoOptions | None = None
    verify: bool = False

    @property
    def decodes(self) -> bool:
        """Whether the run decodes pixel data (``verify``, or pictures drawn)."""
        return self.verify or self.pictures is not None


# --------------------------------------------------------------------------- running


def _estimate(index: int, item: Item, settings: Settings) -> Row:
    if item.error is not None:
        return Row(index, item, None, type(item.error).__name__, str(item.error))
    source = item.element if item.element is not None else item.source
    try:
        element = element_for(source, **settings.defaults, policy=settings.policy)
        estimate = inspect(
            element,
            settings.preset,
            policy=settings.policy,
            image_options=settings.image_options,
            video_options=settings.video_options,
        )
    except VlprepError as exc:
        return Row(index, item, None, type(exc).__name__, str(exc))
    except Exception as exc:  # a bug: report it as one failed input, not a crashed run
        return Row(index, item, None, type(exc).__name__, UNEXPECTED)
    limit = settings.max_tokens
    over = limit is not None and estimate.tokens > limit
    pictures = settings.pictures
    if pictures is None:
        if not settings.verify:
            return Row(index, item, estimate, over_limit=over)
        try:
            _decode(element, estimate, settings)
        except VlprepError as exc:
            error = f"decoding: {exc}"
            return Row(index, item, estimate, type(exc).__name__, error, None, over, True)
        except Exception as exc:
            return Row(index, item, estimate, type(exc).__name__, UNEXPECTED, None, over, True)
        return Row(index, item, estimate, over_limit=over, decoded=True)
    path = pictures.folder / pictures.name(index, item.label)
    try:  # drawing decodes through the loaders: it verifies too
        pictures.draw(element, estimate, settings.preset, path)
    except VlprepError as exc:
        error = f"drawing: {exc}"
        return Row(index, item, estimate, type(exc).__name__, error, None, over, True)
    except OSError as exc:
        message = f"cannot write the picture {path}: {exc.strerror or type(exc).__name__}"
        return Row(index, item, estimate, "OSError", message, None, over, True)
    return Row(index, item, estimate, picture=str(path), over_limit=over, decoded=True)


def _decode(element: dict[str, Any], estimate: MediaEstimate, settings: Settings) -> None:
    """``verify``: load ``element`` as ``build_inputs`` does (an image decoded and resized;
    a video's planned frames decoded and resized), with the run's policy and options.

    Raises:
        VlprepError: the data does not decode (truncated, corrupt), or a loader limit.
    """
    if estimate.kind == "image":
        fetch_image_for(
            element, settings.preset, policy=settings.policy, image_options=settings.image_options
        )
    else:
        load_clip(  # not the drop-in: like the estimate, no environment variable is read
            element,
            settings.preset.patch_size,
            preset=settings.preset,  # the same bounds the estimate used
            policy=settings.policy,
            video_options=settings.video_options,
            image_options=settings.image_options,
        )


def run(items: Sequence[Item], settings: Settings, progress: Callable[[int], None]) -> list[Row]:
    """Estimate ``items`` on ``settings.workers`` threads; rows come back in input order,
    item ``k`` (from 0) as row ``k + 1``, and ``progress(rows so far)`` is called after each.
    A failing item is its row's error, not an exception.

    At most ``4 * workers`` items are in flight, so memory stays flat on huge datasets.
    """
    rows: list[Row] = []
    estimated = ordered_map(
        lambda k: _estimate(k + 1, items[k], settings),
        len(items),
        settings.workers,
        what="input",
        window=4 * settings.workers,
    )
    for row in estimated:
        rows.append(row)
        progress(len(rows))
    return rows
