"""vlprep-inspect: input kinds, output formats, summary, --max-tokens, failures, exit codes,
progress and pictures. Most runs call main() in-process; a few run the real command."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import vlprep
from tests.conftest import encode, media_dir, photo
from tests.media_server import serving
from tests.videos import write_clip
from vlprep.cli._output import CSV_FIELDS, HEADERS_ONLY, _nearest_rank
from vlprep.cli._pictures import BLOCK_COLOR, PATCH_COLOR, SHEET_COLUMNS, SHEET_LABEL, THUMB_SIDE
from vlprep.cli.inspect import main

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
MEDIA = media_dir()
pytestmark = pytest.mark.timeout(60)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def cli(*args: object, tty: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), (_Tty() if tty else io.StringIO())
    code = main([str(a) for a in args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def items(*args: object) -> list[dict[str, Any]]:
    code, out, err = cli(*args, "--format", "json")
    assert code in (0, 1), err
    return json.loads(out)["items"]  # type: ignore[no-any-return]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """a.jpg, b.png, notes.txt, sub/c.webp, sub/deeper/d.jpg, sub/clip.mp4."""
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "a.jpg").write_bytes(encode(photo(640, 480)))
    (tmp_path / "b.png").write_bytes(encode(photo(100, 300), "PNG"))
    (tmp_path / "notes.txt").write_text("not media")
    (tmp_path / "sub" / "c.webp").write_bytes(encode(photo(333, 222), "WEBP"))
    (tmp_path / "sub" / "deeper" / "d.jpg").write_bytes(encode(photo(1500, 900)))
    write_clip(tmp_path / "sub" / "clip.mp4", frames=30, fps=15)
    return tmp_path


# --------------------------------------------------------------------------- input kinds


def test_files_and_folders(folder: Path) -> None:
    rows = items(folder / "a.jpg", folder)
    names = [Path(r["source"]).name for r in rows]
    assert names == ["a.jpg", "a.jpg", "b.png", "c.webp", "clip.mp4", "d.jpg"]
    assert all(r["status"] == "ok" for r in rows)
    expected = vlprep.inspect(str(folder / "a.jpg"))
    assert (rows[0]["height"], rows[0]["width"], rows[0]["tokens"]) == (
        expected.height,
        expected.width,
        expected.tokens,
    )
    video = rows[4]
    assert video["kind"] == "video" and video["frames"] == 4 and video["duration"] == 2.0
    assert video["frame_indices"] == list(
        vlprep.inspect(str(folder / "sub/clip.mp4")).frame_indices
    )


def test_globs(folder: Path) -> None:
    assert [Path(r["source"]).name for r in items(f"{folder}/*.jpg")] == ["a.jpg"]
    recursive = [Path(r["source"]).name for r in items(f"{folder}/**")]
    assert recursive == ["a.jpg", "b.png", "c.webp", "clip.mp4", "d.jpg"]  # each once
    code, _, err = cli(f"{folder}/*.gif")
    assert code == 1 and "SourceNotFoundError: no image, video or dataset files match" in err


def test_urls_and_data_uris(folder: Path) -> None:
    image = (folder / "a.jpg").read_bytes()
    clip = (folder / "sub" / "clip.mp4").read_bytes()
    with serving({"a.jpg": image, "clip.mp4": clip, "noext": image}) as server:
        uri = "data:image/jpeg;base64," + base64.b64encode(image).decode()
        urls = [server.url("f", n) for n in ("a.jpg", "clip.mp4", "noext")]
        rows = items(*urls, uri)
    assert [r["kind"] for r in rows] == ["image", "video", "image", "image"]
    assert len({r["tokens"] for r in (rows[0], rows[2], rows[3])}) == 1
    assert rows[3]["source"].startswith("data:image/jpeg;base64,<")
    assert rows[1]["frames"] == 4


def _conv(*elements: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*elements, {"type": "text", "text": "hi"}]}]


def test_datasets_json_and_jsonl(tmp_path: Path) -> None:
    hopper, flower = str(FIXTURES / "hopper.jpg"), str(FIXTURES / "flower2.jpg")
    single = tmp_path / "one.json"
    single.write_text(json.dumps(_conv({"type": "image", "image": hopper, "max_pixels": 5000})))
    listed = tmp_path / "many.json"
    listed.write_text(
        json.dumps(
            [
                _conv({"type": "image", "image": hopper}),
                {"messages": _conv({"type": "image_url", "image_url": {"url": flower}})},
            ]
        )
    )
    lines = tmp_path / "lines.jsonl"
    lines.write_text(
        json.dumps(_conv({"image": hopper}, {"video": str(FIXTURES / "nasa_13013.mp4")}))
        + "\n\n{broken\n"
        + json.dumps([{"role": "user", "content": "text only"}])
        + "\n"
    )
    code, out, err = cli(single, listed, lines, "--format", "json", "--max-pixels", 110_000)
    doc = json.loads(out)
    assert code == 1 and "InvalidInputError: line 3 of" in err
    convs = [c["conversation"] for c in doc["conversations"]]
    assert convs == [
        str(single),
        f"{listed}#0",
        f"{listed}#1",
        f"{lines}:1",
        f"{lines}:3",
        f"{lines}:4",
    ]
    rows = doc["items"]
    # The element's own max_pixels (5000) wins over --max-pixels (20000).
    assert rows[0]["tokens"] == vlprep.inspect({"image": hopper, "max_pixels": 5000}).tokens
    assert rows[1]["tokens"] == vlprep.inspect(hopper, max_pixels=110_000).tokens
    assert rows[2]["source"] == flower and rows[2]["conversation"] == f"{listed}#1"
    video = vlprep.inspect(str(FIXTURES / "nasa_13013.mp4"), max_pixels=110_000)
    by_id = {c["conversation"]: c for c in doc["conversations"]}
    assert by_id[f"{lines}:1"]["tokens"] == rows[3]["tokens"] + video.tokens
    assert by_id[f"{lines}:1"]["videos"] == 1 and by_id[f"{lines}:4"]["tokens"] == 0
    assert by_id[f"{lines}:3"]["status"] == "error"
    assert doc["summary"]["conversations"]["failures"] == 1


def test_dataset_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"role": "user", "content": [{"type": "image"}]}, 3]))
    code, out, err = cli(bad, odd, "--format", "jsonl")
    assert code == 1
    assert "InvalidInputError" in err and "is not valid JSON (line 1" in err
    records = [json.loads(line) for line in out.splitlines()]
    errors = [r["error_type"] for r in records if r["record"] == "item"]
    assert errors == ["InvalidInputError", "InvalidInputError", "InvalidInputError"]


# --------------------------------------------------------------------------- formats


def test_table_format() -> None:
    code, out, err = cli(FIXTURES / "hopper.jpg", FIXTURES / "nasa_13013.mp4")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == [
        "#", "source", "kind", "original", "resized", "grid", "tokens", "frames", "@", "fps", "note"
    ]  # fmt: skip
    assert "128x128" in lines[2] and "140x140" in lines[2] and "1x10x10" in lines[2]
    assert "26 @ 2.00" in lines[3]
    assert lines[-1].startswith("summary: 2 items, 0 failed, tokens total 2,235")


def test_json_jsonl_csv_agree() -> None:
    args = [FIXTURES / "hopper.jpg", FIXTURES / "nasa_13013.mp4", "missing.png"]
    _, out, _ = cli(*args, "--format", "json", "--model", "qwen3-vl")
    doc = json.loads(out)
    assert doc["settings"] == {"model": "qwen3-vl"}
    _, out, _ = cli(*args, "--format", "jsonl", "--model", "qwen3-vl")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r.pop("record") for r in records] == ["item", "item", "item", "summary"]
    assert records[:3] == doc["items"]
    assert records[3]["items"] == doc["summary"]["items"]
    code, out, err = cli(*args, "--format", "csv", "--model", "qwen3-vl")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 1 and list(rows[0]) == CSV_FIELDS
    assert "summary: 3 items, 1 failed" in err
    for row, item in zip(rows, doc["items"], strict=True):
        assert row["tokens"] == ("" if item["tokens"] is None else str(item["tokens"]))
        assert row["status"] == item["status"]
    assert [rows[1]["grid_t"], rows[1]["grid_h"], rows[1]["grid_w"]] == [
        str(g) for g in doc["items"][1]["grid"]
    ]
    assert rows[1]["frame_indices"].split() == [str(i) for i in doc["items"][1]["frame_indices"]]
    assert rows[2]["error_type"] == "SourceNotFoundError"


# --------------------------------------------------------------------------- summary, flags


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 21))
    assert (_nearest_rank(values, 0.5), _nearest_rank(values, 0.95)) == (10, 19)
    assert _nearest_rank([7], 0.95) == 7


def test_summary_matches_the_items(tmp_path: Path) -> None:
    for i, (w, h) in enumerate([(50, 50), (640, 480), (1920, 1080), (300, 900), (90, 2000)]):
        (tmp_path / f"{i}.jpg").write_bytes(encode(photo(w, h, seed=i)))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    _, out, _ = cli(tmp_path, "--format", "json")
    doc = json.loads(out)
    tokens = sorted(r["tokens"] for r in doc["items"] if r["status"] == "ok")
    summary = doc["summary"]["items"]
    assert summary["count"] == 6 and summary["ok"] == 5 and summary["failures"] == 1
    assert summary["total"] == sum(tokens) and summary["max"] == tokens[-1]
    assert summary["mean"] == round(sum(tokens) / 5, 1)
    assert summary["p50"] == tokens[math.ceil(0.5 * 5) - 1] and summary["p95"] == tokens[-1]
    assert doc["summary"]["conversations"] is None and doc["conversations"] is None


def test_max_tokens_flags_items_and_conversations(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    small = {"image": str(FIXTURES / "hopper.jpg")}  # 25 tokens
    data.write_text(json.dumps(_conv(small, small, small)) + "\n" + json.dumps(_conv(small)) + "\n")
    code, out, _ = cli(data, FIXTURES / "flower2.jpg", "--max-tokens", 60, "--format", "json")
    doc = json.loads(out)
    assert code == 0  # a flag, not a failure
    assert [r["over_limit"] for r in doc["items"]] == [False, False, False, False, True]
    assert [c["over_limit"] for c in doc["conversations"]] == [True, False]
    assert doc["summary"]["items"]["over_limit"] == 1
    assert doc["summary"]["conversations"]["over_limit"] == 1
    assert doc["settings"]["max_tokens"] == 60
    _, table, _ = cli(data, "--max-tokens", 60)
    assert table.count("OVER LIMIT") == 1 and "1 over the limit" in table


def test_bounds_options(folder: Path) -> None:
    path = folder / "sub" / "deeper" / "d.jpg"
    for args, kwargs in (
        (["--max-pixels", 50000], {"max_pixels": 50000}),
        (["--min-pixels", 2e6], {"min_pixels": 2e6}),
        (["--model", "qwen3-vl"], {"preset": "qwen3-vl"}),
    ):
        (row,) = items(path, *args)
        assert row["tokens"] == vlprep.inspect(str(path), **kwargs).tokens
    clip = folder / "sub" / "clip.mp4"
    (row,) = items(clip, "--fps", 4, "--total-pixels", 400_000)
    assert row["frames"] == 8
    assert row["tokens"] == vlprep.inspect(str(clip), fps=4, total_pixels=400_000).tokens
    (row,) = items(clip, "--nframes", 6)
    assert row["frames"] == 6


def test_workers_keep_the_order(folder: Path) -> None:
    args = [folder, folder / "missing.jpg", *[folder / "a.jpg"] * 5, folder]
    assert items(*args, "--workers", 1) == items(*args, "--workers", 7)


def test_progress_bar_only_on_a_terminal(folder: Path) -> None:
    code, _, err = cli(folder, tty=True)
    assert code == 0 and "[" + "#" * 30 + "] 5/5" in err
    assert cli(folder)[2] == ""  # not a terminal: nothing on stderr
    assert "#" not in cli(folder / "a.jpg", tty=True)[2]  # a single item: no bar


# --------------------------------------------------------------------------- failures, exit codes


def test_failures_are_typed_and_never_echo_payloads(tmp_path: Path) -> None:
    (tmp_path / "x.tif").write_bytes((MEDIA / "hostile" / "hopper.tif").read_bytes())
    junk = "data:image/png;base64," + base64.b64encode(b"SECRET-PAYLOAD" * 10).decode()
    code, out, err = cli(
        MEDIA / "hostile" / "decompression_bomb.gif",
        tmp_path / "x.tif",
        junk,
        tmp_path / "nope.jpg",
    )
    assert code == 1
    types = [line.split(": ")[2] for line in err.splitlines()]
    assert types == [
        "ResourceLimitError",
        "UnsupportedFormatError",
        "DecodeError",
        "SourceNotFoundError",
    ]
    assert base64.b64encode(b"SECRET-PAYLOAD").decode()[:12] not in out + err
    assert "summary: 4 items, 4 failed" in out


def _command(*args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "vlprep.cli.inspect", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_exit_codes_of_the_real_command(tmp_path: Path) -> None:
    ok = _command(FIXTURES / "hopper.jpg", "--format", "csv")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == ",".join(CSV_FIELDS)
    failed = _command(FIXTURES / "hopper.jpg", tmp_path / "missing.jpg")
    assert failed.returncode == 1
    assert "missing.jpg: SourceNotFoundError: no such file" in failed.stderr
    usage = _command(FIXTURES / "hopper.jpg", "--fps", 1, "--nframes", 4)
    assert usage.returncode == 2 and "not allowed with argument" in usage.stderr
    assert _command("--help").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["x.jpg", "--workers", "0"],
        ["x.jpg", "--max-pixels", "-5"],
        ["x.jpg", "--max-pixels", "nan"],
        ["x.jpg", "--model", "qwen4-vl"],
        ["x.jpg", "--format", "xml"],
        ["x.jpg", "--max-tokens", "1.5"],
        ["x.jpg", "--bogus"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    code, out, err = cli(*args)
    assert code == 2 and out == "" and "usage: vlprep-inspect" in err


def test_entry_points() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^vlprep-inspect = "vlprep\.cli\.inspect:main"$', scripts, re.M)
    assert callable(vlprep.inspect) and vlprep.inspect.__module__ == "vlprep._estimates"
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"vlprep-inspect {vlprep.__version__}"


# --------------------------------------------------------------------------- pictures


def test_draw_image_grid(tmp_path: Path) -> None:
    src = tmp_path / "gray.png"
    Image.new("RGB", (280, 168), (128, 128, 128)).save(src)  # already on the 28 grid
    code, out, _ = cli(src, "--draw", tmp_path / "pics", "--format", "json", "--model", "qwen2-vl")
    (row,) = json.loads(out)["items"]
    assert code == 0 and Path(row["picture"]) == tmp_path / "pics" / "0001-gray.png"
    with Image.open(row["picture"]) as opened:
        picture = opened.convert("RGB")
    assert picture.size == (row["width"], row["height"]) == (280, 168)

    def expected(at: int, size: int) -> tuple[int, int, int]:
        if 0 < at < size - 1 and at % 28 in (0, 27):  # inner block boundaries, 2 px
            return BLOCK_COLOR
        if at % 14 == 0 and at > 0:
            return PATCH_COLOR
        return (128, 128, 128)

    assert [picture.getpixel((x, 5)) for x in range(280)] == [expected(x, 280) for x in range(280)]
    assert [picture.getpixel((5, y)) for y in range(168)] == [expected(y, 168) for y in range(168)]
    assert picture.getpixel((7, 7)) == (128, 128, 128)


def test_draw_qwen3_grid_and_real_photo(tmp_path: Path) -> None:
    code, out, _ = cli(
        FIXTURES / "hopper.jpg", "--draw", tmp_path, "--model", "qwen3-vl", "--format", "json"
    )
    (row,) = json.loads(out)["items"]
    assert code == 0
    with Image.open(row["picture"]) as picture:
        assert picture.size == (row["width"], row["height"]) == (256, 256)  # the 65,536 minimum
        assert picture.convert("RGB").getpixel((16, 3)) == PATCH_COLOR
        assert picture.convert("RGB").getpixel((32, 3)) == BLOCK_COLOR


def test_draw_video_contact_sheet(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", width=320, height=180, frames=90, fps=15)
    code, out, _ = cli(clip, "--draw", tmp_path / "pics", "--format", "json")
    (row,) = json.loads(out)["items"]
    assert code == 0 and row["frames"] == 12
    scale = min(1.0, THUMB_SIDE / max(row["height"], row["width"]))
    tw, th = round(row["width"] * scale), round(row["height"] * scale)
    columns = min(SHEET_COLUMNS, row["frames"])
    rows = math.ceil(row["frames"] / columns)
    with Image.open(row["picture"]) as sheet:
        assert sheet.size == (columns * tw, rows * (th + SHEET_LABEL))
        # The label strip of the last frame holds white text.
        x0, y0 = ((row["frames"] - 1) % columns) * tw, (rows - 1) * (th + SHEET_LABEL) + th
        strip = sheet.convert("L").crop((x0, y0, x0 + tw, y0 + SHEET_LABEL))
        low, high = strip.getextrema()
        assert low == 32 and high > 200  # light text on the dark background


def test_draw_reports_a_decode_failure(tmp_path: Path) -> None:
    shutil.copy(MEDIA / "images" / "ultrahdr.jpg", tmp_path / "u.jpg")
    code, out, err = cli(tmp_path / "u.jpg", "--draw", tmp_path / "pics", "--format", "json")
    (row,) = json.loads(out)["items"]
    assert code == 1 and row["tokens"] > 0 and row["picture"] is None
    assert row["error_type"] == "DecodeError" and "drawing:" in err
    assert not list((tmp_path / "pics").iterdir())


# --------------------------------------------------------------------------- --verify

TRUNCATED = MEDIA / "hostile" / "truncated_jpeg.jpg"


def test_without_verify_a_truncated_image_is_estimated_and_the_table_says_headers_only() -> None:
    code, out, err = cli(TRUNCATED)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "1x8x8" in lines[2] and lines[2].split()[-1] == "16"  # an estimate, no error
    assert lines[-2] == HEADERS_ONLY  # just above the summary
    assert lines[-1].startswith("summary: 1 items, 0 failed")
    (row,) = items(TRUNCATED)
    assert row["status"] == "ok" and row["decoded"] is False


def test_verify_reports_a_truncated_image_as_a_decode_error() -> None:
    code, out, err = cli(TRUNCATED, "--verify")
    assert code == 1
    assert HEADERS_ONLY not in out
    assert "DecodeError" in out.splitlines()[2]
    assert "truncated_jpeg.jpg: DecodeError: decoding: cannot decode JPEG pixels" in err
    code, out, _ = cli(TRUNCATED, "--verify", "--format", "json")
    (row,) = json.loads(out)["items"]
    assert code == 1 and row["status"] == "error" and row["error_type"] == "DecodeError"
    assert row["tokens"] == 16 and row["decoded"] is True  # the estimate is kept
    code, out, _ = cli(TRUNCATED, "--verify", "--format", "csv")
    (csv_row,) = csv.DictReader(io.StringIO(out))
    assert code == 1 and csv_row["status"] == "error" and csv_row["decoded"] == "True"


def test_verify_decodes_good_images_and_videos(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", width=64, height=48, frames=12, fps=6)
    code, out, err = cli(FIXTURES / "hopper.jpg", clip, "--verify")
    assert code == 0 and err == "" and HEADERS_ONLY not in out
    rows = items(FIXTURES / "hopper.jpg", clip, "--verify")
    assert [(r["status"], r["decoded"]) for r in rows] == [("ok", True), ("ok", True)]
    assert rows == [
        {**r, "decoded": True} for r in items(FIXTURES / "hopper.jpg", clip)
    ]  # the same estimates


def test_draw_decodes_so_the_table_does_not_say_headers_only(tmp_path: Path) -> None:
    code, out, _ = cli(FIXTURES / "hopper.jpg", "--draw", tmp_path)
    assert code == 0 and HEADERS_ONLY not in out


def test_draw_dir_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = cli(FIXTURES / "hopper.jpg", "--draw", tmp_path / "file" / "sub")
    assert code == 2 and "--draw: cannot create" in err
