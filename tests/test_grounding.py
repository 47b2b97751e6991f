"""vlprep.grounding: parse the three families' answers, map to the original image, draw."""

from __future__ import annotations

import io
import json
import logging
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from tests.conftest import IMAGES, encode, photo
from vlprep import grounding as g
from vlprep._errors import GroundingParseError, InvalidInputError
from vlprep._image import fetch_image_for, load_image
from vlprep._presets import QWEN2_5_VL, QWEN2_VL, QWEN3_VL, Preset
from vlprep._sizing import smart_resize
from vlprep.grounding._draw import PALETTE, item_colours

PRESETS = {"qwen2-vl": QWEN2_VL, "qwen2.5-vl": QWEN2_5_VL, "qwen3-vl": QWEN3_VL}
ORIENTED = [p for p in IMAGES if "orientation" in p.name]

# ------------------------------------------------------------ realistic answers

QWEN25_COOKBOOK = """```json
[
\t{"bbox_2d": [135, 114, 1016, 672], "label": "chair"},
\t{"bbox_2d": [1240, 99, 1500, 730], "label": "potted plant"},
\t{"bbox_2d": [598, 380, 760, 510], "label": "cup"}
]
```"""

QWEN25_OCR = """```json
[
    {"bbox_2d": [62, 41, 311, 88], "text_content": "INVOICE"},
    {"bbox_2d": [62, 120, 402, 149], "text_content": "Date: 2024-03-01"}
]
```"""

QWEN25_POINTS = """The people are here:
```json
[
  {"point_2d": [412, 233], "label": "person"},
  {"point_2d": [780, 260], "label": "person"}
]
```
Both are standing near the door."""

QWEN3_DETECT = """```json
[
\t{"bbox_2d": [52, 278, 341, 958], "label": "cat", "color": "orange"},
\t{"bbox_2d": [421, 305, 702, 964], "label": "dog"}
]
```"""

QWEN3_POINT = '```json\n[\n\t{"point_2d": [503, 612], "label": "the red button"}\n]\n```'

QWEN2_ONE = (
    "<|object_ref_start|>the woman<|object_ref_end|>"
    "<|box_start|>(441,314),(642,999)<|box_end|><|im_end|>"
)
QWEN2_SEVERAL = (
    "There are two dogs: <|object_ref_start|>dogs<|object_ref_end|>"
    "<|box_start|>(12,300),(250,780)<|box_end|><|box_start|>(600,310),(880,790)<|box_end|>. "
    "And a cat at <|box_start|>( 400 , 100 ) , ( 520 , 260 )<|box_end|>."
)


def test_qwen25_cookbook_answer() -> None:
    items = g.parse(QWEN25_COOKBOOK, "qwen2.5-vl")
    assert [i.label for i in items] == ["chair", "potted plant", "cup"]
    assert all(isinstance(i, g.Box) and i.space == "resized" for i in items)
    assert items[0] == g.Box(135, 114, 1016, 672, "chair", "resized", (135, 114, 1016, 672))


def test_qwen25_ocr_keeps_other_keys() -> None:
    items = g.parse(QWEN25_OCR, "qwen2.5-vl")
    assert [i.label for i in items] == [None, None]
    assert items[1].extra == {"text_content": "Date: 2024-03-01"}
    with pytest.raises(TypeError):
        items[1].extra["x"] = 1  # type: ignore[index]


def test_qwen25_points_with_prose_around() -> None:
    items = g.parse(QWEN25_POINTS, "qwen2.5-vl")
    assert items == [
        g.Point(412, 233, "person", "resized", (412, 233)),
        g.Point(780, 260, "person", "resized", (780, 260)),
    ]


def test_qwen3_answers_are_norm1000() -> None:
    boxes = g.parse(QWEN3_DETECT, "qwen3-vl")
    assert [(b.label, b.space) for b in boxes] == [("cat", "norm1000"), ("dog", "norm1000")]
    assert boxes[0].extra == {"color": "orange"}
    (point,) = g.parse(QWEN3_POINT, "qwen3_vl_moe")
    assert point == g.Point(503, 612, "the red button", "norm1000", (503, 612))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"bbox_2d": [1, 2, 3, 4], "label": "a"}', ["a"]),  # one object, no list
        ('Here:\n```json\n{"bbox_2d": [1, 2, 3, 4], "label": "a"},\n```', ["a"]),
        (
            '[{"bbox_2d": [1, 2, 3, 4], "label": "a",}, {"bbox_2d": [5, 6, 7, 8], "label": "b"},]',
            ["a", "b"],
        ),
        (
            '```json\n[{"bbox_2d": [1,2,3,4], "label": "a"}]\n```\ntext\n```json\n[{"bbox_2d": [5,6,7,8], "label": "b"}]\n```',
            ["a", "b"],
        ),
        (
            '[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8], "lab',
            ["a"],
        ),  # cut off
        ('[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6,', ["a"]),
        (
            '[{"bbox_2d": [1, 2, 3, 4], "label": "a, [x] {y}"}]',
            ["a, [x] {y}"],
        ),  # brackets in strings
        ('{"objects": [{"bbox_2d": [1, 2, 3, 4], "label": "a"}]}', ["a"]),  # nested
        (
            '[{"bbox_2d": [1, 2, 3, 4], "label": "a"} {"bbox_2d": [5, 6, 7, 8], "label": "b"}]',
            ["a", "b"],
        ),
        ('[{"bbox_2d": [1.5, 2, 3e2, 4], "label": "  two\n words "}]', ["two words"]),
    ],
)
def test_json_tolerance(text: str, expected: list[str]) -> None:
    assert [i.label for i in g.parse(text, "qwen3-vl")] == expected


def test_qwen2_special_tokens() -> None:
    (box,) = g.parse(QWEN2_ONE, "qwen2-vl")
    assert box == g.Box(441, 314, 642, 999, "the woman", "norm1000", (441, 314, 642, 999))
    items = g.parse(QWEN2_SEVERAL, "qwen2-vl")
    assert [(i.label, i.raw) for i in items] == [
        ("dogs", (12, 300, 250, 780)),
        ("dogs", (600, 310, 880, 790)),
        (None, (400, 100, 520, 260)),  # prose between the ref and this box: no label
    ]
    assert [i.label for i in g.parse("<|box_start|>(1,2),(3,4)<|box_end|>", "qwen2-vl")] == [None]


def test_qwen2_stripped_tokens_give_unlabelled_boxes() -> None:
    stripped = "the woman(441,314),(642,999) and the man(10,20),(300,400)"
    items = g.parse(stripped, "qwen2-vl")
    assert [(i.label, i.raw) for i in items] == [
        (None, (441, 314, 642, 999)),
        (None, (10, 20, 300, 400)),
    ]
    assert g.parse(stripped, "qwen2-vl", format="tokens") == []
    assert g.parse(stripped, "qwen2-vl", format="json") == []


def test_qwen2_truncated_box() -> None:
    cut = "<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|><|box_start|>(5,6),(7"
    assert [i.raw for i in g.parse(cut, "qwen2-vl")] == [(1, 2, 3, 4)]
    ended = "<|box_start|>(1,2),(3,4)<|im_end|>"  # box_end missing but the box is complete
    assert [i.raw for i in g.parse(ended, "qwen2-vl")] == [(1, 2, 3, 4)]
    padded = "<|box_start|>(1,2),(3,4),(5,6)<|im_end|>\n<|endoftext|><|endoftext|>"
    assert [i.raw for i in g.parse(padded, "qwen2-vl")] == [(1, 2, 3, 4)]
    with pytest.raises(GroundingParseError):  # not at the end: not a truncation
        g.parse("<|box_start|>(1,2),(3,4),(5,6)<|im_end|> more text", "qwen2-vl")


def test_legacy_token_form_follows_the_family_space() -> None:
    (box,) = g.parse("<|box_start|>(10,20),(30,40)<|box_end|>", "qwen2.5-vl")
    assert box.space == "resized"


# ---------------------------------------------------------------- malformed answers


@pytest.mark.parametrize(
    "text",
    [
        '[{"bbox_2d": [1, 2, 3], "label": "a"}]',
        '[{"bbox_2d": [1, 2, "x", 4], "label": "a"}]',
        '[{"bbox_2d": [1, 2, 3, NaN], "label": "a"}]',
        '[{"point_2d": [1, 2, 3], "label": "a"}]',
        '[{"bbox_2d": 7, "label": "a"}]',
        '[{"bbox_2d": [1, 2, 3, 4] "label": "a"}]',  # missing comma: not JSON
        "<|box_start|>the dog<|box_end|>",
        "<|box_start|>(1,2),(3,4),(5,6)<|box_end|>",
        "<|box_start|>(1,2)<|box_end|>",
    ],
)
def test_malformed_items_raise_typed_error(text: str) -> None:
    with pytest.raises(GroundingParseError) as info:
        g.parse(text, "qwen2.5-vl")
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)
    assert "on_error='skip'" in str(info.value)


def test_error_never_echoes_long_text() -> None:
    long_label = "x" * 5000
    text = f'[{{"bbox_2d": [1, 2, 3], "label": "{long_label}"}} "junk" ]'
    with pytest.raises(GroundingParseError) as info:
        g.parse("<|box_start|>" + "word " * 2000 + "<|box_end|>", "qwen2-vl")
    assert len(str(info.value)) < 250
    with pytest.raises(GroundingParseError) as info:
        g.parse('{"bbox_2d": [' + "1, " * 3000 + '"a"]}', "qwen3-vl")
    assert len(str(info.value)) < 250
    with pytest.raises(GroundingParseError) as info:
        g.parse(text, "qwen3-vl")
    assert long_label not in str(info.value)


def test_skip_keeps_the_good_items(caplog: pytest.LogCaptureFixture) -> None:
    text = '[{"bbox_2d": [1, 2, 3], "label": "bad"}, {"bbox_2d": [5, 6, 7, 8], "label": "ok"}]'
    with caplog.at_level(logging.WARNING, logger="vlprep.grounding"):
        items = g.parse(text, "qwen3-vl", on_error="skip")
    assert [i.label for i in items] == ["ok"]
    assert "malformed" in caplog.text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot find a giraffe in this image.",
        '```json\n{"answer": "no objects", "count": 0}\n```',
        "See [1] and {braces} and (1, 2) alone.",
        "[[[[[[[[[[" * 50,
        "<|box_start|>" * 2000,  # every box cut off before its numbers
        '[{"bbox_2d": [1, 2,',  # the only item was cut off
    ],
)
def test_no_grounding_is_an_empty_result(text: str) -> None:
    for family in PRESETS:
        assert g.parse(text, family) == []


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="str"):
        g.parse(b"[]", "qwen2-vl")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="qwen2-vl"):
        g.parse("[]", "llava")
    with pytest.raises(InvalidInputError, match="format"):
        g.parse("[]", "qwen2-vl", format="xml")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="on_error"):
        g.parse("[]", "qwen2-vl", on_error="ignore")  # type: ignore[arg-type]
    assert g.model_space(QWEN2_5_VL.replace(name="qwen2.5-vl-finetune")) == "resized"
    # The family is a field: a renamed Qwen2.5-VL preset stays Qwen2.5-VL.
    assert g.model_space(QWEN2_5_VL.replace(name="finetune")) == "resized"
    assert g.model_space(QWEN2_VL.replace(name="finetune")) == "norm1000"


_GROUNDING_ALPHABET = st.sampled_from(
    ['{"bbox_2d": ', '"point_2d": ', '"label": ', '"a"', "[", "]", "{", "}", ",", "1", "-2.5",
     " ", '"', "\\", "<|box_start|>", "<|box_end|>", "<|object_ref_start|>",
     "<|object_ref_end|>", "(", ")", "```json\n", "x"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_GROUNDING_ALPHABET, max_size=40).map("".join), st.sampled_from(list(PRESETS)))
def test_parse_fails_only_with_the_typed_error(text: str, family: str) -> None:
    try:
        strict = g.parse(text, family)
    except GroundingParseError:
        strict = None
    lenient = g.parse(text, family, on_error="skip")
    if strict is not None:
        assert lenient == strict
    for item in lenient:
        assert item.space == g.model_space(family)


# ------------------------------------------------------------------- coordinate mapping


def test_norm1000_and_resized_formulas() -> None:
    box = g.Box(100, 250, 500, 1000, "a", "norm1000", (100, 250, 500, 1000))
    (mapped,) = g.to_original([box], original_size=(600, 800))
    assert (mapped.x1, mapped.y1, mapped.x2, mapped.y2) == (80, 150, 400, 600)
    assert (mapped.label, mapped.space, mapped.raw) == ("a", "original", box.raw)
    point = g.Point(560, 280, None, "resized", (560, 280))
    (mapped_point,) = g.to_original([point], (600, 800), resized_size=(588, 812))
    assert mapped_point.x == pytest.approx(560 * 800 / 812)
    assert mapped_point.y == pytest.approx(280 * 600 / 588)


def test_out_of_range_values_are_clamped_and_corners_ordered() -> None:
    items = [
        g.Box(900, -20, 1200, 50, None, "norm1000"),
        g.Box(700, 900, 300, 100, None, "norm1000"),  # corners given backwards
        g.Point(-5, 1001, None, "norm1000"),
    ]
    a, b, c = g.to_original(items, (400, 200))
    assert isinstance(a, g.Box) and isinstance(b, g.Box) and isinstance(c, g.Point)
    assert (a.x1, a.y1, a.x2, a.y2) == (180, 0, 200, 20)
    assert (b.x1, b.y1, b.x2, b.y2) == (60, 40, 140, 360)
    assert (c.x, c.y) == (0, 400)


def test_mapping_arguments() -> None:
    resized = g.Box(1, 2, 3, 4, None, "resized")
    with pytest.raises(InvalidInputError, match="resized_size"):
        g.to_original([resized], (10, 10))
    with pytest.raises(InvalidInputError, match="original_size"):
        g.to_original([resized], (10, 0), (28, 28))
    original = g.Box(1, 2, 3, 4)
    assert g.to_original([original], (10, 10)) == [original]
    assert g.resized_size_from_grid(torch.tensor([1, 34, 46]), 14) == (476, 644)
    with pytest.raises(InvalidInputError):
        g.resized_size_from_grid([1, 34], 14)


@pytest.mark.parametrize("path", ORIENTED, ids=lambda p: p.name)
def test_image_sizes_match_what_vlprep_loads(path: Path) -> None:
    for preset in (QWEN2_5_VL, QWEN3_VL):
        for ele in ({"image": str(path)}, {"image": str(path), "max_pixels": 128 * 28 * 28}):
            original, resized = g.image_sizes(ele, preset)
            upright = load_image(str(path))
            assert original == (upright.height, upright.width)
            fetched = fetch_image_for(ele, preset)
            assert resized == (fetched.height, fetched.width)


def _rotated_jpeg(upright: Image.Image, orientation: int = 6) -> bytes:
    """Store ``upright`` turned so that the EXIF ``orientation`` turns it back."""
    stored = upright.transpose(
        Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def _late_exif_png(upright: Image.Image) -> bytes:
    """A PNG whose eXIf chunk (orientation 6) follows the pixel data."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(upright.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif.tobytes())
    chunks, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        chunks.append(data[i : i + 12 + n])
        i += 12 + n
    late = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    assert len(late) == 1 and rest[-1][4:8] == b"IEND"
    return data[:8] + b"".join(rest[:-1]) + late[0] + rest[-1]


@pytest.mark.parametrize(
    "kind", ["jpeg-6", "jpeg-8", "png-late-exif", "pil-6", "pil-png-late-exif"]
)
def test_rotated_image_maps_to_the_upright_picture(kind: str) -> None:
    upright = photo(300, 200, seed=3)  # 300 wide, 200 tall as displayed
    data: object
    if kind == "png-late-exif":
        data = _late_exif_png(upright)
    elif kind == "pil-png-late-exif":
        data = Image.open(io.BytesIO(_late_exif_png(upright)))
    elif kind == "pil-6":
        data = Image.open(io.BytesIO(_rotated_jpeg(upright)))
    else:
        data = _rotated_jpeg(upright, int(kind[-1]))
    ele = {"image": data}
    original, resized = g.image_sizes(ele, QWEN2_5_VL)
    assert original == (200, 300)
    assert load_image(data).size == (300, 200)
    # Qwen2.5-VL sees the upright image resized to `resized` and answers in its pixels.
    text = json.dumps([{"bbox_2d": [resized[1] // 2, 0, resized[1], resized[0] // 4]}])
    (box,) = g.locate(text, ele, QWEN2_5_VL)
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((150, 0, 300, 50), abs=1)


def test_12mp_image_with_a_server_token_cap() -> None:
    big = Image.new("RGB", (4000, 3000), (90, 120, 150))
    ele = {"image": big, "max_pixels": 1280 * 28 * 28}
    original, resized = g.image_sizes(ele, QWEN2_5_VL)
    assert original == (3000, 4000)
    assert resized == (840, 1148) == smart_resize(3000, 4000, 28, 3136, 1280 * 28 * 28)
    fetched = fetch_image_for(ele, QWEN2_5_VL)
    assert (fetched.height, fetched.width) == resized
    truth = (1000.0, 600.0, 2600.0, 2400.0)
    answer = [round(truth[0] * 1148 / 4000), round(truth[1] * 840 / 3000)]
    answer += [round(truth[2] * 1148 / 4000), round(truth[3] * 840 / 3000)]
    text = f'```json\n[{{"bbox_2d": {answer}, "label": "sky"}}]\n```'
    (box,) = g.locate(text, ele, QWEN2_5_VL)
    # One resized pixel is 4000/1148 = 3.5 original pixels: the rounding error is half that.
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(truth, abs=1.75)
    # The wrong bounds (qwen-vl-utils' 16384-token default) shift the box by hundreds of px.
    (shifted,) = g.to_original(g.parse(text, "qwen2.5-vl"), original, smart_resize(3000, 4000))
    assert isinstance(shifted, g.Box) and truth[2] - shifted.x2 > 1000


def test_tiny_image_upscaled_by_min_pixels() -> None:
    tiny = photo(24, 12, seed=1)
    for preset, expected in ((QWEN2_5_VL, (56, 84)), (QWEN3_VL, (192, 384))):
        original, resized = g.image_sizes({"image": tiny}, preset)
        assert original == (12, 24)
        assert resized == expected == fetch_image_for({"image": tiny}, preset).size[::-1]
    text = json.dumps([{"point_2d": [42, 28]}, {"bbox_2d": [0, 0, 84, 56]}])
    point, box = g.locate(text, {"image": tiny}, QWEN2_5_VL)
    assert isinstance(point, g.Point) and (point.x, point.y) == (12, 6)
    assert isinstance(box, g.Box) and (box.x1, box.y1, box.x2, box.y2) == (0, 0, 24, 12)


def _express(box: tuple[float, float, float, float], family: str, size: tuple[int, int],
             resized: tuple[int, int]) -> str:  # fmt: skip
    """Write ``box`` (original pixels) the way ``family`` answers."""
    (h, w), (rh, rw) = size, resized
    if family == "qwen2.5-vl":
        v = [round(box[0] * rw / w), round(box[1] * rh / h), round(box[2] * rw / w)]
        v.append(round(box[3] * rh / h))
        return f'```json\n[\n\t{{"bbox_2d": {v}, "label": "square"}}\n]\n```'
    v = [round(box[0] / w * 1000), round(box[1] / h * 1000), round(box[2] / w * 1000)]
    v.append(round(box[3] / h * 1000))
    if family == "qwen3-vl":
        return f'```json\n[\n\t{{"bbox_2d": {v}, "label": "square"}}\n]\n```'
    return (
        "<|object_ref_start|>square<|object_ref_end|>"
        f"<|box_start|>({v[0]},{v[1]}),({v[2]},{v[3]})<|box_end|><|im_end|>"
    )


@pytest.mark.parametrize("family", list(PRESETS))
def test_round_trip_on_a_generated_picture(family: str) -> None:
    picture = photo(640, 480, seed=7)
    truth = (201.0, 97.0, 433.0, 350.0)
    ImageDraw.Draw(picture).rectangle((201, 97, 432, 349), fill=(0, 255, 0))
    ele = {"image": picture}
    preset = PRESETS[family]
    original, resized = g.image_sizes(ele, preset)
    (box,) = g.locate(_express(truth, family, original, resized), ele, preset)
    assert box.label == "square" and box.space == "original"
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(truth, abs=1)
    drawn = g.draw(picture, [box])
    assert drawn.getpixel((round(box.x1), 200)) == PALETTE[0]


@settings(max_examples=150, deadline=None)
@given(
    st.integers(28, 5000),
    st.integers(28, 5000),
    st.integers(4, 16384),
    st.tuples(*[st.floats(0, 1)] * 4),
)
def test_resized_mapping_inverts_the_model_space(h: int, w: int, tokens: int, rel: tuple) -> None:  # type: ignore[type-arg]
    if max(h, w) / min(h, w) > 200:
        return
    preset = QWEN2_5_VL.replace(image_min_pixels=4 * 784, image_max_pixels=tokens * 784)
    _, resized = g.image_sizes({"image": Image.new("L", (w, h))}, preset)
    rh, rw = resized
    truth = (rel[0] * w, rel[1] * h, rel[2] * w, rel[3] * h)
    raw = (truth[0] * rw / w, truth[1] * rh / h, truth[2] * rw / w, truth[3] * rh / h)
    (box,) = g.to_original([g.Box(*raw, space="resized")], (h, w), resized)
    assert isinstance(box, g.Box)
    assert (box.x1, box.x2) == pytest.approx(sorted((truth[0], truth[2])), abs=1e-6)
    assert (box.y1, box.y2) == pytest.approx(sorted((truth[1], truth[3])), abs=1e-6)
    # A model writes integers: the error is at most half a resized pixel in original pixels.
    (rounded,) = g.to_original([g.Box(*map(round, raw), space="resized")], (h, w), resized)
    assert isinstance(rounded, g.Box)
    assert abs(rounded.x1 - min(truth[0], truth[2])) <= 0.5 * w / rw + 1e-6
    assert abs(rounded.y2 - max(truth[1], truth[3])) <= 0.5 * h / rh + 1e-6


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 4000),
    st.integers(1, 4000),
    st.lists(st.floats(-1e4, 1e4), min_size=4, max_size=4),
    st.sampled_from(["norm1000", "resized"]),
)
def test_mapped_items_stay_inside_and_ordered(h: int, w: int, v: list[float], space: str) -> None:
    item = g.Box(*v, space=space)  # type: ignore[arg-type]
    (box,) = g.to_original([item], (h, w), (h + 13, w + 7))
    assert isinstance(box, g.Box)
    assert 0 <= box.x1 <= box.x2 <= w and 0 <= box.y1 <= box.y2 <= h
    assert box.raw == item.raw


# --------------------------------------------------------------------------- drawing


def test_draw_box_outline_label_and_points() -> None:
    image = photo(400, 300, seed=5)
    before = image.copy()
    box = g.Box(100, 120, 300, 260, "cup")
    point = g.Point(50, 50, "handle")
    out = g.draw(image, [box, point], line_width=4, font_size=16)
    assert out.size == image.size and out.mode == "RGB"
    assert image.tobytes() == before.tobytes()  # the input is not modified
    colour, point_colour = item_colours([box, point])
    assert colour == PALETTE[0] and point_colour == PALETTE[1]
    for xy in [(100, 200), (103, 200), (299, 200), (296, 200), (200, 259), (200, 256)]:
        assert out.getpixel(xy) == colour, xy  # the outline, inside the box edges
    assert out.getpixel((104, 200)) == before.getpixel((104, 200))  # inside the outline
    assert out.getpixel((200, 262)) == before.getpixel((200, 262))  # outside the box
    assert out.getpixel((50, 50)) == point_colour
    # The tag above the box: filled with the box colour, with text pixels in another colour.
    tag = out.crop((100, 95, 140, 119))
    tag_colours = {c for _, c in tag.getcolors(10_000)}  # type: ignore[union-attr]
    assert colour in tag_colours and (255, 255, 255) in tag_colours
    unlabelled = g.draw(image, [g.Box(100, 120, 300, 260)], line_width=4)
    assert (
        unlabelled.crop((100, 95, 140, 119)).tobytes() == image.crop((100, 95, 140, 119)).tobytes()
    )


def test_draw_label_colours_defaults_and_errors() -> None:
    items = [
        g.Box(0, 0, 10, 10, "a"),
        g.Box(5, 5, 20, 20, "b"),
        g.Box(1, 1, 3, 3, "a"),
        g.Box(2, 2, 4, 4),
    ]
    colours = item_colours(items)
    assert colours[0] == colours[2] and len({colours[0], colours[1], colours[3]}) == 3
    gray = Image.new("L", (1000, 800), 128)
    out = g.draw(gray, [g.Box(0, 0, 1000, 800, "whole")])  # tag goes inside at the top
    assert out.mode == "RGB" and out.size == (1000, 800)
    assert out.getpixel((999, 400)) == PALETTE[0]  # default width max(2, 800/250) = 3
    assert out.getpixel((997, 400)) == PALETTE[0] and out.getpixel((996, 400)) == (128,) * 3
    inside_tag = {c for _, c in out.crop((3, 3, 60, 20)).getcolors(10_000)}  # type: ignore[union-attr]
    assert {PALETTE[0], (255, 255, 255)} <= inside_tag
    with pytest.raises(InvalidInputError, match="to_original"):
        g.draw(gray, [g.Box(0, 0, 10, 10, space="norm1000")])
    with pytest.raises(InvalidInputError, match="line_width"):
        g.draw(gray, [], line_width=0)


def test_draw_on_the_upright_rotated_file() -> None:
    path = next(p for p in ORIENTED if p.name == "hopper_orientation_6.jpg")
    text = '```json\n[{"bbox_2d": [0, 0, 500, 250], "label": "top left"}]\n```'
    ele = {"image": str(path)}
    image = load_image(str(path))
    items = g.locate(text, ele, QWEN3_VL, image=image)
    assert items == g.locate(text, ele, QWEN3_VL)  # header sizes == decoded sizes
    out = g.draw(image, items, line_width=2)
    assert out.size == image.size == (128, 128)
    assert out.getpixel((63, 20)) == PALETTE[0] and out.getpixel((20, 31)) == PALETTE[0]


def test_locate_with_a_custom_preset_family() -> None:
    preset: Preset = QWEN3_VL.replace(name="qwen3-vl-custom", image_min_pixels=1024)
    text = '[{"bbox_2d": [0, 0, 1000, 1000]}]'
    (box,) = g.locate(text, {"image": photo(50, 40)}, preset)
    assert isinstance(box, g.Box) and (box.x2, box.y2) == (50, 40)
    assert g.locate("no boxes here", {"image": "/does/not/exist.png"}, preset) == []
    renamed = QWEN2_5_VL.replace(name="finetune")
    (box,) = g.locate('[{"bbox_2d": [0, 0, 28, 28]}]', {"image": photo(50, 40)}, renamed,
                      family="qwen2.5-vl")  # fmt: skip
    assert isinstance(box, g.Box) and box.space == "original" and box.x2 < 50
    with pytest.raises(InvalidInputError, match="disagrees"):
        g.locate("[]", {"image": photo(50, 40)}, renamed, family="qwen3-vl")
