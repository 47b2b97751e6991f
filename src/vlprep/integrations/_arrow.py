"""The output schemas of the Ray callables, batches in and out of Arrow, and Ray itself.

pyarrow (a dependency of ``ray[data]``) and Ray are imported inside the functions, so
importing this module costs nothing; a missing one raises :class:`BackendUnavailableError`
naming the extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vlprep._errors import BackendUnavailableError, InvalidInputError

__all__ = [
    "AUDIT_COLUMNS",
    "INSTALL_HINT",
    "ITEM_FIELDS",
    "MEDIA_FIELDS",
    "PARAM_FIELDS",
    "PREPROCESS_COLUMNS",
    "actor_pool",
    "append_columns",
    "audit_schema",
    "column_values",
    "preprocess_schema",
    "pyarrow",
    "ray_module",
    "to_table",
]

INSTALL_HINT = "pip install 'vlprep[ray]'"

# (name, type) with types as short names resolved by _type(); the order is the output's.
ITEM_FIELDS: tuple[tuple[str, str], ...] = (
    ("index", "int64"),
    ("source", "string"),
    ("conversation", "string"),
    ("kind", "string"),
    ("status", "string"),
    ("error_type", "string"),
    ("error", "string"),
    ("original_height", "int64"),
    ("original_width", "int64"),
    ("height", "int64"),
    ("width", "int64"),
    ("grid", "list<int64>"),
    ("tokens", "int64"),
    ("format", "string"),
    ("duration", "float64"),
    ("native_fps", "float64"),
    ("frames", "int64"),
    ("sample_fps", "float64"),
    ("frame_indices", "list<int64>"),
    ("timestamps", "list<float64>"),
    ("over_limit", "bool"),
    ("picture", "string"),
    ("decoded", "bool"),
)
"""One ``vision_items`` entry: exactly the item fields of ``vlprep-inspect --format json``."""

AUDIT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("vision_items", "items"),
    ("image_count", "int64"),
    ("video_count", "int64"),
    ("vision_tokens", "int64"),
    ("failures", "int64"),
    ("over_limit", "bool"),
    ("error_type", "string"),
    ("error", "string"),
)
"""Columns the :class:`~vlprep.integrations.ray.Auditor` appends."""

PARAM_FIELDS: tuple[tuple[str, str], ...] = (
    ("output", "string"),
    ("preset", "string"),
    ("patch_size", "int64"),
    ("merge_size", "int64"),
    ("temporal_patch_size", "int64"),
    ("image_min_pixels", "int64"),
    ("image_max_pixels", "int64"),
    ("min_pixels", "float64"),
    ("max_pixels", "float64"),
    ("total_pixels", "float64"),
    ("fps", "float64"),
    ("nframes", "float64"),
    ("patch_dim", "int64"),
    ("vlprep_version", "string"),
)
"""``vlprep_params``: how the row was processed (the same for every row of a job)."""

MEDIA_FIELDS: tuple[tuple[str, str], ...] = (
    ("kind", "string"),
    ("source", "string"),
    ("height", "int64"),
    ("width", "int64"),
    ("frames", "int64"),
    ("sample_fps", "float64"),
    ("native_fps", "float64"),
    ("frame_indices", "list<int64>"),
    ("encoding", "string"),
    ("data", "binary"),
)
"""One ``media`` entry of the preprocessor's ``output="media"`` rows."""

PREPROCESS_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "inputs": (
        ("input_ids", "list<int64>"),
        ("mm_token_type_ids", "list<int64>"),
        ("num_tokens", "int64"),
        ("pixel_values", "large_list<float32>"),
        ("image_grid_thw", "list<list<int64>>"),
        ("pixel_values_videos", "large_list<float32>"),
        ("video_grid_thw", "list<list<int64>>"),
        ("second_per_grid_ts", "list<float32>"),
        ("vlprep_params", "params"),
        ("error_type", "string"),
        ("error", "string"),
    ),
    "media": (
        ("media", "media"),
        ("vlprep_params", "params"),
        ("error_type", "string"),
        ("error", "string"),
    ),
}
"""Columns the :class:`~vlprep.integrations.ray.Preprocessor` appends, per ``output``."""


def pyarrow() -> Any:
    """The ``pyarrow`` module, or :class:`BackendUnavailableError` naming the extra."""
    try:
        import pyarrow as pa
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the Ray integration needs pyarrow (installed with Ray Data): {INSTALL_HINT}"
        ) from exc
    return pa


def ray_module() -> Any:
    """The ``ray`` module with Ray Data, or :class:`BackendUnavailableError` naming the extra."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise BackendUnavailableError(f"Ray Data is not installed: {INSTALL_HINT}") from exc
    return ray


def actor_pool(concurrency: int | tuple[int, int] | None) -> Any:
    """An actor pool: ``concurrency`` actors (``(min, max)`` autoscales), by default from one
    up to one per cluster CPU. A fixed pool of one actor per CPU would hold every CPU and
    starve the read tasks that feed it (a hang, seen with ``num_cpus=2``)."""
    ray = ray_module()
    if concurrency is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        concurrency = (1, max(1, cpus))
    if isinstance(concurrency, tuple):
        return ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    return ray.data.ActorPoolStrategy(size=concurrency)


def _type(name: str) -> Any:
    pa = pyarrow()
    simple = {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "float32": pa.float32(),
        "string": pa.string(),
        "bool": pa.bool_(),
        "binary": pa.binary(),
    }
    if name in simple:
        return simple[name]
    if name.startswith("large_list<"):
        return pa.large_list(_type(name[len("large_list<") : -1]))
    if name.startswith("list<"):
        return pa.list_(_type(name[len("list<") : -1]))
    nested = {"items": ITEM_FIELDS, "media": MEDIA_FIELDS, "params": PARAM_FIELDS}[name]
    struct = pa.struct([pa.field(n, _type(t)) for n, t in nested])
    return struct if name == "params" else pa.list_(struct)


def audit_schema() -> Any:
    """The Arrow schema of the columns the auditor appends."""
    pa = pyarrow()
    return pa.schema([pa.field(n, _type(t)) for n, t in AUDIT_COLUMNS])


def preprocess_schema(output: str) -> Any:
    """The Arrow schema of the columns the preprocessor appends for ``output``."""
    pa = pyarrow()
    return pa.schema([pa.field(n, _type(t)) for n, t in PREPROCESS_COLUMNS[output]])


def to_table(batch: object) -> Any:
    """A Ray batch (pyarrow Table, pandas DataFrame or dict of arrays) as a pyarrow Table."""
    pa = pyarrow()
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, Mapping):
        return pa.table({str(k): pa.array(_cells(v)) for k, v in batch.items()})
    if type(batch).__module__.startswith("pandas"):
        return pa.Table.from_pandas(batch, preserve_index=False)
    raise InvalidInputError(
        f"expected a pyarrow, pandas or numpy batch, got {type(batch).__name__}; "
        "call map_batches with batch_format='pyarrow'"
    )


def _cells(values: object) -> list[Any]:
    if isinstance(values, np.ndarray) and values.dtype != object:
        return list(values.tolist())
    out: list[Any] = list(values)  # type: ignore[call-overload]
    return out


def column_values(table: Any, name: str) -> list[Any]:
    """The cells of column ``name`` as Python values."""
    if name not in table.column_names:
        raise InvalidInputError(
            f"the dataset has no column {name!r:.60}; columns: {table.column_names[:12]}"
        )
    return list(table.column(name).to_pylist())


def _float_lists(arrays: Sequence[np.ndarray | None], large: bool) -> Any:
    """Flat float32 lists from per-row arrays (``None`` -> null), built without Python lists."""
    pa = pyarrow()
    sizes = [0 if a is None else a.size for a in arrays]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64 if large else np.int32)
    np.cumsum(sizes, out=offsets[1:])
    present = [a.reshape(-1) for a in arrays if a is not None]
    values = pa.array(
        np.concatenate(present).astype(np.float32, copy=False)
        if present
        else np.zeros(0, np.float32)
    )
    mask = pa.array([a is None for a in arrays], type=pa.bool_())
    cls = pa.LargeListArray if large else pa.ListArray
    return cls.from_arrays(pa.array(offsets), values, mask=mask)


def append_columns(table: Any, schema: Any, rows: Sequence[Mapping[str, Any]]) -> Any:
    """``table`` with one column per ``schema`` field, built from ``rows`` (one per row).

    Float list columns may hold numpy arrays (built in one copy); everything else plain
    Python values converted with the exact schema type, so every batch has the same types.

    Raises:
        InvalidInputError: the table already has a column of that name.
    """
    pa = pyarrow()
    clash = sorted(set(table.column_names) & set(schema.names))
    if clash:
        raise InvalidInputError(
            f"the dataset already has columns named {clash}; rename them first "
            "(Dataset.rename_columns) or drop them"
        )
    for field in schema:
        cells = [row.get(field.name) for row in rows]
        if pa.types.is_large_list(field.type) or (
            pa.types.is_list(field.type) and pa.types.is_float32(field.type.value_type)
        ):
            arrays = [None if c is None else np.asarray(c, dtype=np.float32) for c in cells]
            column = _float_lists(arrays, large=pa.types.is_large_list(field.type))
        else:
            column = pa.array(cells, type=field.type)
        table = table.append_column(field, column)
    return table
