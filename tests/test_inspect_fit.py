"""``vlprep-inspect DATASET --fit N``: each conversation's fit, checked against vlprep.fit.

A three-line JSONL dataset of generated media: one conversation that fits as it is, one
that needs shrinking (two photos and a clip), one whose text alone is over the budget.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

import vlprep
from tests.conftest import encode, photo
from tests.videos import write_clip
from vlprep.cli._output import CSV_FIELDS, FIT_CSV_FIELDS
from vlprep.cli.inspect import main
from vlprep.testing import make_processor, save_processor

FAMILY = "qwen2.5-vl"
BUDGET = 1500


def _message(*media: dict[str, Any], text: str = "describe") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*media, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fitchat")
    paths = {}
    for name, (w, h) in {"small": (64, 48), "big": (1200, 900), "wide": (960, 540)}.items():
        paths[name] = root / f"{name}.jpg"
        paths[name].write_bytes(encode(photo(w, h, seed=len(name)), "JPEG"))
    clip = write_clip(root / "clip.mp4", width=320, height=240, fps=10, frames=40, seed=3)
    conversations = [
        _message({"type": "image", "image": str(paths["small"])}),
        _message(
            {"type": "image", "image": str(paths["big"])},
            {"type": "image", "image": str(paths["wide"])},
            {"type": "video", "video": str(clip)},
        ),
        _message({"type": "image", "image": str(paths["small"])}, text="word " * 2000),
    ]
    path = root / "chat.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    processor_dir = save_processor(FAMILY, root / "processor")
    return {"path": path, "conversations": conversations, "processor": processor_dir}


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_json_fit_equals_vlprep_fit_with_the_processor(chat: dict[str, Any]) -> None:
    argv = [str(chat["path"]), "--fit", str(BUDGET), "--reserve", "100"]
    code, out, err = _run(*argv, "--processor", str(chat["processor"]), "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["settings"]["model"] == FAMILY  # read from the processor
    assert document["settings"]["text_counted"] is True
    fits = [c["fit"] for c in document["conversations"]]
    assert [f["status"] for f in fits] == ["fits", "shrunk", "cannot_fit"]
    processor = make_processor(FAMILY)
    for fitted, conversation in zip(fits[:2], chat["conversations"], strict=False):
        (expected,) = vlprep.fit(conversation, BUDGET, processor=processor, reserve=100)
        assert fitted["total_before"] == expected.total_before
        assert fitted["total"] == expected.total <= BUDGET - 100
        assert fitted["text_tokens"] == expected.text_tokens
        assert fitted["items"] == [item.as_dict() for item in expected.items]
        assert fitted["fits"] is expected.fits
    shrunk = fits[1]
    assert shrunk["total"] < shrunk["total_before"] and shrunk["shrunk_items"] >= 1
    video = shrunk["items"][2]
    assert video["kind"] == "video" and video["frames"] <= video["before_frames"]
    with pytest.raises(vlprep.BudgetError) as caught:
        vlprep.fit(chat["conversations"][2], BUDGET, processor=processor, reserve=100)
    over = fits[2]
    assert (over["deficit"], over["binding"], over["needed"]) == (
        caught.value.deficit,
        "text",
        caught.value.needed,
    )
    assert over["total"] is None and over["fits"] is False
    (whole,) = vlprep.fit(chat["conversations"][2], 10**9, processor=processor)
    assert over["total_before"] == whole.total_before
    summary = document["summary"]["fit"]
    assert (summary["fit"], summary["shrunk"], summary["cannot_fit"]) == (1, 1, 1)
    assert summary["max_deficit"] == caught.value.deficit and summary["budget"] == 1400


def test_without_a_processor_only_media_tokens_count(chat: dict[str, Any]) -> None:
    code, out, err = _run(str(chat["path"]), "--fit", str(BUDGET), "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["settings"]["text_counted"] is False
    for conv, conversation in zip(document["conversations"], chat["conversations"], strict=True):
        (expected,) = vlprep.fit(conversation, BUDGET, preset=FAMILY)
        assert conv["fit"]["text_tokens"] is None
        assert conv["fit"]["total_before"] == expected.total_before == conv["tokens"]
        assert conv["fit"]["total"] == expected.total
    # the long text is not counted: the third conversation fits
    assert [c["fit"]["status"] for c in document["conversations"]] == ["fits", "shrunk", "fits"]


def test_table_and_csv(chat: dict[str, Any]) -> None:
    base = [str(chat["path"]), "--fit", str(BUDGET), "--processor", str(chat["processor"])]
    code, table, _ = _run(*base, "--fit-strategy", "recent")
    assert code == 0
    assert "text counted with the processor's chat template and tokenizer" in table
    assert "strategy recent" in table
    over = json.loads(_run(*base, "--format", "json")[1])["summary"]["fit"]["max_deficit"]
    assert (
        f"fit 1,500 tokens: 1 fit as they are, 1 needed shrinking, 1 cannot fit "
        f"(most over: {over:,} tokens), 0 failed"
    ) in table
    assert "CANNOT FIT" in table
    code, text, err = _run(*base, "--format", "csv")
    assert code == 0 and "1 needed shrinking" in err
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == CSV_FIELDS + FIT_CSV_FIELDS
    (fitted,) = vlprep.fit(chat["conversations"][1], BUDGET, processor=make_processor(FAMILY))
    middle = [r for r in rows if r["conversation"].endswith(":2")]
    assert [(int(r["fit_height"]), int(r["fit_width"])) for r in middle] == [
        item.size for item in fitted.items
    ]
    assert [r["fit_frames"] for r in middle] == ["", "", str(fitted.items[2].frames)]
    assert [int(r["fit_tokens"]) for r in middle] == [item.tokens for item in fitted.items]
    assert {r["conversation_fit"] for r in middle} == {"shrunk"}
    assert {int(r["conversation_total"]) for r in middle} == {fitted.total}
    last = [r for r in rows if r["conversation"].endswith(":3")]
    assert last[0]["conversation_fit"] == "cannot_fit" and last[0]["fit_height"] == ""
    assert int(last[0]["conversation_deficit"]) > 0


def test_without_fit_the_csv_columns_are_unchanged(chat: dict[str, Any]) -> None:
    code, text, _ = _run(str(chat["path"]), "--format", "csv")
    assert code == 0 and text.splitlines()[0].split(",") == CSV_FIELDS


def test_a_failed_fit_is_exit_one(chat: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(
        json.dumps(chat["conversations"][0])
        + "\n"
        + json.dumps(_message({"type": "image", "image": str(tmp_path / "gone.png")}))
        + "\n"
    )
    code, out, err = _run(str(path), "--fit", "500", "--format", "json")
    assert code == 1
    fits = [c["fit"] for c in json.loads(out)["conversations"]]
    assert [f["status"] for f in fits] == ["fits", "error"]
    assert fits[1]["error_type"] == "SourceNotFoundError" and fits[1]["fits"] is None
    assert "SourceNotFoundError" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reserve", "10"], "--reserve needs --fit N"),
        (["--fit-strategy", "recent"], "--fit-strategy needs --fit N"),
        (["--fit", "100", "--reserve", "100"], "must be below --fit"),
        (["--fit", "100", "--model", "qwen-vl"], "fixed 256 tokens"),
        (["--fit", "100", "--ray"], "--fit runs locally"),
    ],
)
def test_usage_errors(chat: dict[str, Any], extra: list[str], message: str) -> None:
    code, _, err = _run(str(chat["path"]), *extra)
    assert code == 2 and message in err


def test_an_unloadable_processor_is_a_usage_error(tmp_path: Path, chat: dict[str, Any]) -> None:
    code, _, err = _run(str(chat["path"]), "--fit", "100", "--processor", str(tmp_path))
    assert code == 2 and "cannot load a processor" in err
