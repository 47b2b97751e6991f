"""vlprep.grounding.convert / convert_text / coordinate_frame: coordinates across generations."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import photo
from vlprep import grounding as g
from vlprep._errors import GroundingParseError, InvalidInputError
from vlprep._image import fetch_image_for
from vlprep._planning import upright_size
from vlprep._presets import FAMILIES, QWEN2_5_VL, Preset, get_preset
from vlprep._sizing import smart_resize

NORM_FAMILIES = [f for f in FAMILIES if g.model_space(f) == "norm1000"]


def _frame(original: tuple[int, int], preset: Preset, element: dict[str, Any]) -> tuple[int, int]:
    """The frame worked out here from the definitions, not by vlprep's grounding code."""
    if preset.family != "qwen2.5-vl":
        return 1000, 1000
    low = element.get("min_pixels", preset.image_min_pixels)
    high = element.get("max_pixels", preset.image_max_pixels)
    if "min_pixels" not in element:
        low = min(low, high)
    if "max_pixels" not in element:
        high = max(high, low)
    return smart_resize(original[0], original[1], preset.factor, low, high)


# ----------------------------------------------------------------------- frames, formulas


def test_coordinate_frames() -> None:
    for family in NORM_FAMILIES:
        assert g.coordinate_frame((3000, 4000), family) == (1000, 1000)
    assert g.coordinate_frame((3000, 4000), "qwen2.5-vl") == smart_resize(3000, 4000)
    capped = {"image": "never read.jpg", "max_pixels": 1280 * 28 * 28}
    assert g.coordinate_frame((3000, 4000), "qwen2_5_vl", element=capped) == (840, 1148)
    assert g.coordinate_frame((3000, 4000), "qwen2.5-vl", element={"max_pixels": 1280 * 784}) == (840, 1148)  # fmt: skip
    fixed = {"resized_height": 300, "resized_width": 500}
    assert g.coordinate_frame((3000, 4000), QWEN2_5_VL, element=fixed) == (308, 504)
    small = QWEN2_5_VL.replace(image_max_pixels=64 * 784)
    assert g.coordinate_frame((3000, 4000), small) == smart_resize(3000, 4000, 28, 3136, 64 * 784)
    # The frame is the size build_inputs feeds the model.
    picture = photo(640, 480, seed=4)
    for element in ({"image": picture}, {"image": picture, "max_pixels": 100 * 784}):
        resized = fetch_image_for(element, QWEN2_5_VL)
        assert g.coordinate_frame((480, 640), QWEN2_5_VL, element=element) == (
            resized.height,
            resized.width,
        )
    with pytest.raises(InvalidInputError, match="original_size"):
        g.coordinate_frame((0, 10), "qwen3-vl")
    with pytest.raises(InvalidInputError, match="unknown"):
        g.coordinate_frame((10, 10), "llava")
    with pytest.raises(InvalidInputError, match="aspect ratio"):
        g.coordinate_frame((10, 2500), "qwen2.5-vl")
    assert g.coordinate_frame((10, 2500), "qwen3-vl") == (1000, 1000)


def test_convert_formulas() -> None:
    items: list[g.Item] = [
        g.Box(135, 114, 1016, 672, "chair", "resized", (135, 114, 1016, 672)),
        g.Point(574, 420, None, "resized", (574, 420)),
    ]
    element = {"max_pixels": 1280 * 28 * 28}  # frame (840, 1148) for a 4000x3000 photo
    box, point = g.convert(items, (3000, 4000), "qwen2.5-vl", "qwen3-vl", element=element)
    assert isinstance(box, g.Box) and isinstance(point, g.Point)
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(
        (135 * 1000 / 1148, 114 * 1000 / 840, 1016 * 1000 / 1148, 672 * 1000 / 840)
    )
    assert (box.label, box.space, box.raw) == ("chair", "norm1000", (135, 114, 1016, 672))
    assert (point.x, point.y) == pytest.approx((500, 500))
    back = g.convert([box, point], (3000, 4000), "qwen3-vl", "qwen2.5-vl", element=element)
    assert isinstance(back[0], g.Box) and back[0].space == "resized"
    assert (back[0].x1, back[0].y1, back[0].x2, back[0].y2) == pytest.approx(items[0].raw)
    assert isinstance(back[1], g.Point) and (back[1].x, back[1].y) == pytest.approx((574, 420))
    quad = g.Quad(((0, 0), (500, 0), (500, 500), (0, 500)), "q", "norm1000")
    (moved,) = g.convert([quad], (3000, 4000), "qwen2-vl", QWEN2_5_VL, element=element)
    assert isinstance(moved, g.Quad) and moved.space == "resized"
    assert moved.points == ((0, 0), (574, 0), (574, 420), (0, 420))
    with pytest.raises(InvalidInputError, match="source="):
        g.convert(items, (3000, 4000), "qwen3-vl", "qwen2-vl")


def test_documented_example() -> None:
    answer = '```json\n[{"bbox_2d": [135, 114, 1016, 672], "label": "chair"}]\n```'
    element = {"type": "image", "image": "street.jpg", "max_pixels": 1280 * 28 * 28}
    result = g.convert_text(answer, (3000, 4000), QWEN2_5_VL, "qwen3-vl", element=element)
    assert result.text == '```json\n[{"bbox_2d": [118, 136, 885, 800], "label": "chair"}]\n```'
    assert (result.items, result.changed, result.format) == (1, 4, "json")


def test_same_frame_is_the_identity() -> None:
    items = g.parse('[{"bbox_2d": [1, 2, 3, 4]}, {"point_2d": [5.5, 6]}]', "qwen2.5-vl")
    assert g.convert(items, (480, 640), "qwen2.5-vl", QWEN2_5_VL) == items
    norm = g.parse('[{"bbox_2d": [1, 2, 3, 4]}]', "qwen3-vl")
    (same,) = g.convert(norm, (480, 640), "qwen3-vl", "qwen2-vl")
    assert same == norm[0]
    text = 'a [{"bbox_2d": [1, 2, 3.50, 4]}] b'
    result = g.convert_text(text, (480, 640), "qwen2.5-vl", "qwen2.5-vl")
    assert result == g.TextConversion(text, 1, 0, "json")


# ---------------------------------------------------------------------------- text forms


def test_convert_text_rewrites_only_the_numbers() -> None:
    size, element = (3000, 4000), {"max_pixels": 1280 * 28 * 28}
    answers = {
        "tokens": (
            "<|object_ref_start|>狗<|object_ref_end|><|box_start|>(100,200),(500, 1000)<|box_end|>",
            "<|object_ref_start|>狗<|object_ref_end|><|box_start|>(115,168),(574, 840)<|box_end|>",
        ),
        "tags": (
            "图中<ref>狗</ref><box>(100,200),(500,1000)</box><quad>(0,0),(1000,0),(1000,1000),(0,1000)</quad>",
            "图中<ref>狗</ref><box>(115,168),(574,840)</box><quad>(0,0),(1148,0),(1148,840),(0,840)</quad>",
        ),
        "json": (
            '```json\n[\n\t{"bbox_2d": [100, 200, 5e2, 1000.0], "label": "1, 2"},\n\t{"point_2d": [-10,0]}\n]\n```',
            '```json\n[\n\t{"bbox_2d": [115, 168, 574, 840], "label": "1, 2"},\n\t{"point_2d": [-11,0]}\n]\n```',
        ),
    }
    for form, (text, expected) in answers.items():
        result = g.convert_text(text, size, "qwen3-vl", "qwen2.5-vl", element=element)
        assert result.text == expected, form
        assert result.format == form
    plain = "the dog (100,200),(500,1000) is there"
    assert g.convert_text(plain, size, "qwen3-vl", "qwen2.5-vl", element=element).text == plain
    converted = g.convert_text(plain, size, "qwen3-vl", "qwen2.5-vl", element=element,
                               format="plain")  # fmt: skip
    assert converted.text == "the dog (115,168),(574,840) is there"
    assert converted.items == 1 and converted.changed == 4


def test_half_up_rounding() -> None:
    # A 28 x 3500 image keeps its size (both sides multiples of 28): x * 3500 / 1000 = 3.5 x.
    size = (28, 3500)
    assert g.coordinate_frame(size, "qwen2.5-vl") == size
    result = g.convert_text('{"bbox_2d": [1, 0, -1, 3]}', size, "qwen3-vl", "qwen2.5-vl")
    assert result.text == '{"bbox_2d": [4, 0, -3, 0]}'  # 3.5 -> 4, -3.5 -> -3, 0.084 -> 0
    result = g.convert_text('{"point_2d": [3, 1000]}', size, "qwen3-vl", "qwen2.5-vl")
    assert result.text == '{"point_2d": [11, 28]}'  # 10.5 -> 11


def test_unplaceable_items_change_nothing() -> None:
    # The parser reads only the outer object (a grounding object is not searched further);
    # the rewriter would see two arrays: refuse instead of guessing.
    text = '{"bbox_2d": [1, 2, 3, 4], "parts": {"bbox_2d": [5, 6, 7, 8]}}'
    assert len(g.parse(text, "qwen3-vl")) == 1
    with pytest.raises(GroundingParseError, match="left unchanged"):
        g.convert_text(text, (100, 100), "qwen3-vl", "qwen2.5-vl")
    with pytest.raises(GroundingParseError):
        g.convert_text("<box>(1,2),(3)</box> tail", (100, 100), "qwen2-vl", "qwen2.5-vl")
    with pytest.raises(InvalidInputError, match="format"):
        g.convert_text("", (100, 100), "qwen2-vl", "qwen2.5-vl", format="xml")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="str"):
        g.convert_text(b"", (100, 100), "qwen2-vl", "qwen2.5-vl")  # type: ignore[arg-type]
    huge = '{"bbox_2d": [1e300, 2, 3, 4]}'
    with pytest.raises(GroundingParseError, match="out of range"):
        g.convert_text(huge, (100, 100), "qwen3-vl", "qwen2.5-vl")


def test_cut_off_answer_converts_its_complete_items() -> None:
    cut = '[{"bbox_2d": [100, 200, 300, 400]}, {"bbox_2d": [5, 6,'
    result = g.convert_text(cut, (1000, 1000), "qwen3-vl", QWEN2_5_VL.replace(image_max_pixels=500 * 500))  # fmt: skip
    frame = g.coordinate_frame((1000, 1000), QWEN2_5_VL.replace(image_max_pixels=500 * 500))
    assert frame == (476, 476)
    assert result.text == '[{"bbox_2d": [48, 95, 143, 190]}, {"bbox_2d": [5, 6,'


# ------------------------------------------------------------------ round-trip properties

_STORED = st.one_of(
    st.tuples(st.integers(1, 6000), st.integers(1, 6000)),
    st.tuples(st.integers(1, 40), st.integers(2000, 30000)),  # extreme aspect ratios
    st.tuples(st.integers(2000, 30000), st.integers(1, 40)),
)


def _exif_image(width: int, height: int, orientation: int) -> Image.Image:
    image = Image.new("1", (width, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    return image


@st.composite
def _preset(draw: st.DrawFn, family: str) -> Preset:
    preset = get_preset(family)
    f2 = preset.factor**2
    low = draw(st.integers(1, 4096)) * f2
    high = draw(st.integers(low // f2, 20000)) * f2
    return preset.replace(image_min_pixels=low, image_max_pixels=high)


def _text(form: str, values: list[int]) -> str:
    """A box and a point (JSON) or a box and a quad (tags, tokens) in ``form``."""
    b, rest = values[:4], values[4:]
    if form == "json":
        return f'```json\n[{{"bbox_2d": {b}, "label": "狗"}}, {{"point_2d": {rest[:2]}}}]\n```'
    if form == "tags":
        quad = ",".join(f"({rest[i]},{rest[i + 1]})" for i in range(0, 8, 2))
        return f"<ref>dog</ref><box>({b[0]},{b[1]}),({b[2]},{b[3]})</box><quad>{quad}</quad>"
    return f"<|box_start|>({b[0]},{b[1]}),({b[2]},{b[3]})<|box_end|>"


_INT = re.compile(r"(?<![\w.])-?\d+")  # not the 2 of "bbox_2d"


def _numbers(text: str) -> list[int]:
    body = re.sub(r'"label": "[^"]*"', "", text)
    return [int(v) for v in _INT.findall(body)]


@settings(max_examples=400, deadline=None)
@given(
    stored=_STORED,
    orientation=st.integers(1, 8),
    families=st.tuples(st.sampled_from(FAMILIES), st.sampled_from(FAMILIES)),
    data=st.data(),
)
def test_round_trip_within_the_documented_rounding(
    stored: tuple[int, int], orientation: int, families: tuple[str, str], data: st.DataObject
) -> None:
    width, height = stored
    original = upright_size(_exif_image(width, height, orientation))
    turned = orientation in (5, 6, 7, 8)
    assert original == ((width, height) if turned else (height, width))
    source = data.draw(_preset(families[0]), "source")
    target = data.draw(_preset(families[1]), "target")
    element: dict[str, Any] = data.draw(
        st.one_of(st.just({}), st.builds(lambda m: {"max_pixels": m * 784}, st.integers(4, 20000)))
    )
    ratio = max(original) / min(original)
    if ratio > 200 and "qwen2.5-vl" in (source.family, target.family):
        with pytest.raises(InvalidInputError, match="aspect ratio"):
            g.convert_text("<box>(1,2),(3,4)</box>", original, source, target, element=element)
        return
    frame_a = _frame(original, source, element)
    frame_b = _frame(original, target, element)
    assert g.coordinate_frame(original, source, element=element) == frame_a
    assert g.coordinate_frame(original, target, element=element) == frame_b
    form = data.draw(st.sampled_from(["json", "tags", "tokens"]), "form")
    (fh, fw) = frame_a
    values = [
        data.draw(st.integers(-5, (fw if i % 2 == 0 else fh) + 5), f"v{i}") for i in range(12)
    ]
    text = _text(form, values)
    start = _numbers(text)

    # Converting to the generation (and bounds) the data came from is the identity.
    assert g.convert_text(text, original, source, source, element=element).text == text
    items = g.parse(text, source)
    assert g.convert(items, original, source, source, element=element) == items

    # Floats: there and back is exact up to float rounding.
    there = g.convert(items, original, source, target, element=element)
    back = g.convert(there, original, target, source, element=element)
    for item, returned in zip(items, back, strict=True):
        assert returned.space == item.space
        assert _flat(returned) == pytest.approx(_flat(item), rel=1e-12, abs=1e-9)

    # Integers as a model writes them: each axis comes back within floor(1/2 + F/(2G))
    # source units (F, G the source and target frame sizes on that axis); 0 when G > F.
    out = g.convert_text(text, original, source, target, element=element).text
    returned_text = g.convert_text(out, original, target, source, element=element).text
    returned = _numbers(returned_text)
    assert len(returned) == len(start)
    forward = _numbers(out)
    for i, v in enumerate(start):  # v * G / F rounded half up
        axis = 1 if i % 2 == 0 else 0
        assert forward[i] == math.floor(v * frame_b[axis] / frame_a[axis] + 0.5)
    for i, (a, a2) in enumerate(zip(start, returned, strict=True)):
        axis = 1 if i % 2 == 0 else 0
        f, gg = frame_a[axis], frame_b[axis]
        bound = 0 if gg > f or f == gg else math.floor(0.5 + f / (2 * gg))
        assert abs(a2 - a) <= bound, (i, a, a2, frame_a, frame_b)
    # The rest of the text is untouched.
    assert _INT.sub("#", returned_text) == _INT.sub("#", text)


def _flat(item: g.Item) -> list[float]:
    if isinstance(item, g.Box):
        return [item.x1, item.y1, item.x2, item.y2]
    if isinstance(item, g.Point):
        return [item.x, item.y]
    return [v for xy in item.points for v in xy]


def test_rounding_bound_is_reached() -> None:
    """The bound is tight: a Qwen2.5-VL frame 4x coarser than 0-1000 loses up to 2 units."""
    preset = QWEN2_5_VL.replace(image_min_pixels=784, image_max_pixels=9 * 784)
    frame = g.coordinate_frame((1000, 1000), preset)
    assert frame == (84, 84)  # F = 1000, G = 84: floor(1/2 + 1000/168) = 6
    worst = 0
    for v in range(0, 1001):
        there = g.convert_text(f"<box>({v},0),(0,0)</box>", (1000, 1000), "qwen3-vl", preset)
        back = g.convert_text(there.text, (1000, 1000), preset, "qwen3-vl")
        worst = max(worst, abs(_numbers(back.text)[0] - v))
    assert worst == 6 == math.floor(0.5 + 1000 / (2 * 84))


def test_dataset_json_numbers_parse_back() -> None:
    text = json.dumps([{"bbox_2d": [1, 2, 3, 4]}])
    out = g.convert_text(text, (100, 200), "qwen3-vl", QWEN2_5_VL.replace(image_min_pixels=784))
    assert json.loads(out.text)[0]["bbox_2d"] == [0, 0, 1, 0]
