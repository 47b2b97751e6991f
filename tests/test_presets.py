from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from transformers import AutoProcessor

from tests.hf_fixtures import make_processor, save_checkpoint
from tests.videos import write_clip
from vlprep import (
    QWEN2_5_VL,
    QWEN2_VL,
    QWEN3_VL,
    QWEN_VL,
    InvalidInputError,
    Preset,
    get_preset,
    grounding,
    testing,
)
from vlprep._inputs import build_inputs
from vlprep._positions import rope_index
from vlprep._presets import (
    DEFAULT_FAMILY,
    FAMILIES,
    FAMILY_BY_MODEL_TYPE,
    PROCESSOR_FAMILIES,
    VIDEO_FAMILIES,
    Family,
    as_family,
    family_of,
    preset_from_processor,
)
from vlprep.cli import inspect as cli_inspect
from vlprep.runner import Runner, _loading


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


# --------------------------------------------------------------------------- the family


def test_family_is_a_field_that_replace_keeps() -> None:
    assert [p.family for p in (QWEN_VL, QWEN2_VL, QWEN2_5_VL, QWEN3_VL)] == list(FAMILIES)
    mine = QWEN2_5_VL.replace(name="mine")
    assert mine.family == "qwen2.5-vl" and family_of(mine) == "qwen2.5-vl"
    assert QWEN2_VL.replace(family="qwen2_5_vl").family == "qwen2.5-vl"  # aliases normalised
    with pytest.raises(InvalidInputError, match="unknown family"):
        QWEN2_VL.replace(family="llava")


@pytest.mark.parametrize(
    ("name", "patch", "family"),
    [("qwen2.5-vl-7b-ft", 14, "qwen2.5-vl"), ("Qwen3_VL_moe", 16, "qwen3-vl"),
     ("custom", 14, "qwen2-vl"), ("custom", 16, "qwen3-vl")],
)  # fmt: skip
def test_preset_without_family_is_guessed_once_with_a_warning(
    name: str, patch: int, family: str
) -> None:
    with pytest.warns(DeprecationWarning, match="family="):
        preset = Preset(name=name, patch_size=patch)
    assert preset.family == family
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert preset.replace(name="other").family == family


def test_one_family_table() -> None:
    assert FAMILIES == ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl")
    assert DEFAULT_FAMILY in FAMILIES
    assert PROCESSOR_FAMILIES == VIDEO_FAMILIES == FAMILIES[1:]
    assert get_args(Family) == FAMILIES
    assert testing.FAMILIES is FAMILIES and testing.Family is Family
    assert grounding.Family is Family
    assert _loading.FAMILY_BY_MODEL_TYPE is FAMILY_BY_MODEL_TYPE
    assert cli_inspect.MODELS is FAMILIES and cli_inspect.DEFAULT_MODEL == DEFAULT_FAMILY
    assert dict(FAMILY_BY_MODEL_TYPE) == {
        "qwen": "qwen-vl",
        "qwen2_vl": "qwen2-vl",
        "qwen2_5_vl": "qwen2.5-vl",
        "qwen3_vl": "qwen3-vl",
        "qwen3_vl_moe": "qwen3-vl",
    }
    for model_type, family in FAMILY_BY_MODEL_TYPE.items():
        assert get_preset(model_type).family == as_family(model_type) == family


def test_renamed_qwen2_5_preset_keeps_second_per_grid_ts(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=8, fps=4, width=64, height=48)
    processor = make_processor("qwen2.5-vl")
    conversation = [{"role": "user", "content": [{"type": "video", "video": str(clip)}]}]
    inputs = build_inputs([conversation], processor, preset=QWEN2_5_VL.replace(name="mine"))
    assert "second_per_grid_ts" in inputs
    renamed_qwen2 = QWEN2_VL.replace(name="mine")
    assert "second_per_grid_ts" not in build_inputs(
        [conversation], make_processor("qwen2-vl"), preset=renamed_qwen2
    )


def test_callers_take_the_family_from_the_preset() -> None:
    ids = torch.zeros((1, 3), dtype=torch.int64)
    types = torch.zeros((1, 3), dtype=torch.int64)
    by_preset = rope_index(ids, types, preset=QWEN3_VL.replace(name="x"))
    assert torch.equal(by_preset[0], rope_index(ids, types, family="qwen3-vl")[0])
    with pytest.raises(InvalidInputError, match="disagrees"):
        rope_index(ids, types, preset=QWEN3_VL, family="qwen2-vl")
    with pytest.raises(InvalidInputError, match="merge_size"):
        rope_index(ids, types, preset=QWEN3_VL, merge_size=4)
    with pytest.raises(InvalidInputError, match="preset"):
        rope_index(ids, types)
    with pytest.raises(InvalidInputError, match="disagrees"):
        Runner(
            object(),
            object(),
            preset=QWEN3_VL,
            family="qwen2.5-vl",
            device=torch.device("cpu"),
            dtype=torch.float32,
        )


# ---------------------------------------------------------------- Preset.from_pretrained


@pytest.mark.parametrize("family", PROCESSOR_FAMILIES)
def test_from_pretrained_directory_equals_processor(family: Family, tmp_path: Path) -> None:
    processor = make_processor(family)
    processor.save_pretrained(str(tmp_path))
    from_dir = Preset.from_pretrained(tmp_path)
    assert from_dir == Preset.from_pretrained(processor)
    assert from_dir.family == family and Preset.from_pretrained(str(tmp_path)) == from_dir
    loaded = AutoProcessor.from_pretrained(str(tmp_path), local_files_only=True)
    assert Preset.from_pretrained(loaded) == from_dir


def test_from_pretrained_checkpoint(tmp_path: Path) -> None:
    directory = save_checkpoint("qwen2.5-vl", tmp_path / "ckpt")
    preset = Preset.from_pretrained(directory)
    assert preset.family == "qwen2.5-vl"
    assert preset.replace(name="qwen2.5-vl") == QWEN2_5_VL


def _write(directory: Path, files: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_text(json.dumps(data), encoding="utf-8")
    return directory


def test_from_pretrained_reads_a_training_runs_bounds(tmp_path: Path) -> None:
    # A Qwen2.5-VL fine-tune saved with the training run's limits (legacy layout).
    directory = _write(
        tmp_path,
        {
            "config.json": {"model_type": "qwen2_5_vl"},
            "preprocessor_config.json": {
                "processor_class": "Qwen2_5_VLProcessor",
                "min_pixels": 200_704,
                "max_pixels": 602_112,
                "patch_size": 14,
                "merge_size": 2,
                "temporal_patch_size": 2,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.25, 0.25, 0.25],
            },
            "video_preprocessor_config.json": {
                "size": {"shortest_edge": 50_176, "longest_edge": 401_408},
                "fps": 1.0,
                "min_frames": 2,
                "max_frames": 64,
                "max_video_tokens": 16_384,
            },
        },
    )
    preset = Preset.from_pretrained(directory)
    assert preset.family == "qwen2.5-vl"
    assert (preset.image_min_pixels, preset.image_max_pixels) == (200_704, 602_112)
    assert (preset.image_mean, preset.image_std) == ((0.5,) * 3, (0.25,) * 3)
    assert (preset.video_min_pixels, preset.video_max_pixels) == (50_176, 401_408)
    assert preset.video_total_pixels == int(16_384 * 28 * 28 * 0.9)
    assert (preset.fps, preset.min_frames, preset.max_frames) == (1.0, 2, 64)


def test_from_pretrained_qwen3_video_budget_is_per_clip(tmp_path: Path) -> None:
    # Qwen3-VL's hub layout: size.longest_edge of the video config bounds frames·h·w.
    directory = _write(
        tmp_path,
        {
            "config.json": {"model_type": "qwen3_vl_moe"},
            "preprocessor_config.json": {
                "size": {"shortest_edge": 65_536, "longest_edge": 16_777_216},
                "patch_size": 16,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            },
            "video_preprocessor_config.json": {
                "size": {"shortest_edge": 4096, "longest_edge": 25_165_824},
                "patch_size": 16,
                "fps": 2,
                "max_frames": 768,
            },
        },
    )
    preset = Preset.from_pretrained(directory)
    assert preset.family == "qwen3-vl" and preset.factor == 32
    assert (preset.image_min_pixels, preset.image_max_pixels) == (65_536, 16_777_216)
    assert preset.video_min_pixels == 4096
    assert preset.video_total_pixels == 25_165_824 // 2
    assert preset.video_max_pixels == QWEN3_VL.video_max_pixels


def test_from_pretrained_without_video_config_keeps_video_defaults(tmp_path: Path) -> None:
    image = {"min_pixels": 3136, "max_pixels": 12_845_056, "patch_size": 14}
    directory = _write(
        tmp_path, {"config.json": {"model_type": "qwen2_vl"}, "preprocessor_config.json": image}
    )
    preset = Preset.from_pretrained(directory)
    assert preset == QWEN2_VL
    # transformers builds such a checkpoint's video processor from the image config
    loaded = AutoProcessor.from_pretrained(str(_saved(tmp_path / "p", "qwen2-vl")))
    loaded.video_processor.size = {"shortest_edge": 3136, "longest_edge": 12_845_056}
    assert Preset.from_pretrained(loaded).video_max_pixels == QWEN2_VL.video_max_pixels


def _saved(directory: Path, family: Family) -> Path:
    make_processor(family).save_pretrained(str(directory))
    return directory


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"config.json": {"model_type": "llava"}}, r"config\.json: model_type 'llava'"),
        ({"config.json": {"model_type": "qwen2_vl"}}, "no image processor settings"),
        ({"preprocessor_config.json": {"patch_size": 14}}, "processor_class"),
        ({"preprocessor_config.json": {"processor_class": "LlavaProcessor"}}, "LlavaProcessor"),
        ({"processor_config.json": {"image_processor": 3}}, "image_processor"),
        (
            {
                "config.json": {"model_type": "qwen2_vl"},
                "preprocessor_config.json": {"patch_size": 14},
                "video_preprocessor_config.json": {"patch_size": 16},
            },
            "differs from the video",
        ),
        (
            {
                "config.json": {"model_type": "qwen2_vl"},
                "preprocessor_config.json": {"size": {"longest_edge": "big"}},
            },
            r"preprocessor_config\.json: size\.longest_edge",
        ),
    ],
)
def test_from_pretrained_bad_checkpoints(tmp_path: Path, files: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        Preset.from_pretrained(_write(tmp_path, files))


def test_from_pretrained_bad_sources(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"config\.json is not readable JSON"):
        Preset.from_pretrained(tmp_path)
    with pytest.raises(InvalidInputError, match="fetches nothing"):
        Preset.from_pretrained("Qwen/Qwen2.5-VL-7B-Instruct")
    with pytest.raises(InvalidInputError, match="not a Qwen-VL processor"):
        Preset.from_pretrained(object())
    with pytest.raises(InvalidInputError, match=r"Preset\.from_pretrained"):
        preset_from_processor(str(tmp_path))


@pytest.mark.parametrize("family", PROCESSOR_FAMILIES)
def test_preset_from_processor_keeps_the_qwen_vl_utils_video_bounds(family: Family) -> None:
    # build_inputs(processor) sizes video as it always has; the checkpoint's video settings
    # are opt-in through Preset.from_pretrained.
    processor = make_processor(family)
    derived, checkpoint = preset_from_processor(processor), Preset.from_pretrained(processor)
    image_fields = (
        "family",
        "patch_size",
        "merge_size",
        "temporal_patch_size",
        "image_min_pixels",
        "image_max_pixels",
        "image_mean",
        "image_std",
    )
    for field in image_fields:
        assert getattr(derived, field) == getattr(checkpoint, field), field
    area = derived.factor**2
    assert (derived.video_min_pixels, derived.video_max_pixels) == (128 * area, 768 * area)
    assert derived.video_total_pixels == int(128000 * area * 0.9)
    assert (derived.fps, derived.min_frames, derived.max_frames) == (2.0, 4, 768)


# ---------------------------------------------------------------- the first generation


def test_qwen_vl_preset() -> None:
    assert QWEN_VL.family == "qwen-vl" and not QWEN_VL.takes_video
    assert (QWEN_VL.image_size, QWEN_VL.image_tokens, QWEN_VL.patch_size) == ((448, 448), 256, 14)
    assert QWEN_VL.image_mean == QWEN2_VL.image_mean and QWEN_VL.image_std == QWEN2_VL.image_std
    assert all(p.takes_video and p.image_size is None for p in (QWEN2_VL, QWEN2_5_VL, QWEN3_VL))
    for name in ("qwen-vl", "Qwen-VL-Chat", "qwen", "qwenvl", QWEN_VL):
        assert get_preset(name) is QWEN_VL
    assert QWEN_VL.replace(name="mine").family == "qwen-vl"
    with pytest.raises(InvalidInputError, match="image_size"):
        QWEN_VL.replace(image_size=None)
    with pytest.raises(InvalidInputError, match="multiples of patch_size"):
        QWEN_VL.replace(image_size=(448, 450))
    with pytest.raises(InvalidInputError, match="image_tokens"):
        QWEN_VL.replace(image_tokens=0)
    with pytest.raises(InvalidInputError, match="leave them None"):
        QWEN2_VL.replace(image_size=(448, 448), image_tokens=256)


def test_qwen_is_not_a_prefix_for_the_deprecated_guess() -> None:
    # "qwen" (the first generation's model_type) must not claim every name starting with it
    with pytest.warns(DeprecationWarning, match="family="):
        assert Preset(name="qwen-custom", patch_size=14).family == "qwen2-vl"


def test_qwen_vl_from_a_checkpoint_config(tmp_path: Path) -> None:
    visual = {"image_size": 448, "patch_size": 14, "image_start_id": 151857, "width": 1664}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen", "visual": visual}))
    assert Preset.from_pretrained(tmp_path) == QWEN_VL
    visual["image_size"] = 224
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen", "visual": visual}))
    small = Preset.from_pretrained(tmp_path)
    assert (small.image_size, small.image_tokens, small.image_max_pixels) == (
        (224, 224),
        256,
        224**2,
    )
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen"}))
    with pytest.raises(InvalidInputError, match="text-only Qwen"):
        Preset.from_pretrained(tmp_path)


def test_qwen_vl_has_no_m_rope() -> None:
    ids = torch.zeros((1, 4), dtype=torch.int64)
    with pytest.raises(InvalidInputError, match="1-D rotary"):
        rope_index(ids, ids, preset=QWEN_VL)


def test_runner_refuses_a_first_generation_checkpoint(tmp_path: Path) -> None:
    visual = {"image_size": 448, "patch_size": 14}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen", "visual": visual}))
    with pytest.raises(InvalidInputError, match="remote code") as caught:
        Runner.from_pretrained(tmp_path)
    assert "build_inputs" in str(caught.value) and "QWEN_VL" in str(caught.value)
