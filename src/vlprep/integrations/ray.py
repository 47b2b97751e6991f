"""Ray Data integration: audit and preprocess chat datasets across a cluster.

Two callable classes for :meth:`ray.data.Dataset.map_batches` (each Ray actor builds its
preset, settings and processor once, in ``__init__``), and helpers that call
``map_batches`` with the right arguments::

    import ray
    from vlprep.integrations.ray import audit, preprocess, read_conversations

    ds = read_conversations("s3://bucket/chat/*.jsonl")          # column "messages"
    audit(ds, "qwen2.5-vl", max_pixels=1280 * 28 * 28).write_parquet("s3://.../audit")
    preprocess(ds, "/models/Qwen2.5-VL-7B-Instruct").write_parquet("s3://.../inputs")

Batches are exchanged as ``pyarrow.Table`` (``batch_format="pyarrow"``): the output columns
have fixed Arrow types (see :data:`~vlprep.integrations._arrow.AUDIT_COLUMNS` and
``docs/scale.md``), so every block of a job has the same schema and Parquet files written
by different workers agree. Pandas and numpy batches are accepted too and converted.

A row that fails (a missing file, corrupt bytes, a bad element key, invalid JSON) gets its
typed error in ``error_type`` (the class name, ``SourceNotFoundError``, ...) and ``error``
(vlprep's message, which never echoes payloads); the job goes on. Media are fetched on the
workers through :func:`vlprep.sources.fetch`, with the ``policy`` given.

Needs the ``ray`` extra (``pip install 'vlprep[ray]'``); the preprocessor's
``output="inputs"`` also needs transformers (the ``runner`` extra) for the processor.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from vlprep.cli._expand import Item, element_label
from vlprep.cli._output import Row, conversations
from vlprep.cli.inspect import Settings, run
from vlprep.decode.image import ImageOptions
from vlprep.decode.video import VideoOptions
from vlprep.errors import BackendUnavailableError, InvalidInputError, VlprepError
from vlprep.estimates import MediaEstimate, element_for
from vlprep.integrations._arrow import (
    INSTALL_HINT,
    append_columns,
    audit_schema,
    column_values,
    preprocess_schema,
    pyarrow,
    to_table,
)
from vlprep.integrations._conversations import BOUND_KEYS, conversation_of, with_defaults
from vlprep.messages import extract_vision_info
from vlprep.presets import Preset, family_of, get_preset, preset_from_processor
from vlprep.sources import FetchPolicy

__all__ = [
    "Auditor",
    "Preprocessor",
    "PreprocessOutput",
    "audit",
    "inspect_items",
    "preprocess",
    "read_conversations",
]

PreprocessOutput = Literal["inputs", "media"]
"""``"inputs"``: ``build_inputs`` tensors per row. ``"media"``: resized images and frames."""

_UNEXPECTED = "unexpected error inside vlprep (a bug: please report it with the input's format)"


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise BackendUnavailableError(f"Ray Data is not installed: {INSTALL_HINT}") from exc
    return ray


def _defaults(
    min_pixels: float | None,
    max_pixels: float | None,
    total_pixels: float | None,
    fps: float | None,
    nframes: float | None,
) -> dict[str, Any]:
    values: dict[str, Any] = dict(
        zip(BOUND_KEYS, (min_pixels, max_pixels, total_pixels, fps, nframes), strict=True)
    )
    element_for({"video": "check.mp4"}, **values)  # validates the values, reads nothing
    return values


def _failure(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, VlprepError):
        return type(exc).__name__, str(exc)
    return type(exc).__name__, _UNEXPECTED


# --------------------------------------------------------------------------- auditor


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
        preset: Preset | str = "qwen2.5-vl",
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
            defaults=_defaults(min_pixels, max_pixels, total_pixels, fps, nframes),
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
                error = exc if isinstance(exc, VlprepError) else InvalidInputError(_UNEXPECTED)
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


# --------------------------------------------------------------------------- preprocessor


def _load_processor(processor: object) -> Any:
    if isinstance(processor, (str, os.PathLike)):
        from vlprep.runner._loading import transformers_module

        return transformers_module().AutoProcessor.from_pretrained(os.fspath(processor))
    if hasattr(processor, "tokenizer") or not callable(processor):
        return processor
    return processor()


class Preprocessor:
    """Per-conversation model inputs (or resized media) for ``map_batches``.

    ``output="inputs"``: the row's conversation through :func:`vlprep.build_inputs` (one
    conversation, so nothing is padded): ``input_ids`` and ``mm_token_type_ids``
    (list<int64>), ``num_tokens``, ``pixel_values`` / ``pixel_values_videos``
    (large_list<float32>, the ``(patches, patch_dim)`` tensor flattened row-major; reshape
    with ``vlprep_params.patch_dim``), ``image_grid_thw`` / ``video_grid_thw``
    (list<list<int64>>, ``(n, 3)``), ``second_per_grid_ts`` (list<float32>, Qwen2.5-VL
    videos). Columns without media are null.

    ``output="media"``: each image and video element loaded and resized exactly as
    ``build_inputs`` loads it (``fetch_image_for`` / ``fetch_video`` with the preset), in
    ``media``: a list of structs ``kind``, ``source``, ``height``, ``width``, ``frames``,
    ``sample_fps``, ``native_fps``, ``frame_indices``, ``encoding`` and ``data``: a
    lossless PNG for images (``"png"``), raw ``(frames, height, width, 3)`` uint8 RGB
    for videos (``"rgb24"``).

    Both add ``vlprep_params`` (preset, patch/merge/temporal sizes, the bound defaults
    applied, ``patch_dim``, the vlprep version), ``error_type`` and ``error``.

    Args:
        processor: a transformers Qwen-VL processor, a path or hub name for
            ``AutoProcessor.from_pretrained``, or a zero-argument callable returning one
            (called once per actor). Needed for ``output="inputs"``.
        preset: model family; read from the processor when ``None`` (``"qwen2.5-vl"``
            without a processor).
        output: ``"inputs"`` or ``"media"``.
        column, min_pixels, max_pixels, total_pixels, fps, nframes: as for :class:`Auditor`.
        add_generation_prompt, chat_template_kwargs, qwen3_video_text, max_length: passed
            to :func:`vlprep.build_inputs`.
        workers: media loaded at once within one row (default 1: Ray runs the rows in
            parallel).
        policy, image_options, video_options: fetch and decode rules.
    """

    def __init__(
        self,
        processor: object = None,
        preset: Preset | str | None = None,
        *,
        output: PreprocessOutput = "inputs",
        column: str = "messages",
        min_pixels: float | None = None,
        max_pixels: float | None = None,
        total_pixels: float | None = None,
        fps: float | None = None,
        nframes: float | None = None,
        add_generation_prompt: bool = True,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        qwen3_video_text: Literal["transformers", "unwrapped"] = "transformers",
        max_length: int | None = None,
        workers: int = 1,
        policy: FetchPolicy | None = None,
        image_options: ImageOptions | None = None,
        video_options: VideoOptions | None = None,
    ) -> None:
        if output not in ("inputs", "media"):
            raise InvalidInputError(f"output must be 'inputs' or 'media', got {output!r:.20}")
        if output == "inputs" and processor is None:
            raise InvalidInputError("output='inputs' needs a processor (or a path to one)")
        self.output = output
        self.column = column
        self.defaults = _defaults(min_pixels, max_pixels, total_pixels, fps, nframes)
        self.processor = None if processor is None else _load_processor(processor)
        if preset is None:
            preset = (
                "qwen2.5-vl" if self.processor is None else preset_from_processor(self.processor)
            )
        self.preset = get_preset(preset)
        self.options: dict[str, Any] = {
            "policy": policy,
            "image_options": image_options,
            "video_options": video_options,
        }
        self.build_options: dict[str, Any] = {
            "add_generation_prompt": add_generation_prompt,
            "chat_template_kwargs": chat_template_kwargs,
            "qwen3_video_text": qwen3_video_text,
            "max_length": max_length,
            "workers": workers,
        }
        self.params = self._params()

    def _params(self) -> dict[str, Any]:
        import vlprep

        p = self.preset
        return {
            "output": self.output,
            "preset": family_of(p),
            "patch_size": p.patch_size,
            "merge_size": p.merge_size,
            "temporal_patch_size": p.temporal_patch_size,
            "image_min_pixels": p.image_min_pixels,
            "image_max_pixels": p.image_max_pixels,
            **self.defaults,
            "patch_dim": 3 * p.temporal_patch_size * p.patch_size**2,
            "vlprep_version": vlprep.__version__,
        }

    def _inputs(self, conversation: list[dict[str, Any]]) -> dict[str, Any]:
        from vlprep.inputs import build_inputs

        feature = build_inputs(
            conversation, self.processor, preset=self.preset, **self.build_options, **self.options
        )
        row: dict[str, Any] = {
            "input_ids": feature["input_ids"][0].tolist(),
            "mm_token_type_ids": feature["mm_token_type_ids"][0].tolist(),
        }
        row["num_tokens"] = len(row["input_ids"])
        for name in ("pixel_values", "pixel_values_videos", "second_per_grid_ts"):
            if name in feature:
                row[name] = feature[name].numpy()
        for name in ("image_grid_thw", "video_grid_thw"):
            if name in feature:
                row[name] = feature[name].tolist()
        return row

    def _media(self, conversation: list[dict[str, Any]]) -> dict[str, Any]:
        from PIL import Image

        from vlprep.inputs import _load_one

        media = []
        elements = extract_vision_info(conversation)
        for number, ele in enumerate(elements, start=1):
            try:
                loaded = _load_one(ele, self.preset, **self.options)
            except VlprepError as exc:
                exc.add_note(f"while loading vision item {number} of {len(elements)}")
                raise
            entry: dict[str, Any] = {"source": element_label(ele)}
            if isinstance(loaded, Image.Image):
                buffer = io.BytesIO()
                loaded.save(buffer, format="PNG", compress_level=1)
                entry |= {"kind": "image", "height": loaded.height, "width": loaded.width}
                entry |= {"encoding": "png", "data": buffer.getvalue()}
            else:
                video, metadata, sample_fps = loaded
                frames = video.round().clamp(0, 255).to(dtype=_uint8()).permute(0, 2, 3, 1)
                entry |= {"kind": "video", "height": video.shape[2], "width": video.shape[3]}
                entry |= {"frames": video.shape[0], "sample_fps": sample_fps}
                entry |= {"native_fps": metadata.get("fps")}
                entry |= {"frame_indices": list(metadata.get("frames_indices", []))}
                entry |= {"encoding": "rgb24", "data": frames.contiguous().numpy().tobytes()}
            media.append(entry)
        return {"media": media}

    def preprocess_cell(self, cell: object) -> dict[str, Any]:
        """The appended values for one cell (conversation), as plain Python/numpy values."""
        try:
            conversation = with_defaults(conversation_of(cell), self.defaults)
            row = (
                self._inputs(conversation) if self.output == "inputs" else self._media(conversation)
            )
        except Exception as exc:  # one bad row is that row's error, never the job's
            error_type, error = _failure(exc)
            return {"vlprep_params": self.params, "error_type": error_type, "error": error}
        return {**row, "vlprep_params": self.params}

    def __call__(self, batch: Any) -> Any:
        """Preprocess one batch; returns it as a ``pyarrow.Table`` with the columns appended."""
        table = to_table(batch)
        rows = [self.preprocess_cell(cell) for cell in column_values(table, self.column)]
        return append_columns(table, preprocess_schema(self.output), rows)


def _uint8() -> Any:
    import torch

    return torch.uint8


# --------------------------------------------------------------------------- datasets


def read_conversations(
    paths: str | Sequence[str],
    *,
    column: str = "messages",
    file_format: Literal["jsonl", "parquet"] | None = None,
    **read_kwargs: Any,
) -> Any:
    """A Ray Dataset of conversations from JSONL or Parquet files, through Ray's readers.

    JSONL is read with ``ray.data.read_text`` (one row per non-empty line, the line's JSON
    text in ``column``, parsed on the workers): a heterogeneous chat file does not have to
    fit one Arrow type, and an invalid line becomes that row's error instead of failing
    the read. Parquet is read with ``ray.data.read_parquet``; ``column`` must hold the
    conversations (nested lists of structs or JSON text). ``file_format`` defaults to the
    first path's extension; ``read_kwargs`` go to the Ray reader (``include_paths=True``,
    ``filesystem=...``, ``override_num_blocks=...``).
    """
    ray = _ray()
    first = paths if isinstance(paths, str) else (paths[0] if paths else "")
    if file_format is None:
        file_format = "parquet" if first.lower().rstrip("/").endswith(".parquet") else "jsonl"
    if file_format == "parquet":
        return ray.data.read_parquet(paths, **read_kwargs)
    if file_format != "jsonl":
        raise InvalidInputError(
            f"file_format must be 'jsonl' or 'parquet', got {file_format!r:.20}"
        )
    dataset = ray.data.read_text(paths, **read_kwargs)
    return dataset if column == "text" else dataset.rename_columns({"text": column})


def _pool(concurrency: int | tuple[int, int] | None) -> Any:
    """An actor pool: ``concurrency`` actors (``(min, max)`` autoscales), by default from one
    up to one per cluster CPU. A fixed pool of one actor per CPU would hold every CPU and
    starve the read tasks that feed it."""
    ray = _ray()
    if concurrency is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        concurrency = (1, max(1, cpus))
    if isinstance(concurrency, tuple):
        return ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    return ray.data.ActorPoolStrategy(size=concurrency)


def audit(
    dataset: Any,
    preset: Preset | str = "qwen2.5-vl",
    *,
    concurrency: int | tuple[int, int] | None = None,
    batch_size: int = 256,
    **options: Any,
) -> Any:
    """``dataset.map_batches(Auditor, ...)``: one actor per cluster CPU unless ``concurrency``.

    ``options`` are :class:`Auditor`'s keywords. Lazy, as every Ray Data transform.
    """
    Auditor(preset, **options)  # fail here, on the driver, for a bad option
    return dataset.map_batches(
        Auditor,
        fn_constructor_args=(preset,),
        fn_constructor_kwargs=options,
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=_pool(concurrency),
    )


def preprocess(
    dataset: Any,
    processor: object = None,
    preset: Preset | str | None = None,
    *,
    concurrency: int | tuple[int, int] | None = None,
    batch_size: int = 16,
    **options: Any,
) -> Any:
    """``dataset.map_batches(Preprocessor, ...)``; ``options`` are its keywords.

    ``batch_size`` is small by default: a row's pixel values can take tens of megabytes.
    """
    return dataset.map_batches(
        Preprocessor,
        fn_constructor_args=(processor, preset),
        fn_constructor_kwargs=options,
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=_pool(concurrency),
    )


# --------------------------------------------------------------------------- vlprep-inspect --ray


class _ItemEstimator:
    """``vlprep-inspect``'s per-item estimate, as a ``map_batches`` callable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, batch: Any) -> Any:
        pa = pyarrow()
        table = to_table(batch)
        columns = [column_values(table, n) for n in ("index", "label", "source", "element")]
        items = [
            Item(label=label, source=source, element=None if ele is None else json.loads(ele))
            for _index, label, source, ele in zip(*columns, strict=True)
        ]
        # vlprep-inspect's own thread pool (settings.workers threads) over this batch
        rows = run(items, self.settings, lambda _done: None)
        results = [
            {
                "index": index,
                "estimate": None if row.estimate is None else json.dumps(row.estimate.as_dict()),
                "error_type": row.error_type,
                "error": row.error,
                "over_limit": row.over_limit,
            }
            for index, row in zip(columns[0], rows, strict=True)
        ]
        return pa.Table.from_pylist(
            results,
            schema=pa.schema(
                [
                    ("index", pa.int64()),
                    ("estimate", pa.string()),
                    ("error_type", pa.string()),
                    ("error", pa.string()),
                    ("over_limit", pa.bool_()),
                ]
            ),
        )


def _estimate_of(text: str) -> MediaEstimate:
    data = json.loads(text)
    for key in ("grid", "frame_indices", "timestamps"):
        data[key] = tuple(data[key])
    return MediaEstimate(**data)


def inspect_items(
    items: Sequence[Item],
    settings: Settings,
    address: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Row]:
    """``vlprep-inspect``'s rows for ``items``, estimated by Ray workers, in input order.

    Connects to ``address`` (``None``: a new local instance) unless Ray is initialised
    already, and shuts down only what it started. Items that failed while expanding
    keep their error without a trip to the cluster.
    """
    ray = _ray()
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError, ...
            where = f"the Ray cluster at {address!r:.80}" if address else "a local Ray instance"
            raise BackendUnavailableError(
                f"cannot start or reach {where}: {type(exc).__name__}"
            ) from exc
        started = True
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        rows: dict[int, Row] = {}
        records = []
        for index, item in enumerate(items, start=1):
            if item.error is not None:
                error = item.error
                rows[index] = Row(index, item, None, type(error).__name__, str(error))
                continue
            element = None if item.element is None else json.dumps(item.element)
            records.append(
                {"index": index, "label": item.label, "source": item.source, "element": element}
            )
        if records:
            dataset = ray.data.from_items(records).map_batches(
                _ItemEstimator,
                fn_constructor_args=(settings,),
                batch_format="pyarrow",
                batch_size=64,
                compute=_pool(None),
            )
            for result in dataset.iter_rows():
                index = int(result["index"])
                text = result["estimate"]
                estimate = None if text is None else _estimate_of(text)
                rows[index] = Row(
                    index,
                    items[index - 1],
                    estimate,
                    result["error_type"],
                    result["error"],
                    None,
                    bool(result["over_limit"]),
                )
                if progress is not None:
                    progress(len(rows))
        return [rows[i] for i in sorted(rows)]
    finally:
        if started:
            ray.shutdown()
