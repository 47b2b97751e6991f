"""vlprep.integrations.ray on a local Ray instance (num_cpus=2), against the single-process library.

One generated dataset of 5,000 conversations (a few dozen small images, three short clips,
and bad rows of every kind) is audited and preprocessed by Ray Data; every row must equal
what the library computes for the same line in this process, errors included.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from PIL import Image

import vlprep
from tests.conftest import encode, media_dir, photo
from tests.videos import write_clip
from vlprep._errors import BackendUnavailableError, InvalidInputError, VlprepError
from vlprep._image import fetch_image_for
from vlprep._inspect_batch import Settings, conversations, run
from vlprep._video import fetch_video
from vlprep.cli._expand import expand
from vlprep.cli.inspect import main
from vlprep.integrations import ray as vray
from vlprep.integrations._arrow import ITEM_FIELDS, audit_schema, preprocess_schema
from vlprep.testing import save_processor

# Ray Data 2.60 warns about its own deprecated settings while it builds its DataContext
# (ray/data/context.py: use_push_based_shuffle, use_polars, use_arrow_tensor_v2): not ours,
# and only from that module.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

N = 5000
BOUNDS = {"min_pixels": 784, "max_pixels": 6272}  # tiny tensors: 4 to 32 patches an image
# Ray jobs below start actors that import torch and vlprep (transformers for the
# preprocessor) on a shared 2-core machine: a few seconds each before the first row,
# then 5,000 rows; 60 s is too tight for that, 240 s leaves room on a loaded machine.
SLOW = pytest.mark.timeout(240)


# --------------------------------------------------------------------------- the dataset


def _conversation(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def _line(i: int, images: list[str], videos: list[str], bad: dict[str, str]) -> str:
    """Line ``i`` of the dataset: mostly images, a video every 400 rows, bad rows every 250."""
    rng = np.random.default_rng(i)
    pick = [images[k] for k in rng.choice(len(images), size=1 + i % 3, replace=False)]
    text = {"type": "text", "text": f"Question {i}: what do you see?"}
    case = i % 250
    if i % 400 == 7:
        video: dict[str, Any] = {"type": "video", "video": videos[i % len(videos)]}
        if i % 800 == 7:
            video["nframes"] = 4
        return json.dumps(_conversation([video, {"type": "image", "image": pick[0]}, text]))
    special: dict[int, Any] = {
        11: _conversation([{"type": "image", "image": bad["missing"]}, text]),
        13: _conversation([{"type": "image", "image": pick[0]}, {"image": bad["corrupt"]}]),
        17: _conversation([{"type": "image", "image": bad["truncated"]}, text]),
        19: _conversation([{"type": "image", "image": pick[0], "max_pixels": "big"}]),
        23: _conversation([{"type": "video", "video": videos[0], "fps": 2, "nframes": 4}]),
        29: _conversation([{"type": "image"}, text]),
        31: None,  # not JSON
        37: {"conversation": _conversation([text])},  # a record without "messages"
        41: _conversation([text]),
        43: _conversation([{"type": "image_url", "image_url": {"url": "file://" + pick[0]}}]),
        47: {"messages": _conversation([{"type": "image", "image": pick[0]}, text])},
        53: _conversation([{"image": pick[0], "resized_height": 56, "resized_width": 84}]),
        59: _conversation([{"type": "image", "image": pick[0], "resized_height": -3}]),
    }
    if case == 31:
        return '[{"role": "user", "content": [{"type": "image", "image": '
    if case in special:
        return json.dumps(special[case])
    content: list[dict[str, Any]] = [{"type": "image", "image": p} for p in pick]
    if i % 7 == 0:
        content[0]["max_pixels"] = 1568  # an element key wins over the job's bound
    return json.dumps(_conversation([*content, text]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("raydata")
    images = []
    rng = np.random.default_rng(0)
    for k in range(36):
        width, height = (int(v) for v in rng.integers(20, 140, size=2))
        fmt = "PNG" if k % 4 == 0 else "JPEG"
        path = root / f"img{k:02d}.{fmt.lower()}"
        path.write_bytes(encode(photo(width, height, seed=k), fmt))
        images.append(str(path))
    videos = [
        str(write_clip(root / "clip0.mp4", width=64, height=48, fps=10, frames=20, seed=1)),
        str(write_clip(root / "clip1.mp4", width=48, height=64, fps=8, frames=24, seed=2)),
        str(write_clip(root / "clip2.mp4", width=80, height=48, fps=12, frames=30, seed=3)),
    ]
    whole = encode(photo(160, 120, seed=99), "JPEG")
    bad = {
        "missing": str(root / "missing.jpg"),
        "corrupt": str(root / "corrupt.jpg"),
        "truncated": str(root / "truncated.jpg"),
    }
    Path(bad["corrupt"]).write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    Path(bad["truncated"]).write_bytes(whole[: len(whole) // 2])  # header intact, pixels cut
    lines = [_line(i, images, videos, bad) for i in range(N)]
    path = root / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return {"root": root, "path": path, "lines": lines, "images": images, "videos": videos}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module: 2 CPUs, no dashboard, rows kept in order."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    yield
    ray.shutdown()


# --------------------------------------------------------------------------- references


def _reference_audit(path: Path) -> list[dict[str, Any]]:
    """vlprep-inspect's single-process rows per conversation (line), the library's path."""
    plan = expand([str(path)])
    settings = Settings(preset=vlprep.get_preset("qwen2.5-vl"), defaults=dict(BOUNDS), workers=2)
    rows = run(plan.items, settings, lambda _done: None)
    totals = {c.conversation: c for c in conversations(rows, plan.conversations, None)}
    grouped: dict[str, list[dict[str, Any]]] = {cid: [] for cid in plan.conversations}
    for row in rows:
        grouped[str(row.item.conversation)].append(row.as_dict())
    return [{"items": grouped[cid], "total": totals[cid]} for cid in plan.conversations]


def _comparable(entry: dict[str, Any]) -> dict[str, Any]:
    # index (global vs per row) and conversation (file:line vs the id column) are
    # numbered differently; a record-level error's source is the file vs null, and a JSON
    # error names the file's line vs the cell's own line and column.
    out = {k: v for k, v in entry.items() if k not in ("index", "conversation")}
    if entry["kind"] is None:
        out.pop("source")
        if "not valid JSON" in (entry["error"] or ""):
            out["error"] = "not valid JSON"
    return out


def _with_bounds(conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The job's bounds as element defaults, written out independently of vlprep."""
    out = []
    for message in conversation:
        content = []
        for ele in message["content"]:
            if any(k in ele for k in ("image", "image_url", "video", "video_url")):
                content.append({**{k: v for k, v in BOUNDS.items() if k not in ele}, **ele})
            else:
                content.append(ele)
        out.append({**message, "content": content})
    return out


def _reference_messages(line: str) -> list[dict[str, Any]]:
    record = json.loads(line)
    if isinstance(record, dict):
        record = record["messages"]
    return _with_bounds(record)


# --------------------------------------------------------------------------- auditor


@SLOW
def test_auditor_equals_vlprep_inspect_row_for_row(
    dataset: dict[str, Any], local_ray: None
) -> None:
    ds = vray.read_conversations(str(dataset["path"]))
    got = vray.audit(ds, "qwen2.5-vl", **BOUNDS).take_all()
    expected = _reference_audit(dataset["path"])
    assert len(got) == len(expected) == N
    kinds: dict[str, int] = {}
    for i, (row, ref) in enumerate(zip(got, expected, strict=True)):
        assert row["messages"] == dataset["lines"][i]
        assert [_comparable(e) for e in row["vision_items"]] == [
            _comparable(e) for e in ref["items"]
        ], i
        assert [e["index"] for e in row["vision_items"]] == list(range(1, len(ref["items"]) + 1))
        total = ref["total"]
        assert (row["image_count"], row["video_count"]) == (total.images, total.videos)
        assert (row["vision_tokens"], row["failures"]) == (total.tokens, total.failures)
        failed = [e for e in ref["items"] if e["status"] == "error"]
        assert row["error_type"] == (failed[0]["error_type"] if failed else None)
        if failed and "not valid JSON" in failed[0]["error"]:
            assert "not valid JSON" in row["error"]
        else:
            assert row["error"] == (failed[0]["error"] if failed else None)
        if failed:
            kinds[failed[0]["error_type"]] = kinds.get(failed[0]["error_type"], 0) + 1
    # every kind of bad row is there, each with its typed error
    assert kinds == {
        "SourceNotFoundError": 20,
        "DecodeError": 20,  # random bytes; the truncated JPEG's header is fine: no error here
        "InvalidInputError": 120,  # bad keys, no source, not JSON, no "messages", bad size
    }
    assert sum(r["video_count"] for r in got) == 13


def test_auditor_fields_are_the_cli_json_fields() -> None:
    document = io.StringIO()
    hopper = media_dir() / "images" / "hopper.jpg"
    assert main([str(hopper), "--format", "json"], stdout=document, stderr=io.StringIO()) == 0
    cli_fields = list(json.loads(document.getvalue())["items"][0])
    assert [name for name, _ in ITEM_FIELDS] == cli_fields


@SLOW
def test_parquet_in_and_out(dataset: dict[str, Any], local_ray: None, tmp_path: Path) -> None:
    """Nested Parquet conversations (Arrow fills absent keys with null) audit like the JSONL;
    the results written with Ray's Parquet and JSON sinks read back unchanged."""
    good = [i for i in range(600) if i % 250 not in (19, 31, 37, 47, 59)]
    rows = [{"id": f"c{i}", "messages": json.loads(dataset["lines"][i])} for i in good]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    nested = vray.read_conversations(str(tmp_path / "chat.parquet"))
    audited = vray.audit(nested, "qwen2.5-vl", id_column="id", **BOUNDS)
    audited.write_parquet(str(tmp_path / "out"))
    audited.write_json(str(tmp_path / "out_json"))
    back = pq.read_table(tmp_path / "out")
    assert back.schema.field("vision_items").type == audit_schema().field("vision_items").type
    by_id = {r["id"]: r for r in back.to_pylist()}
    files = sorted((tmp_path / "out_json").iterdir())
    jsonl = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    assert {r["id"] for r in jsonl} == set(by_id)
    reference = vray.Auditor("qwen2.5-vl", **BOUNDS).audit_rows(
        [dataset["lines"][i] for i in good], [f"c{i}" for i in good]
    )
    assert len(by_id) == len(good)
    for i, ref in zip(good, reference, strict=True):
        row = by_id[f"c{i}"]
        assert row["vision_items"] == ref["vision_items"]
        assert row["error_type"] == ref["error_type"]


# --------------------------------------------------------------------------- preprocessor


def _flat(column: Any, index: int) -> np.ndarray | None:
    value = column[index]
    return None if not value.is_valid else value.values.to_numpy(zero_copy_only=False)


@SLOW
def test_preprocessor_inputs_equal_build_inputs(
    dataset: dict[str, Any], local_ray: None, tmp_path: Path
) -> None:
    processor_dir = save_processor("qwen2.5-vl", tmp_path / "processor")
    ds = vray.read_conversations(str(dataset["path"]))
    out = vray.preprocess(ds, str(processor_dir), **BOUNDS)
    processor = vlprep.testing.load_processor("qwen2.5-vl", tmp_path / "ref")
    i = 0
    errors: dict[str, int] = {}
    for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
        assert batch.schema.remove(0) == preprocess_schema("inputs")
        columns = {name: batch.column(name) for name in batch.column_names}
        for j in range(batch.num_rows):
            row = {k: columns[k][j].as_py() for k in ("error_type", "error", "vlprep_params")}
            assert row["vlprep_params"]["preset"] == "qwen2.5-vl"
            assert row["vlprep_params"]["max_pixels"] == BOUNDS["max_pixels"]
            try:
                feature = vlprep.build_inputs(
                    _reference_messages(dataset["lines"][i]), processor, workers=1
                )
            except (VlprepError, json.JSONDecodeError, KeyError) as exc:
                expected = "InvalidInputError" if not isinstance(exc, VlprepError) else None
                assert row["error_type"] == (expected or type(exc).__name__), i
                if expected is None:
                    assert row["error"] == str(exc), i
                errors[row["error_type"]] = errors.get(row["error_type"], 0) + 1
                assert columns["input_ids"][j].as_py() is None
                i += 1
                continue
            assert row["error_type"] is None and row["error"] is None, (i, row)
            ids = feature["input_ids"][0].numpy()
            assert np.array_equal(columns["input_ids"][j].as_py(), ids), i
            assert columns["num_tokens"][j].as_py() == len(ids)
            assert np.array_equal(
                columns["mm_token_type_ids"][j].as_py(), feature["mm_token_type_ids"][0].numpy()
            )
            for name in ("pixel_values", "pixel_values_videos", "second_per_grid_ts"):
                got = _flat(columns[name], j)
                if name in feature:
                    assert np.array_equal(got, feature[name].numpy().reshape(-1)), (i, name)
                else:
                    assert got is None
            for name in ("image_grid_thw", "video_grid_thw"):
                want = feature[name].tolist() if name in feature else None
                assert columns[name][j].as_py() == want, (i, name)
            i += 1
    assert i == N
    assert errors == {
        "SourceNotFoundError": 20,
        "DecodeError": 40,  # random bytes, and the JPEG truncated after its header
        "InvalidInputError": 120,
    }


@SLOW
def test_preprocessor_media_equal_the_loaders(dataset: dict[str, Any], local_ray: None) -> None:
    count = 820  # three video rows (7, 407, 807), each kind of bad row three times or more
    lines = dataset["lines"][:count]
    ds = ray.data.from_items([{"messages": line} for line in lines])
    out = vray.preprocess(ds, preset="qwen2.5-vl", output="media", **BOUNDS).take_all()
    preset = vlprep.get_preset("qwen2.5-vl")
    videos = 0
    for i, row in enumerate(out):
        try:
            messages = _reference_messages(lines[i])
            elements = vlprep.extract_vision_info(messages)
            loaded = [
                fetch_image_for(e, preset)
                if "image" in e or "image_url" in e
                else fetch_video(
                    e, preset.patch_size, return_video_sample_fps=True, return_video_metadata=True
                )
                for e in elements
            ]
        except (VlprepError, json.JSONDecodeError, KeyError) as exc:
            assert row["error_type"] == (
                type(exc).__name__ if isinstance(exc, VlprepError) else "InvalidInputError"
            ), i
            assert row["media"] is None
            continue
        assert row["error"] is None, (i, row["error"])
        assert len(row["media"]) == len(loaded)
        for entry, want in zip(row["media"], loaded, strict=True):
            if isinstance(want, Image.Image):
                assert entry["encoding"] == "png"
                got = np.asarray(Image.open(io.BytesIO(entry["data"])))
                assert np.array_equal(got, np.asarray(want)), i
                assert (entry["height"], entry["width"]) == (want.height, want.width)
            else:
                videos += 1
                (frames, metadata), sample_fps = want
                assert entry["encoding"] == "rgb24"
                shape = (entry["frames"], entry["height"], entry["width"], 3)
                got = np.frombuffer(entry["data"], np.uint8).reshape(shape)
                assert np.array_equal(got, frames.permute(0, 2, 3, 1).numpy().astype(np.uint8))
                assert entry["sample_fps"] == sample_fps
                assert entry["frame_indices"] == list(metadata["frames_indices"])
    assert videos == 3


# --------------------------------------------------------------------------- vlprep-inspect --ray


@SLOW
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_cli_ray_prints_what_the_local_run_prints(
    dataset: dict[str, Any], local_ray: None, tmp_path: Path, fmt: str
) -> None:
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(dataset["lines"][:300]) + "\n")
    args = [
        str(small),
        dataset["images"][0],
        dataset["videos"][0],
        "--max-tokens",
        "40",
        "--format",
        fmt,
    ]
    local_out, local_err = io.StringIO(), io.StringIO()
    status = main(args, stdout=local_out, stderr=local_err)
    ray_out, ray_err = io.StringIO(), io.StringIO()
    assert main(["--ray", *args], stdout=ray_out, stderr=ray_err) == status == 1
    assert ray_out.getvalue() == local_out.getvalue()
    assert ray_err.getvalue() == local_err.getvalue()
    assert "summary" in ray_out.getvalue()


def test_ray_argument_is_an_address_only_when_it_reads_as_one() -> None:
    from vlprep.cli.inspect import _ray_argv

    assert _ray_argv(["--ray", "chat.jsonl"]) == ["--ray=", "chat.jsonl"]
    assert _ray_argv(["--ray", "auto", "chat.jsonl"]) == ["--ray", "auto", "chat.jsonl"]
    assert _ray_argv(["--ray", "ray://head:10001", "x"]) == ["--ray", "ray://head:10001", "x"]
    assert _ray_argv(["--ray", "10.0.0.5:6379", "x"]) == ["--ray", "10.0.0.5:6379", "x"]
    assert _ray_argv(["x", "--ray", "--format", "json"]) == ["x", "--ray", "--format", "json"]


def test_cli_ray_refuses_draw(tmp_path: Path) -> None:
    err = io.StringIO()
    code = main(["x.jpg", "--ray", "--draw", str(tmp_path)], stdout=io.StringIO(), stderr=err)
    assert code == 2 and "--draw" in err.getvalue()


# --------------------------------------------------------------------------- without a cluster


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'vlprep\[ray\]'"):
        vray.read_conversations("chat.jsonl")


def test_callables_run_on_plain_batches_without_ray(dataset: dict[str, Any]) -> None:
    lines = dataset["lines"][:20]
    table = pa.table({"messages": lines, "n": list(range(20))})
    auditor = vray.Auditor("qwen3-vl", max_tokens=64)
    out = auditor(table)
    assert out.column_names == ["messages", "n", *audit_schema().names]
    assert out.schema.remove(0).remove(0) == audit_schema()
    import pandas as pd

    assert auditor(pd.DataFrame({"messages": lines})).column("vision_tokens").to_pylist() == (
        out.column("vision_tokens").to_pylist()
    )
    assert auditor({"messages": np.array(lines, dtype=object)}).num_rows == 20
    with pytest.raises(InvalidInputError, match="already has columns"):
        auditor(out.select(["messages", "error"]))
    with pytest.raises(InvalidInputError, match="no column 'text'"):
        vray.Auditor(column="text")(table)


def test_bad_options_fail_on_the_driver() -> None:
    with pytest.raises(InvalidInputError, match="fps or nframes"):
        vray.Auditor(fps=2, nframes=4)
    with pytest.raises(InvalidInputError, match="max_pixels"):
        vray.Auditor(max_pixels=-1)
    with pytest.raises(InvalidInputError, match="unknown preset"):
        vray.Preprocessor(preset="qwen9", output="media")
    with pytest.raises(InvalidInputError, match="needs a processor"):
        vray.Preprocessor()
    with pytest.raises(InvalidInputError, match="output must be"):
        vray.Preprocessor(output="pixels")  # type: ignore[arg-type]
