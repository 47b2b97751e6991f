from __future__ import annotations

import dataclasses

import pytest

from vlprep import QWEN2_5_VL, QWEN2_VL, QWEN3_VL, InvalidInputError, Preset, get_preset


def test_family_constants() -> None:
    assert (QWEN2_VL.patch_size, QWEN2_VL.factor) == (14, 28)
    assert (QWEN2_5_VL.patch_size, QWEN2_5_VL.factor) == (14, 28)
    assert (QWEN3_VL.patch_size, QWEN3_VL.factor) == (16, 32)
    assert QWEN3_VL.image_mean == QWEN3_VL.image_std == (0.5, 0.5, 0.5)
    assert QWEN2_VL.image_mean[0] == pytest.approx(0.48145466)
    assert (QWEN2_VL.image_min_pixels, QWEN2_VL.image_max_pixels) == (3136, 12_845_056)
    assert (QWEN3_VL.image_min_pixels, QWEN3_VL.image_max_pixels) == (65_536, 16_777_216)
    assert QWEN2_VL.video_total_pixels == int(128000 * 28 * 28 * 0.9)
    assert QWEN3_VL.video_total_pixels == int(128000 * 32 * 32 * 0.9)
    for p in (QWEN2_VL, QWEN3_VL):
        assert p.video_min_pixels == 128 * p.factor**2
        assert p.video_max_pixels == 768 * p.factor**2


@pytest.mark.parametrize(
    ("name", "preset"),
    [
        ("qwen2-vl", QWEN2_VL),
        ("Qwen2.5-VL", QWEN2_5_VL),
        ("qwen2_5_vl", QWEN2_5_VL),
        ("qwen3-vl", QWEN3_VL),
        ("qwen3_vl_moe", QWEN3_VL),
    ],
)
def test_get_preset(name: str, preset: Preset) -> None:
    assert get_preset(name) is preset


def test_get_preset_unknown_lists_valid() -> None:
    with pytest.raises(InvalidInputError, match=r"qwen2\.5-vl"):
        get_preset("llava")
    assert get_preset(QWEN3_VL) is QWEN3_VL


def test_frozen_and_validated() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        QWEN2_VL.patch_size = 16  # type: ignore[misc]
    with pytest.raises(InvalidInputError, match="image_min_pixels"):
        QWEN2_VL.replace(image_min_pixels=10**9)
    with pytest.raises(InvalidInputError, match="patch_size"):
        QWEN2_VL.replace(patch_size=0)
    assert QWEN2_VL.replace(image_max_pixels=1280 * 28 * 28).image_max_pixels == 1003520
