"""rope_index against transformers' get_rope_index, and where the two semantics part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import photo
from tests.hf_fixtures import FAMILIES, Family, load_processor, tiny_model
from tests.upstream import ROPE_TRUNCATES, rope_differs
from tests.videos import write_clip
from vlprep import InvalidInputError
from vlprep._inputs import build_inputs
from vlprep._positions import rope_index

pytestmark = pytest.mark.filterwarnings("ignore:.*cap_pixels_per_frame.*")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("processors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=90, fps=15)


def _hf(model: Any, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    keys = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts", "attention_mask")
    kwargs = {k: inputs[k] for k in keys if k in inputs}
    if "second_per_grid_ts" in kwargs and not hasattr(
        model.config.vision_config, "tokens_per_second"
    ):
        kwargs.pop("second_per_grid_ts")
    result: tuple[torch.Tensor, torch.Tensor] = model.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"], **kwargs
    )
    return result


def _ours(family: Family, inputs: Any, semantics: str) -> tuple[torch.Tensor, torch.Tensor]:
    keys = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts", "attention_mask")
    return rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        family=family,
        semantics=semantics,  # type: ignore[arg-type]
        tokens_per_second=2,
        **{k: inputs[k] for k in keys if k in inputs},
    )


def _conversation(video: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": photo(200, 120)},
                    {"type": "text", "text": "hi"},
                ],
            }
        ],
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "image": photo(90, 300, seed=2)},
                    video,
                    {"type": "text", "text": "what next?"},
                ],
            }
        ],
    ]


@rope_differs()
@pytest.mark.parametrize("family", FAMILIES)
def test_equal_to_transformers_for_short_videos(family: Family, root: Path, clip: Path) -> None:
    processor = load_processor(family, root)
    model = tiny_model(family, processor)
    # 4 frames -> 2 temporal steps, fewer than the spatial extent: both rules agree
    inputs = build_inputs(
        _conversation({"type": "video", "video": str(clip), "nframes": 4}), processor
    )
    hf_pos, hf_delta = _hf(model, inputs)
    for semantics in ("reference", "transformers"):
        pos, delta = _ours(family, inputs, semantics)
        assert torch.equal(pos, hf_pos), semantics
        assert torch.equal(delta, hf_delta), semantics


@rope_differs()
@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl"])
def test_long_video_positions_follow_the_reference(family: Family, root: Path, clip: Path) -> None:
    """After a video longer (in time) than wide, transformers 5.x reuses temporal positions.

    vlprep's default follows the Qwen reference (and vLLM/SGLang): the text after a vision
    item starts at max(position) + 1, so it never overlaps the video. The "transformers"
    semantics reproduces 5.x exactly.
    """
    processor = load_processor(family, root)
    model = tiny_model(family, processor)
    video = {
        "type": "video",
        "video": str(clip),
        "nframes": 24,
        "max_pixels": 12_000,
        "min_pixels": 3_000,
    }
    inputs = build_inputs(_conversation(video), processor)
    t, h, w = inputs["video_grid_thw"][0].tolist()
    assert t > max(h, w) // 2  # the case where the rules part
    hf_pos, hf_delta = _hf(model, inputs)
    mirrored = dict(inputs)
    if ROPE_TRUNCATES and "second_per_grid_ts" in inputs:  # tests/upstream.py
        mirrored["second_per_grid_ts"] = inputs["second_per_grid_ts"].trunc()
    same, _ = _ours(family, mirrored, "transformers")
    assert torch.equal(same, hf_pos)
    ref, ref_delta = _ours(family, inputs, "reference")
    assert not torch.equal(ref, hf_pos)
    row = 1
    types = inputs["mm_token_type_ids"][row]
    video_at = (types == 2).nonzero().flatten()
    after = int(video_at[-1]) + 1
    video_max = int(ref[:, row, video_at].max())
    assert int(ref[0, row, after]) == video_max + 1  # text resumes after the video
    assert int(hf_pos[0, row, after]) <= video_max  # 5.x: text inside the video's time range
    assert int(ref_delta[row]) > int(hf_delta[row])


def test_padding_and_errors(root: Path) -> None:
    processor = load_processor("qwen3-vl", root)
    inputs = build_inputs(_conversation({"type": "text", "text": "no video"}), processor)
    pos, _ = _ours("qwen3-vl", inputs, "reference")
    pad = inputs["attention_mask"] == 0
    assert pad.any() and int(pos[:, pad].abs().sum()) == 0
    with pytest.raises(InvalidInputError, match="family"):
        rope_index(inputs["input_ids"], inputs["mm_token_type_ids"], family="llava")
    with pytest.raises(InvalidInputError, match="semantics"):
        rope_index(
            inputs["input_ids"],
            inputs["mm_token_type_ids"],
            family="qwen3-vl",
            semantics="x",  # type: ignore[arg-type]
        )
    with pytest.raises(InvalidInputError, match="more vision runs"):
        rope_index(inputs["input_ids"], inputs["mm_token_type_ids"], family="qwen3-vl")
    grid = inputs["image_grid_thw"].clone()
    grid[0, 1] += 2
    with pytest.raises(InvalidInputError, match="does not match grid"):
        rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], family="qwen3-vl", image_grid_thw=grid
        )
