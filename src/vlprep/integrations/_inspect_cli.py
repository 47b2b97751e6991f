"""``vlprep-inspect --ray``: the CLI's items estimated by Ray workers, rows back in order."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from vlprep._errors import BackendUnavailableError
from vlprep._estimates import MediaEstimate
from vlprep._inspect_batch import Item, Row, Settings, run
from vlprep.integrations._arrow import actor_pool, column_values, pyarrow, ray_module, to_table

__all__ = ["inspect_items"]


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
    ray = ray_module()
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
                compute=actor_pool(None),
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
