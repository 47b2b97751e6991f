"""vlprep.grounding.convert_dataset and ``vlprep-grounding convert``: datasets rewritten in place.

The datasets are written from templates whose coordinates are placeholders: the input fills
them with the source numbers, the expected output with the target numbers worked out here
from the formulas, so ``output == expected`` checks every other byte too.
"""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import encode, photo
from tests.media_server import serving
from vlprep import grounding as g
from vlprep._errors import InvalidInputError
from vlprep._presets import QWEN2_5_VL
from vlprep._sizing import smart_resize
from vlprep.cli.grounding import main

PLACEHOLDER = re.compile(r"@(\w+):(-?\d+)@")


def fill(template: str, frames: dict[str, tuple[tuple[int, int], tuple[int, int]]]) -> tuple[str, str]:  # fmt: skip
    """``(input, expected)``: ``@NAME:V@`` is source value V, an x if the placeholder is the
    first, third... of its group NAME, converted with that group's (source, target) frames."""
    counts: dict[str, int] = {}

    def source(match: re.Match[str]) -> str:
        return match.group(2)

    def target(match: re.Match[str]) -> str:
        name, value = match.group(1), int(match.group(2))
        index = counts.get(name, 0)
        counts[name] = index + 1
        frame_from, frame_to = frames[name]
        axis = 1 if index % 2 == 0 else 0
        return str(math.floor(value * frame_to[axis] / frame_from[axis] + 0.5))

    return PLACEHOLDER.sub(source, template), PLACEHOLDER.sub(target, template)


@pytest.fixture
def pictures(tmp_path: Path) -> dict[str, str]:
    land = tmp_path / "land.jpg"
    land.write_bytes(encode(photo(640, 480, seed=1), "JPEG"))
    other = tmp_path / "other.png"
    other.write_bytes(encode(photo(320, 320, seed=2), "PNG"))
    turned = tmp_path / "turned.jpg"  # stored 200 wide x 300 tall; displayed 300 x 200
    exif = Image.Exif()
    exif[0x0112] = 6
    turned.write_bytes(encode(photo(200, 300, seed=3), "JPEG", exif=exif.tobytes()))
    return {"land": str(land), "other": str(other), "turned": str(turned)}


NORM = (1000, 1000)


def mixed_jsonl(p: dict[str, str]) -> tuple[str, dict[str, tuple[tuple[int, int], tuple[int, int]]]]:  # fmt: skip
    """A JSONL dataset mixing record shapes, text forms, escapes and line endings."""
    lines = [
        # Qwen message format, an element bound, a box in the prompt (special tokens) and
        # the answer (JSON, label escaped as \uXXXX), CRLF line ending.
        '{"messages": [{"role": "system", "content": "Answer like {\\"bbox_2d\\": [1, 2, 3, 4]}"}, '
        '{"role": "user", "content": [{"type": "image", "image": "'
        + p["land"]
        + '", "max_pixels": 78400}, '
        '{"type": "text", "text": "What is in <|box_start|>(@a:10@,@a:20@),(@a:200@,@a:100@)<|box_end|>?"}]}, '
        '{"role": "assistant", "content": "```json\\n[\\n\\t{\\"bbox_2d\\": [@a:0@, @a:5@, @a:279@, @a:223@], '
        '\\"label\\": \\"\\u72d7 1, 2\\"},\\n\\t{\\"point_2d\\": [@a:140@,@a:-3@]}\\n]\\n```"}], "id": 1}\r',
        "",
        # ShareGPT with a record-level images list; the image is stored sideways (EXIF 6).
        '{"images": ["' + p["turned"] + '"], "conversations": [{"from": "human", "value": '
        '"<image>\\nWhere is the cat? It is not at (1, 2), (3, 4)."}, {"from": "gpt", "value": '
        '"{\\"bbox_2d\\" :[ @t:300@ , @t:190@,@t:1@,  @t:0@ ]}"}]}',
        # Qwen-VL data: the image path in the prompt, the answer in tags, raw UTF-8.
        '{"messages": [{"role": "user", "content": "Picture 1: <img>'
        + p["land"]
        + '</img>\\n狗在哪里？"}, '  # noqa: RUF001
        '{"role": "assistant", "content": "<ref>狗</ref><box>(@l:100@,@l:200@),(@l:300@,@l:400@)</box>'
        '<quad>(@l:1@,@l:2@),(@l:3@,@l:4@),(@l:5@,@l:6@),(@l:7@,@l:8@)</quad>"}]}',
        # No grounding at all, numbers everywhere else.
        '{"messages": [{"role": "user", "content": "3 cats (10, 20), (30, 40)"}, '
        '{"role": "assistant", "content": "42"}], "max_pixels": 1000}',
    ]
    frames = {
        "a": (smart_resize(480, 640, 28, 3136, 78400), NORM),
        "t": (smart_resize(200, 300, 28, 3136, QWEN2_5_VL.image_max_pixels), NORM),
        "l": (smart_resize(480, 640, 28, 3136, QWEN2_5_VL.image_max_pixels), NORM),
    }
    return "\n".join(lines) + "\n", frames


def test_mixed_jsonl_changes_only_the_coordinates(pictures: dict[str, str]) -> None:
    template, frames = mixed_jsonl(pictures)
    assert frames["t"][0] == (196, 308)  # upright 300 x 200, not the stored 200 x 300
    data, expected = fill(template, frames)
    assert data != expected
    result = g.convert_dataset(data, "qwen2.5-vl", "qwen3-vl", lines=True)
    assert result.problems == ()
    assert result.text == expected
    assert result.records == 4 and result.items == 6
    assert [r.where for r in result.rewrites] == [
        "line 1: messages[1].content[1] (user)",
        "line 1: messages[2].content (assistant)",
        "line 3: conversations[1].value (gpt)",
        "line 4: messages[1].content (assistant)",
    ]
    for line in expected.split("\n"):
        if line.strip():
            json.loads(line)  # still JSON
    # And back: within the documented rounding of where it started.
    back = g.convert_dataset(result.text, "qwen3-vl", "qwen2.5-vl", lines=True)
    assert back.problems == ()
    assert _digits_removed(back.text) == _digits_removed(data)


def _digits_removed(text: str) -> str:
    return re.sub(r"-?\d+", "#", text)


def test_problem_records_are_left_whole(pictures: dict[str, str], tmp_path: Path) -> None:
    good = '{"messages": [{"role": "user", "content": [{"image": "' + pictures["land"] + '"}]}, {"role": "assistant", "content": "[{\\"bbox_2d\\": [1, 2, 3, 4]}]"}]}'  # fmt: skip
    bad = [
        # a malformed box: the record's good box in the prompt is not converted either
        '{"messages": [{"role": "user", "content": [{"image": "' + pictures["land"] + '"}, {"text": "<|box_start|>(1,2),(3,4)<|box_end|>"}]}, {"role": "assistant", "content": "[{\\"bbox_2d\\": [1, 2, 3]}]"}]}',
        '{"messages": [{"role": "user", "content": [{"image": "' + str(tmp_path / "missing.jpg") + '"}]}, {"role": "assistant", "content": "[{\\"bbox_2d\\": [1, 2, 3, 4]}]"}]}',
        '{"messages": [{"role": "user", "content": [{"image": "http://127.0.0.1:9/x.jpg"}]}, {"role": "assistant", "content": "[{\\"bbox_2d\\": [1, 2, 3, 4]}]"}]}',
        '{"messages": [{"role": "assistant", "content": "[{\\"bbox_2d\\": [1, 2, 3, 4]}]"}]}',
        '{"images": ["' + pictures["land"] + '", "' + pictures["other"] + '"], "messages": [{"role": "assistant", "content": "[{\\"bbox_2d\\": [1, 2, 3, 4]}]"}]}',
        '{"messages": [{"role": "user"',
        '{"messages": [], "messages": []}',
        '"a string"',
    ]  # fmt: skip
    data = "\n".join([good, *bad, good])
    result = g.convert_dataset(data, "qwen2.5-vl", "qwen3-vl", lines=True)
    out = result.text.split("\n")
    assert out[1:-1] == bad  # byte for byte
    assert out[0] == out[-1] != good
    errors = {p.where: p.error for p in result.problems}
    assert list(errors) == [f"line {n}" for n in range(2, 10)]
    assert errors["line 2"].startswith("GroundingParseError: bbox_2d must be a list of 4")
    assert errors["line 3"].startswith("SourceNotFoundError")
    assert errors["line 4"].startswith("FetchError")  # nothing listens there; the CLI refuses it
    assert "no image" in errors["line 5"]
    assert "2 images with different coordinate frames" in errors["line 6"]
    assert "not valid JSON" in errors["line 7"]
    assert "duplicate key" in errors["line 8"]
    assert "a record must be" in errors["line 9"]
    assert not result.ok and result.records == 10
    assert all(len(e) < 300 for e in errors.values())  # short, whatever the record holds


def test_json_file_and_identity(pictures: dict[str, str]) -> None:
    records = [
        {"messages": [
            {"role": "user", "content": [{"type": "image", "image": pictures["land"]},
                                         {"type": "text", "text": "Find the dog."}]},
            {"role": "assistant", "content": '[{"bbox_2d": [10, 20, 300, 400], "label": "狗"}]'},
        ]},
        [{"role": "user", "content": [{"image": pictures["turned"]}]},
         {"role": "assistant", "content": '{"point_2d": [150, 100]}'}],
    ]  # fmt: skip
    data = json.dumps(records, indent=2, ensure_ascii=False)
    result = g.convert_dataset(data, "qwen2.5-vl", "qwen2-vl")
    land, turned = smart_resize(480, 640), smart_resize(200, 300)
    assert result.problems == () and result.items == 2
    expect = [
        round(10 * 1000 / land[1]),
        round(20 * 1000 / land[0]),
        round(300 * 1000 / land[1]),
        round(400 * 1000 / land[0]),
    ]
    converted = json.loads(result.text)
    answer = json.loads(converted[0]["messages"][1]["content"])
    assert answer == [{"bbox_2d": expect, "label": "狗"}]
    assert json.loads(converted[1][1]["content"]) == {
        "point_2d": [round(150 * 1000 / turned[1]), round(100 * 1000 / turned[0])]
    }
    assert _digits_removed(result.text) == _digits_removed(data)
    # Converting to the generation the data came from changes nothing and reads no image.
    same = g.convert_dataset(data, "qwen2.5-vl", QWEN2_5_VL)
    assert same.text == data and same.items == 2 and {r.numbers for r in same.rewrites} == {0}
    norm = g.convert_dataset(data.replace(pictures["land"], "/nowhere.jpg"), "qwen3-vl", "qwen2-vl")
    assert norm.problems == () and norm.items == 2
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        g.convert_dataset(data[:-1], "qwen2.5-vl", "qwen3-vl")
    with pytest.raises(InvalidInputError, match="format"):
        g.convert_dataset(data, "qwen2.5-vl", "qwen3-vl", format="xml")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- the CLI


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_convert_check_and_exit_codes(pictures: dict[str, str], tmp_path: Path) -> None:
    template, frames = mixed_jsonl(pictures)
    data, expected = fill(template, frames)
    dataset = tmp_path / "train.jsonl"
    dataset.write_bytes(("\ufeff" + data).encode())
    code, out, err = run_cli("convert", str(dataset), "--from", "qwen2.5-vl", "--to", "qwen3-vl", "--check", "-v")  # fmt: skip
    assert code == 0 and out == ""
    assert "would rewrite 24 number(s) in 4 string(s)" in err
    assert "line 3: conversations[1].value (gpt): 1 item(s), 3 number(s)" in err
    assert dataset.read_bytes() == ("\ufeff" + data).encode()  # --check writes nothing

    target = tmp_path / "out" / "train.jsonl"
    target.parent.mkdir()
    code, _, err = run_cli("convert", str(dataset), "--from", "qwen2.5-vl", "--to", "qwen3-vl", "-o", str(target))  # fmt: skip
    assert code == 0, err
    assert target.read_bytes() == ("\ufeff" + expected).encode()  # BOM and CRLF kept

    code, out, _ = run_cli("convert", str(dataset), "--from", "qwen2.5-vl", "--to", "qwen3-vl", "-o", "-")  # fmt: skip
    assert code == 0 and out == "\ufeff" + expected

    # In place, with bounds: a smaller Qwen2.5-VL max_pixels changes the frames of the
    # elements that do not set their own.
    code, _, err = run_cli("convert", str(dataset), "--from", "qwen2.5-vl", "--to", "qwen2.5-vl",
                           "--to-max-pixels", str(64 * 784), "-o", str(dataset))  # fmt: skip
    assert code == 0, err
    small = {k: (v[0], smart_resize(480, 640, 28, 3136, 64 * 784)) for k, v in frames.items()}
    small["a"] = (frames["a"][0], frames["a"][0])  # the element's own max_pixels wins
    small["t"] = (frames["t"][0], smart_resize(200, 300, 28, 3136, 64 * 784))
    assert dataset.read_bytes() == ("\ufeff" + fill(template, small)[1]).encode()

    broken = tmp_path / "broken.jsonl"
    broken.write_text(data + '{"messages": [{"role": "assistant", "content": "<box>(1)</box>"}]}\n')
    code, _, err = run_cli("convert", str(broken), "--from", "qwen2.5-vl", "--to", "qwen3-vl", "-o", str(tmp_path / "b.jsonl"))  # fmt: skip
    assert code == 1
    assert "line 6: not converted: GroundingParseError" in err
    assert "1 record(s) not converted" in err
    assert (tmp_path / "b.jsonl").read_text().endswith('"<box>(1)</box>"}]}\n')

    convert = ["convert", str(dataset)]
    usage = [
        [*convert, "--from", "qwen2.5-vl", "--to", "qwen3-vl"],  # neither -o nor --check
        [*convert, "--from", "llava", "--to", "qwen3-vl", "--check"],
        ["convert", str(tmp_path / "none.json"), "--from", "qwen2-vl", "--to", "qwen3-vl", "--check"],
        [*convert, "--from", "qwen2-vl", "--to", "qwen3-vl", "--from-max-pixels", "0", "--check"],
        [*convert, "--from", "qwen2.5-vl", "--to", "qwen3-vl", "--from-min-pixels", "9000000",
         "--from-max-pixels", "100", "--check"],
        [*convert, "--from", "qwen2.5-vl", "--to", "qwen3-vl", "-o", str(tmp_path / "no" / "d.jsonl")],
        [],
    ]  # fmt: skip
    for argv in usage:
        code, _, err = run_cli(*argv)
        assert code == 2, err
    not_json = tmp_path / "bad.json"
    not_json.write_text("[{")
    code, _, err = run_cli("convert", str(not_json), "--from", "qwen2.5-vl", "--to", "qwen3-vl", "--check")  # fmt: skip
    assert code == 2 and "not valid JSON" in err
    code, out, _ = run_cli("--version")
    assert code == 0 and out.startswith("vlprep-grounding ")


def test_cli_reads_image_urls_through_the_guarded_fetch(tmp_path: Path) -> None:
    image = encode(photo(640, 480, seed=5), "JPEG")
    frame = smart_resize(480, 640)
    with serving({"a.jpg": image}) as server:
        url = server.url("f", "a.jpg")
        record = {"messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]},
            {"role": "assistant", "content": f'{{"bbox_2d": [0, 0, {frame[1]}, {frame[0]}]}}'},
        ]}  # fmt: skip
        dataset = tmp_path / "urls.jsonl"
        dataset.write_text(json.dumps(record) + "\n")
        argv = ["convert", str(dataset), "--from", "qwen2.5-vl", "--to", "qwen3-vl", "-o", "-"]
        code, _, err = run_cli(*argv)  # loopback: refused by default
        assert code == 1 and "SourceNotAllowedError" in err
        assert server.paths == []
        code, out, err = run_cli(*argv, "--allow-private-networks")
        assert code == 0, err
        assert json.loads(json.loads(out)["messages"][1]["content"]) == {"bbox_2d": [0, 0, 1000, 1000]}  # fmt: skip
        assert server.paths == ["/f/a.jpg"]


def test_cli_module_runs(tmp_path: Path) -> None:
    dataset = tmp_path / "d.json"
    dataset.write_text('[{"role": "assistant", "content": "<|box_start|>(1,2),(3,4)<|box_end|>"}]')
    proc = subprocess.run(
        [sys.executable, "-m", "vlprep.cli.grounding", "convert", str(dataset), "--from",
         "qwen2-vl", "--to", "qwen3-vl", "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "1 item(s) found, would rewrite 0 number(s)" in proc.stderr
