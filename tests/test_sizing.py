"""smart_resize: golden table from the reference spec, deviations, and a Hypothesis oracle test."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen_vl_utils import vision_process as qv

from vlprep import InvalidInputError, smart_resize
from vlprep._sizing import (
    ceil_by_factor,
    floor_by_factor,
    image_pixel_bounds,
    round_by_factor,
    tokens_for_size,
)

# (h, w) -> (factor 28 result, factor 32 result); qwen-vl-utils.md section 9.1, default bounds.
GOLDEN = [
    ((1080, 1920), (1092, 1932), (1088, 1920)),
    ((720, 1280), (728, 1288), (704, 1280)),
    ((2160, 3840), (2156, 3836), (2176, 3840)),
    ((3024, 4032), (3024, 4032), (3008, 4032)),
    ((4032, 3024), (4032, 3024), (4032, 3008)),
    ((480, 640), (476, 644), (480, 640)),
    ((224, 224), (224, 224), (224, 224)),
    ((1024, 1024), (1036, 1036), (1024, 1024)),
    ((1000, 1001), (1008, 1008), (992, 992)),
    ((8000, 8000), (3584, 3584), (4096, 4096)),
    ((1, 1), (56, 56), (64, 64)),
    ((10, 10), (56, 56), (64, 64)),
    ((14, 14), (56, 56), (64, 64)),
    ((28, 28), (56, 56), (64, 64)),
    ((50, 50), (56, 56), (64, 64)),
    ((56, 56), (56, 56), (64, 64)),
    ((1, 200), (28, 196), (32, 192)),
    ((15, 3000), (28, 2996), (32, 3008)),
    ((300, 50), (308, 56), (288, 64)),
    ((100, 10000), (112, 9996), (96, 9984)),
    ((20000, 100), (19992, 112), (20000, 96)),
]


@pytest.mark.parametrize(("hw", "f28", "f32"), GOLDEN)
def test_golden_default_bounds(
    hw: tuple[int, int], f28: tuple[int, int], f32: tuple[int, int]
) -> None:
    assert smart_resize(*hw, factor=28) == f28
    assert smart_resize(*hw, factor=32) == f32


@pytest.mark.parametrize(
    ("hw", "factor", "lo", "hi", "expected"),
    [
        ((1080, 1920), 28, 256 * 28 * 28, 1280 * 28 * 28, (728, 1316)),
        ((224, 224), 28, 256 * 28 * 28, 1280 * 28 * 28, (448, 448)),
        ((4032, 3024), 28, 256 * 28 * 28, 1280 * 28 * 28, (1148, 840)),
        ((100, 10000), 28, 256 * 28 * 28, 1280 * 28 * 28, (84, 9996)),
        ((50, 9000), 28, 256 * 28 * 28, 1280 * 28 * 28, (56, 8988)),
        ((1080, 1920), 32, 256 * 32 * 32, 1280 * 32 * 32, (832, 1504)),
        ((100, 333), 28, 200704, 200704, (252, 840)),
        ((1000, 3333), 28, 200704, 200704, (224, 812)),
    ],
)
def test_golden_custom_bounds(
    hw: tuple[int, int], factor: int, lo: int, hi: int, expected: tuple[int, int]
) -> None:
    assert smart_resize(*hw, factor=factor, min_pixels=lo, max_pixels=hi) == expected


def test_default_factor_is_28() -> None:
    assert smart_resize(1080, 1920) == (1092, 1932)


@pytest.mark.parametrize(
    ("hw", "hi", "released"),
    [
        ((50, 9000), 100000, (0, 4228)),
        ((639, 31), 20 * 28 * 28, (560, 0)),
        ((28, 5600), 128 * 28 * 28, (0, 4480)),
    ],
)
def test_deviation_never_a_zero_side(
    hw: tuple[int, int], hi: int, released: tuple[int, int]
) -> None:
    # The released qwen-vl-utils returns a 0 side here; vlprep clamps to the factor.
    assert qv.smart_resize(*hw, factor=28, max_pixels=hi) == released
    h, w = smart_resize(*hw, factor=28, max_pixels=hi)
    assert h >= 28 and w >= 28
    assert (h, w) == tuple(max(28, v) for v in released)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1, 201), "aspect ratio 201"),
        ((100, 20100), "aspect ratio 201"),
        ((2, 1000), "aspect ratio 500"),
        ((0, 10), "height"),
        ((10, -1), "width"),
        ((float("nan"), 10), "height"),
    ],
)
def test_invalid_sizes_raise_typed_errors(args: tuple[float, float], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        smart_resize(*args)  # type: ignore[arg-type]


def test_min_above_max_is_a_value_error_not_assert() -> None:
    with pytest.raises(ValueError, match=r"min_pixels \(10\) must be <= max_pixels \(5\)"):
        smart_resize(100, 100, 28, min_pixels=10, max_pixels=5)
    with pytest.raises(InvalidInputError, match="factor"):
        smart_resize(100, 100, 0)
    with pytest.raises(InvalidInputError, match="number"):
        smart_resize("100", 100)  # type: ignore[arg-type]


def test_helpers() -> None:
    assert round_by_factor(14, 28) == 0
    assert round_by_factor(42, 28) == 56
    assert round_by_factor(70, 28) == 56
    assert [round_by_factor(n, 2) for n in (3, 5, 7)] == [4, 4, 8]
    assert ceil_by_factor(29, 28) == 56 and floor_by_factor(55, 28) == 28
    assert image_pixel_bounds(28) == (3136, 12_845_056)
    assert image_pixel_bounds(32) == (4096, 16_777_216)
    assert tokens_for_size(1092, 1932, 28) == 39 * 69
    with pytest.raises(InvalidInputError):
        tokens_for_size(100, 100, 28)


sizes = st.integers(min_value=1, max_value=30000)
bounds = st.one_of(st.none(), st.integers(min_value=1, max_value=40_000_000))


@settings(max_examples=1500, deadline=None)
@given(h=sizes, w=sizes, factor=st.sampled_from([28, 32]), lo=bounds, hi=bounds)
def test_equals_qwen_vl_utils_where_it_is_valid(
    h: int, w: int, factor: int, lo: int | None, hi: int | None
) -> None:
    try:
        expected = qv.smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
    except (AssertionError, ValueError):
        with pytest.raises(InvalidInputError):
            smart_resize(h, w, factor, lo, hi)
        return
    got = smart_resize(h, w, factor, lo, hi)
    if min(expected) > 0:
        assert got == expected
    else:
        assert got == tuple(max(factor, v) for v in expected)


@settings(max_examples=800, deadline=None)
@given(
    h=sizes,
    w=sizes,
    factor=st.sampled_from([28, 32]),
    lo=st.integers(min_value=1, max_value=40_000_000),
    hi=st.integers(min_value=1, max_value=40_000_000),
)
def test_properties(h: int, w: int, factor: int, lo: int, hi: int) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    if max(h, w) / min(h, w) > 200:
        return
    rh, rw = smart_resize(h, w, factor, lo, hi)
    assert rh % factor == 0 and rw % factor == 0
    assert rh >= factor and rw >= factor
    # Grid rounding moves the area at most one factor-wide strip per side beyond the bound.
    if rh > factor and rw > factor:
        assert rh * rw <= max(hi, factor * factor) + factor * (rh + rw) + factor * factor


def test_count_tokens_and_estimates() -> None:
    from vlprep._sizing import count_tokens, estimate_image, estimate_video

    assert count_tokens((1, 40, 72)) == 720
    assert count_tokens((3, 4, 6)) == 18
    with pytest.raises(InvalidInputError):
        count_tokens((1, 3, 4))
    est = estimate_image(1080, 1920)
    assert (est.height, est.width) == smart_resize(1080, 1920, factor=28)
    assert est.grid == (1, est.height // 14, est.width // 14)
    assert est.tokens == est.height * est.width // 28**2
    qwen3 = estimate_image(3024, 4032, patch_size=16, min_pixels=65_536, max_pixels=16_777_216)
    assert (qwen3.height, qwen3.width, qwen3.tokens) == (3008, 4032, 11844)  # reference §1.4
    video = estimate_video(7, 224, 448)
    assert video.grid == (4, 16, 32) and video.tokens == 4 * 16 * 32 // 4
    with pytest.raises(InvalidInputError, match="nframes"):
        estimate_video(0, 224, 448)
    with pytest.raises(InvalidInputError, match="multiple of 28"):
        estimate_video(2, 225, 448)


def test_transformers_smart_resize_exceeds_max_pixels_where_vlprep_does_not() -> None:
    """A listed deviation (docs/deviations.md): transformers rounds 10 -> 0, then overshoots."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_resize

    theirs = hf_resize(10, 98, factor=28, min_pixels=3136, max_pixels=3136)
    ours = smart_resize(10, 98, factor=28, min_pixels=3136, max_pixels=3136)
    assert theirs[0] * theirs[1] > 3136
    assert ours == (28, 112) and ours[0] * ours[1] <= 3136
