"""The Ray auditor: vlprep-inspect's per-item estimates, one row per conversation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlprep._decode.image import ImageOptions
from vlprep._decode.video import VideoOptions
from vlprep._errors import InvalidInputError, VlprepError
from vlprep._inspect_batch import Item, Row, Settings, conversations, element_label, run
from vlprep._messages import extract_vision_info
from vlprep._presets import DEFAULT_FAMILY, Preset, get_preset
from vlprep._sources import FetchPolicy
from vlprep.integrations._arrow import append_columns, audit_schema, column_values, to_table
from vlprep.integrations._conversations import UNEXPECTED, bound_defaults, conversation_of

__all__ = ["Auditor"]


class Auditor:
    """Per-conversation vision token estimates for ``map_batches``, no pixels decoded.

    Each row's conversation goes through the same code as ``vlprep-inspect``: every image
    and video element is estimated from its header or container metadata, and the row
    gets one ``vision_items`` entry per element with exactly the item fields of
    ``vlprep-inspect --format json`` (``index`` counts from 1 within the row;
    ``conversation`` is the ``id_column`` value), plus the conversation's totals.

    Args:
        preset: model family or :class:`~vlprep.Preset` (patch size, default image bounds).
        column: the column holding conversations: a list of messages, a
            ``{"messages": [...]}`` record, or either as JSON text.
        id_column: a column whose value (as text) fills each item's ``conversation``.
        min_pixels / max_pixels / total_pixels / fps / nframes: defaults for the element
            keys of the same name, as in :func:`vlprep.inspect`; a key in the element wins.
        max_tokens: flag items and rows with more vision tokens (``over_limit``).
        workers: threads per actor reading headers at once (I/O bound; default 4).
        policy, image_options, video_options: fetch and decode rules, as for the loaders.

    Appended columns (``pyarrow`` types): ``vision_items`` (list of structs),
    ``image_count``, ``video_count``, ``vision_tokens`` (sum over the elements estimated),
    ``failures`` (int64), ``over_limit`` (bool), ``error_type``, ``error`` (string: the
    row's first failure, null when every element was estimated).
    """

    def __init__(
        self,
        preset: Preset | str = DEFAULT_FAMILY,
        *,
        column: str = "messages",
        id_column: str | None = None,
        min_pixels: float | None = None,
        max_pixels: float | None = None,
        total_pixels: float | None = None,
        fps: float | None = None,
        nframes: float | None = None,
        max_tokens: int | None = None,
        workers: int = 4,
        policy: FetchPolicy | None = None,
        image_options: ImageOptions | None = None,
        video_options: VideoOptions | None = None,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidInputError(f"workers must be an int >= 1, got {workers!r:.20}")
        if max_tokens is not None and (isinstance(max_tokens, bool) or max_tokens < 1):
            raise InvalidInputError(f"max_tokens must be an int >= 1, got {max_tokens!r:.20}")
        self.column = column
        self.id_column = id_column
        self.settings = Settings(
            preset=get_preset(preset),
            defaults=bound_defaults(min_pixels, max_pixels, total_pixels, fps, nframes),
            max_tokens=max_tokens,
            workers=workers,
            policy=policy,
            image_options=image_options,
            video_options=video_options,
        )

    def audit_rows(self, cells: Sequence[object], ids: Sequence[object]) -> list[dict[str, Any]]:
        """The appended values for each cell (conversation), as plain Python values."""
        items: list[Item] = []
        keys = [f"#{r}" for r in range(len(cells))]
        record_errors: set[str] = set()
        for key, cell in zip(keys, cells, strict=True):
            try:
                elements = extract_vision_info(conversation_of(cell))
            except Exception as exc:  # a bad cell is that row's error, never the job's
                error = exc if isinstance(exc, VlprepError) else InvalidInputError(UNEXPECTED)
                items.append(Item(label="", conversation=key, error=error))
                record_errors.add(key)
                continue
            items.extend(Item(element_label(e), element=e, conversation=key) for e in elements)
        rows = run(items, self.settings, lambda _done: None)
        by_key: dict[str, list[Row]] = {key: [] for key in keys}
        for row in rows:
            by_key[str(row.item.conversation)].append(row)
        totals = conversations(rows, keys, self.settings.max_tokens)
        out = []
        for key, total, conv_id in zip(keys, totals, ids, strict=True):
            members = by_key[key]
            entries = []
            for number, row in enumerate(members, start=1):
                entry = row.as_dict()
                entry["index"] = number
                entry["conversation"] = None if conv_id is None else str(conv_id)
                if key in record_errors:
                    entry["source"] = None
                entries.append(entry)
            first = next((r for r in members if not r.ok), None)
            out.append(
                {
                    "vision_items": entries,
                    "image_count": total.images,
                    "video_count": total.videos,
                    "vision_tokens": total.tokens,
                    "failures": total.failures,
                    "over_limit": total.over_limit,
                    "error_type": None if first is None else first.error_type,
                    "error": None if first is None else first.error,
                }
            )
        return out

    def __call__(self, batch: Any) -> Any:
        """Audit one batch; returns it as a ``pyarrow.Table`` with the columns appended."""
        table = to_table(batch)
        cells = column_values(table, self.column)
        ids = column_values(table, self.id_column) if self.id_column else [None] * len(cells)
        return append_columns(table, audit_schema(), self.audit_rows(cells, ids))
