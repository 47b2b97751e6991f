"""vlprep.grounding and the first generation (Qwen-VL, Qwen-VL-Chat): <ref>/<box>/<quad> tags.

The answer shapes come from the Qwen-VL README and model card (``<ref>击掌</ref><box>(536,509),
(588,602)</box>``), its ``tokenizer.from_list_format`` (one ``<box>`` per box after a ref) and
its OCR ``<quad>`` tag; ``../shared/reference/qwen-vl-gen1.md`` gathers them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import encode, photo
from vlprep import grounding as g
from vlprep._errors import GroundingParseError, InvalidInputError
from vlprep._presets import QWEN_VL
from vlprep._sizing import smart_resize
from vlprep.grounding._draw import PALETTE

# The first generation writes 0-1000 of the original image ("norm1000"), as Qwen2-VL does.
GEN1 = "qwen-vl"

README_ANSWER = "图中击掌的位置<ref>击掌</ref><box>(536,509),(588,602)</box>"
ENGLISH_SEVERAL = (
    "<ref>the dogs</ref><box>(12,300),(250,780)</box><box>(600,310),(880,790)</box>"
    " and <ref>a cat</ref><box>(400,100),(520,260)</box>"
)
CHINESE_SEVERAL = "<ref>两只狗</ref><box>(12,300),(250,780)</box>、<box>(600,310),(880,790)</box>和<ref>猫</ref><box>(400,100),(520,260)</box>"
OCR_QUADS = (
    "图中的文字是：<ref>发票号码</ref><quad>(120,80),(480,82),(478,130),(118,128)</quad>"  # noqa: RUF001
    "<ref>金额</ref><quad>(600,700),(900,700),(900,760),(600,760)</quad>"
)


def test_readme_answer_chinese_label() -> None:
    (box,) = g.parse(README_ANSWER, GEN1)
    assert box == g.Box(536, 509, 588, 602, "击掌", "norm1000", (536, 509, 588, 602))
    assert g.parse(README_ANSWER, GEN1, format="tags") == [box]


def test_english_and_chinese_several_boxes_per_ref() -> None:
    for text in (ENGLISH_SEVERAL, CHINESE_SEVERAL):
        items = g.parse(text, GEN1)
        assert [i.raw for i in items] == [
            (12, 300, 250, 780),
            (600, 310, 880, 790),
            (400, 100, 520, 260),
        ]
        labels = [i.label for i in items]
        assert labels in (
            ["the dogs", "the dogs", "a cat"],
            ["两只狗", "两只狗", "猫"],
        )


def test_prose_between_ref_and_box_ends_the_ref() -> None:
    text = "<ref>狗</ref>在左边，另外还有<box>(1,2),(3,4)</box>"  # noqa: RUF001
    (box,) = g.parse(text, GEN1)
    assert box.label is None


def test_quads_keep_their_corner_order() -> None:
    first, second = g.parse(OCR_QUADS, GEN1)
    assert isinstance(first, g.Quad) and isinstance(second, g.Quad)
    assert first.label == "发票号码" and second.label == "金额"
    assert first.points == ((120, 80), (480, 82), (478, 130), (118, 128))
    assert first.raw == (120, 80, 480, 82, 478, 130, 118, 128)
    assert first.space == "norm1000"
    assert first.bounds == g.Box(118, 80, 480, 130, "发票号码", "norm1000")


def test_cut_off_output() -> None:
    cut = "<ref>a</ref><box>(1,2),(3,4)</box><box>(5,6),(7"
    assert [i.raw for i in g.parse(cut, GEN1)] == [(1, 2, 3, 4)]
    assert g.parse("<ref>unfinished lab", GEN1) == []
    assert g.parse("<ref>a</ref><quad>(1,2),(3,4),(5,6)", GEN1) == []
    ended = "<ref>a</ref><box>(1,2),(3,4)<|im_end|>\n<|endoftext|><|endoftext|>"
    assert [(i.label, i.raw) for i in g.parse(ended, GEN1)] == [("a", (1, 2, 3, 4))]
    with pytest.raises(GroundingParseError):  # not at the end: a malformed box, not a cut
        g.parse("<box>(1,2),(3)</box> and more text", GEN1)


@pytest.mark.parametrize(
    "text",
    [
        "<box>(1,2),(3)</box>",
        "<box>the dog</box>",
        "<quad>(1,2),(3,4)</quad>",
        "<ref>a</ref><box>(1,2),(3,4),(5,6)</box>",
    ],
)
def test_malformed_tags_raise_and_skip(text: str, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(GroundingParseError) as info:
        g.parse(text, GEN1)
    assert isinstance(info.value, ValueError) and "on_error='skip'" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="vlprep.grounding"):
        kept = g.parse(text + "<box>(7,8),(9,10)</box>", GEN1, on_error="skip")
    assert [i.raw for i in kept] == [(7, 8, 9, 10)]
    assert "malformed" in caplog.text


def test_prompt_with_an_image_span_and_no_boxes() -> None:
    prompt = "Picture 1: <img>https://example.com/demo.jpeg</img>\n<ref>狗</ref>在哪里？"  # noqa: RUF001
    assert g.parse(prompt, GEN1) == []


def test_tags_stripped_by_skip_special_tokens() -> None:
    # tokenizer.decode(..., skip_special_tokens=True) drops <ref>, <box>: only pairs remain.
    (box,) = g.parse("击掌(536,509),(588,602)", GEN1)
    assert (box.label, box.raw) == (None, (536, 509, 588, 602))
    assert g.parse("击掌(536,509),(588,602)", GEN1, format="tags") == []


def test_auto_prefers_qwen2_tokens_then_tags_then_json() -> None:
    mixed = '<ref>a</ref><box>(1,2),(3,4)</box> {"bbox_2d": [5, 6, 7, 8]}'
    assert [i.raw for i in g.parse(mixed, GEN1)] == [(1, 2, 3, 4)]
    assert [i.raw for i in g.parse(mixed, GEN1, format="json")] == [(5, 6, 7, 8)]
    tokens = "<|box_start|>(1,2),(3,4)<|box_end|><box>(5,6),(7,8)</box>"
    assert [i.raw for i in g.parse(tokens, GEN1)] == [(1, 2, 3, 4)]
    with pytest.raises(InvalidInputError, match="'tags'"):
        g.parse("", GEN1, format="quad")  # type: ignore[arg-type]


def test_map_and_draw_a_quad_and_boxes() -> None:
    image = photo(400, 200, seed=2)
    items = g.to_original(g.parse(OCR_QUADS + README_ANSWER, GEN1), (200, 400))
    quad, _, box = items
    assert isinstance(quad, g.Quad) and quad.space == "original"
    flat = [v for xy in quad.points for v in xy]
    assert flat == pytest.approx([48, 16, 192, 16.4, 191.2, 26, 47.2, 25.6])
    assert isinstance(box, g.Box) and box.label == "击掌"
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((214.4, 101.8, 235.2, 120.4))
    clamped = g.to_original([g.Quad(((-5, 0), (1200, 0), (1000, 1001), (0, 1000)), space="norm1000")], (10, 20))  # fmt: skip
    assert clamped[0].points == ((0, 0), (20, 0), (20, 10), (0, 10))  # type: ignore[union-attr]
    out = g.draw(image, [quad], line_width=3)
    assert out.getpixel((120, 17)) == PALETTE[0]  # on the top edge
    assert out.getpixel((120, 21)) == image.getpixel((120, 21))  # inside, not filled
    with pytest.raises(InvalidInputError, match="to_original"):
        g.draw(image, [g.Quad(((0, 0), (1, 0), (1, 1), (0, 1)), space="norm1000")])


def test_draw_keeps_an_rgb_copy() -> None:
    gray = Image.new("L", (64, 64), 100)
    out = g.draw(gray, [g.Quad(((0, 0), (63, 0), (63, 63), (0, 63)), "q")])
    assert out.mode == "RGB" and gray.getpixel((0, 0)) == 100


_TAG_ALPHABET = st.sampled_from(
    ["<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<img>", "</img>", "(", ")",
     ",", "1", "-2.5", " ", "狗", "and", "<|im_end|>", "x"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_TAG_ALPHABET, max_size=40).map("".join))
def test_tag_parsing_fails_only_with_the_typed_error(text: str) -> None:
    try:
        strict = g.parse(text, GEN1, format="tags")
    except GroundingParseError:
        strict = None
    lenient = g.parse(text, GEN1, format="tags", on_error="skip")
    if strict is not None:
        assert lenient == strict
    for item in lenient:
        assert len(item.raw) == (8 if isinstance(item, g.Quad) else 4)


# ------------------------------------------------------- the qwen-vl family and conversion


def test_locate_with_the_qwen_vl_preset() -> None:
    picture = photo(640, 480, seed=8)
    element = {"image": picture}
    assert g.image_sizes(element, QWEN_VL) == ((480, 640), (448, 448))  # the fixed squash
    (box,) = g.locate(README_ANSWER, element, QWEN_VL)
    assert box.label == "击掌" and box.space == "original"
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(
        (536 * 640 / 1000, 509 * 480 / 1000, 588 * 640 / 1000, 602 * 480 / 1000)
    )
    assert g.model_space("qwen-vl-chat") == g.model_space(QWEN_VL) == "norm1000"
    with pytest.raises(InvalidInputError, match="448x448"):
        g.image_sizes({"image": picture, "max_pixels": 50_000}, QWEN_VL)


def test_convert_gen1_answers() -> None:
    size = (3000, 4000)
    # To and from the other 0-1000 generations: the same numbers.
    for other in ("qwen2-vl", "qwen3-vl"):
        same = g.convert_text(OCR_QUADS, size, "qwen-vl", other)
        assert same.text == OCR_QUADS and same.items == 2 and same.changed == 0
    # To Qwen2.5-VL: pixels of the resized input (1148 x 840 under a 1280-token cap).
    element = {"max_pixels": 1280 * 28 * 28}
    there = g.convert_text(README_ANSWER, size, "qwen-vl", "qwen2.5-vl", element=element)
    assert there.text == "图中击掌的位置<ref>击掌</ref><box>(615,428),(675,506)</box>"
    back = g.convert_text(there.text, size, "qwen2.5-vl", "qwen-vl", element=element)
    # x: 1148 > 1000 units, nothing lost; y: 840 < 1000, within floor(1/2 + 1000/1680) = 1.
    assert back.text == "图中击掌的位置<ref>击掌</ref><box>(536,510),(588,602)</box>"
    items = g.parse(OCR_QUADS, "qwen-vl")
    moved = g.convert(items, size, QWEN_VL, "qwen2.5-vl", element=element)
    assert isinstance(moved[1], g.Quad)
    assert moved[1].points[2] == pytest.approx((900 * 1148 / 1000, 760 * 840 / 1000))


def test_convert_a_qwen_vl_finetune_dataset(tmp_path: Path) -> None:
    picture = tmp_path / "demo.jpeg"
    picture.write_bytes(encode(photo(640, 480, seed=9), "JPEG"))
    # Qwen-VL's fine-tuning format: the image path inside the prompt.
    record = {
        "id": "identity_0",
        "conversations": [
            {"from": "user", "value": f"Picture 1: <img>{picture}</img>\n图中的狗在哪里？"},  # noqa: RUF001
            {"from": "assistant", "value": "<ref>狗</ref><box>(100,200),(500,1000)</box>"},
        ],
    }
    data = json.dumps([record], ensure_ascii=False, indent=1)
    result = g.convert_dataset(data, "qwen-vl", "qwen2.5-vl")
    assert result.ok and result.items == 1
    frame = smart_resize(480, 640)
    expected = [round(100 * frame[1] / 1000), round(200 * frame[0] / 1000)]
    expected += [round(500 * frame[1] / 1000), frame[0]]
    box = "<ref>狗</ref><box>({},{}),({},{})</box>".format(*expected)
    assert json.loads(result.text)[0]["conversations"][1]["value"] == box
    assert result.text == data.replace("(100,200),(500,1000)", "({},{}),({},{})".format(*expected))
