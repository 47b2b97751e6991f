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
workers through :func:`vlprep._sources.fetch`, with the ``policy`` given.

Needs the ``ray`` extra (``pip install 'vlprep[ray]'``); the preprocessor's
``output="inputs"`` also needs transformers (the ``runner`` extra) for the processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from vlprep._errors import InvalidInputError
from vlprep._presets import DEFAULT_FAMILY, Preset
from vlprep.integrations._arrow import actor_pool, ray_module
from vlprep.integrations._audit import Auditor
from vlprep.integrations._preprocess import Preprocessor, PreprocessOutput

__all__ = [
    "Auditor",
    "PreprocessOutput",
    "Preprocessor",
    "audit",
    "preprocess",
    "read_conversations",
]


def read_conversations(
    paths: str | Sequence[str],
    *,
    column: str = "messages",
    file_format: Literal["jsonl", "parquet"] | None = None,
    **read_kwargs: Any,
) -> Any:
    """A Ray Dataset of conversations from JSONL or Parquet files, through Ray's readers.

    JSONL is read with ``ray.data.read_text`` (one row per non-blank line, the line's JSON
    text in ``column``, parsed on the workers): lines that are bare lists of messages, or
    whose element keys change type between lines, would fail ``ray.data.read_json`` for the
    whole file; here an invalid line becomes that row's error. Parquet is read with
    ``ray.data.read_parquet``; ``column`` must hold the conversations (nested lists of
    structs or JSON text). ``file_format`` defaults to the first path's extension;
    ``read_kwargs`` go to the Ray reader (``include_paths=True``, ``filesystem=...``,
    ``override_num_blocks=...``).
    """
    ray = ray_module()
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


def audit(
    dataset: Any,
    preset: Preset | str = DEFAULT_FAMILY,
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
        compute=actor_pool(concurrency),
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
        compute=actor_pool(concurrency),
    )
