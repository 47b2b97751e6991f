"""Plans (issue 16): a plan saved to JSON in one process and replayed in another gives
bit-identical ``build_inputs`` output, on every bundled image and video."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import vlprep
from tests.conftest import media_dir
from tests.hf_fixtures import FAMILIES, load_processor
from vlprep import ImageOptions, InvalidInputError, Plan, VideoOptions, VlprepError
from vlprep._plans import ElementPlan

REPO = Path(__file__).resolve().parents[1]
IMAGES = media_dir() / "images"
VIDEOS = media_dir() / "videos"
MEDIA = sorted(IMAGES.iterdir()) + sorted(p for p in VIDEOS.iterdir() if p.is_file())
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*cap_pixels_per_frame.*"),
    pytest.mark.filterwarnings("ignore:.*per-frame pixel cap.*"),
]

# Runs in a fresh interpreter: reads the plans and conversations written by the test,
# replays each with build_inputs(plan=...) and saves the tensors.
REPLAY = """
import json, sys
from pathlib import Path
import torch
from vlprep import Plan, build_inputs
from vlprep.testing import load_processor
job = json.loads(Path(sys.argv[1]).read_text())
for family, item in job["families"].items():
    processor = load_processor(family, Path(job["root"]))
    plan = Plan.from_json(Path(item["plan"]).read_text())
    out = build_inputs(item["conversations"], processor, plan=plan)
    torch.save(dict(out), item["out"])
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("processors")


def _conversation(path: Path) -> list[dict[str, Any]]:
    kind = "video" if path.parent == VIDEOS else "image"
    return [
        {
            "role": "user",
            "content": [{"type": kind, kind: str(path)}, {"type": "text", "text": "Describe."}],
        }
    ]


def _loadable(processor: Any) -> list[Path]:
    """The media files build_inputs loads with the default options; for the others a
    replay must fail as build_inputs does."""
    found = []
    for path in MEDIA:
        conversation = _conversation(path)
        try:
            vlprep.build_inputs(conversation, processor)
        except VlprepError as exc:
            with pytest.raises(type(exc)):
                vlprep.build_inputs(
                    conversation, processor, plan=vlprep.plan(conversation, processor)
                )
            continue
        found.append(path)
    return found


def test_replay_in_another_process_is_bit_identical(root: Path, tmp_path: Path) -> None:
    job: dict[str, Any] = {"root": str(root), "families": {}}
    expected = {}
    for family in FAMILIES:
        processor = load_processor(family, root)
        files = _loadable(processor)
        assert len(files) >= len(MEDIA) - 2, files  # all but the odd undecodable file
        assert any(path.parent == VIDEOS for path in files)
        batch = [_conversation(path) for path in files]
        plan = vlprep.plan(batch, processor)
        reference = vlprep.build_inputs(batch, processor)
        images = [e for e in plan.elements if e.kind == "image"]
        videos = [e for e in plan.elements if e.kind == "video"]
        assert [list(e.grid) for e in images] == reference["image_grid_thw"].tolist()
        assert [list(e.grid) for e in videos] == reference["video_grid_thw"].tolist()
        (tmp_path / f"{family}.json").write_text(plan.to_json())
        job["families"][family] = {
            "plan": str(tmp_path / f"{family}.json"),
            "conversations": batch,
            "out": str(tmp_path / f"{family}.pt"),
        }
        expected[family] = dict(reference)
    (tmp_path / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-c", REPLAY, str(tmp_path / "job.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for family, reference in expected.items():
        replayed = torch.load(tmp_path / f"{family}.pt")
        assert replayed.keys() == reference.keys(), family
        for key, value in reference.items():
            assert replayed[key].dtype == value.dtype, (family, key)
            assert torch.equal(replayed[key], value), (family, key)


def test_json_round_trip(root: Path) -> None:
    processor = load_processor("qwen3-vl", root)
    batch = [
        _conversation(IMAGES / "hopper_orientation_6.jpg"),
        _conversation(VIDEOS / "var_fps_video.mp4"),
    ]
    plan = vlprep.plan(batch, processor)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.to_json() == plan.to_json()
    assert Plan.from_json(plan.to_json(indent=2)) == plan
    video = plan.conversations[1][0]
    assert video.kind == "video" and video.indices and video.sample_fps
    assert video.seconds is not None and len(video.seconds) == len(video.indices)
    assert set(plan.versions) >= {"vlprep", "pillow", "torch", "av"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.preset = vlprep.QWEN2_VL  # type: ignore[misc]


def test_plan_with_preset_equals_plan_with_processor(root: Path) -> None:
    processor = load_processor("qwen2.5-vl", root)
    batch = [_conversation(IMAGES / "flower2.jpg")]
    preset = vlprep.preset_from_processor(processor)
    assert vlprep.plan(batch, preset=preset) == vlprep.plan(batch, processor)
    with pytest.raises(InvalidInputError, match="processor or a preset"):
        vlprep.plan(batch)


@pytest.mark.parametrize(
    ("source", "replacement"),
    [
        (IMAGES / "hopper.jpg", IMAGES / "hopper_gray.jpg"),
        (VIDEOS / "h265_video.mp4", VIDEOS / "h264_10bits.mp4"),
    ],
)
def test_changed_media_is_refused(
    root: Path, tmp_path: Path, source: Path, replacement: Path
) -> None:
    processor = load_processor("qwen2-vl", root)
    path = tmp_path / source.name
    shutil.copy(source, path)
    kind = "video" if source.parent == VIDEOS else "image"
    conversation = [{"role": "user", "content": [{"type": kind, kind: str(path)}]}]
    plan = vlprep.plan(conversation, processor)
    vlprep.build_inputs(conversation, processor, plan=plan)  # unchanged: fine
    shutil.copy(replacement, path)
    with pytest.raises(InvalidInputError, match="changed since the plan was made"):
        vlprep.build_inputs(conversation, processor, plan=plan)


def test_plan_for_other_preset_elements_or_options_is_refused(root: Path) -> None:
    qwen25 = load_processor("qwen2.5-vl", root)
    qwen3 = load_processor("qwen3-vl", root)
    batch = [_conversation(IMAGES / "hopper.png")]
    plan = vlprep.plan(batch, qwen25)
    with pytest.raises(InvalidInputError, match=r"another preset.*patch_size"):
        vlprep.build_inputs(batch, qwen3, plan=plan)
    with pytest.raises(InvalidInputError, match="other conversations"):
        vlprep.build_inputs([_conversation(VIDEOS / "h265_video.mp4")], qwen25, plan=plan)
    with pytest.raises(InvalidInputError, match="covers 1 conversations"):
        vlprep.build_inputs(batch * 2, qwen25, plan=plan)
    with pytest.raises(InvalidInputError, match="exif_transpose"):
        vlprep.build_inputs(
            batch, qwen25, plan=plan, image_options=ImageOptions(exif_transpose=False)
        )
    with pytest.raises(InvalidInputError, match="video_resize"):
        vlprep.build_inputs(batch, qwen25, plan=plan, video_options=VideoOptions(resize="fast"))


def test_other_versions_warn_and_replay_the_plan(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    processor = load_processor("qwen2.5-vl", root)
    batch = [_conversation(IMAGES / "flower.webp")]
    plan = vlprep.plan(batch, processor)
    older = dataclasses.replace(plan, versions={**plan.versions, "pillow": "9.0.0"})
    with caplog.at_level(logging.WARNING, logger="vlprep._plans"):
        out = vlprep.build_inputs(batch, processor, plan=Plan.from_json(older.to_json()))
    assert "pillow 9.0.0 ->" in caplog.text
    assert torch.equal(out["pixel_values"], vlprep.build_inputs(batch, processor)["pixel_values"])


def test_replay_uses_the_planned_size(root: Path) -> None:
    """The plan's size wins over what this vlprep would compute (a later sizing change)."""
    processor = load_processor("qwen2-vl", root)
    batch = [_conversation(IMAGES / "flower2.jpg")]
    plan = vlprep.plan(batch, processor)
    element = plan.conversations[0][0]
    smaller = ElementPlan("image", element.digest, (56, 84), (1, 4, 6), 6)
    out = vlprep.build_inputs(
        batch, processor, plan=dataclasses.replace(plan, conversations=((smaller,),))
    )
    assert out["image_grid_thw"].tolist() == [[1, 4, 6]]


def test_frame_lists_and_arrays_replay(root: Path, tmp_path: Path) -> None:
    """Frame-list and array videos: planned from the first frame, replayed bit for bit,
    a changed frame refused; a file object cannot be hashed without reading it."""
    processor = load_processor("qwen3-vl", root)
    frames = [str(tmp_path / f"{i}.jpg") for i in range(3)]
    for path, name in zip(frames, ["hopper.jpg", "hopper_gray.jpg", "flower2.jpg"], strict=True):
        shutil.copy(IMAGES / name, path)
    array = torch.randint(0, 255, (5, 3, 60, 90), dtype=torch.uint8)
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": frames, "sample_fps": 3},
                {"type": "video", "video": array},
            ],
        }
    ]
    plan = Plan.from_json(vlprep.plan(conversation, processor).to_json())
    assert [e.backend for e in plan.elements] == ["frames", "frames"]
    expected = vlprep.build_inputs(conversation, processor)
    replayed = vlprep.build_inputs(conversation, processor, plan=plan)
    for key, value in expected.items():
        assert torch.equal(replayed[key], value), key
    shutil.copy(IMAGES / "flower.webp", frames[2])
    with pytest.raises(InvalidInputError, match="changed since the plan was made"):
        vlprep.build_inputs(conversation, processor, plan=plan)
    with (
        (VIDEOS / "h265_video.mp4").open("rb") as handle,
        pytest.raises(InvalidInputError, match="file object"),
    ):
        vlprep.plan([{"role": "user", "content": [{"type": "video", "video": handle}]}], processor)


def _valid_json(root: Path) -> dict[str, Any]:
    processor = load_processor("qwen2-vl", root)
    batch = [_conversation(IMAGES / "hopper.jpg"), _conversation(VIDEOS / "h265_video.mp4")]
    loaded: dict[str, Any] = json.loads(vlprep.plan(batch, processor).to_json())
    return loaded


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d.update(format="vlprep-plan/0"), "format"),
        (lambda d: d.pop("preset"), "'preset' is missing"),
        (lambda d: d.pop("versions"), "'versions' is missing"),
        (lambda d: d["preset"].pop("patch_size"), "preset.patch_size"),
        (lambda d: d["preset"].update(patch_size="14"), "preset"),
        (lambda d: d["versions"].update(av=18), "versions.av"),
        (lambda d: d.update(conversations={}), "conversations"),
        (lambda d: d["conversations"][0][0].pop("digest"), r"conversations\[0\]\[0\].digest"),
        (lambda d: d["conversations"][0][0].update(digest="00"), r"\[0\]\[0\].digest"),
        (lambda d: d["conversations"][0][0].update(size=[1]), r"\[0\]\[0\].size"),
        (lambda d: d["conversations"][0][0].update(size=[1.5, 2]), r"\[0\]\[0\].size\[0\]"),
        (lambda d: d["conversations"][0][0].update(kind="audio"), r"\[0\]\[0\].kind"),
        (lambda d: d["conversations"][0][0].update(indices=[0, 1]), r"\[0\]\[0\].indices"),
        (lambda d: d["conversations"][1][0].pop("indices"), r"\[1\]\[0\].indices"),
        (lambda d: d["conversations"][1][0].update(sample_fps=True), r"\[1\]\[0\].sample_fps"),
        (lambda d: d["conversations"][1][0].update(seconds=["0"]), r"\[1\]\[0\].seconds\[0\]"),
        (lambda d: d["conversations"][1][0].update(indices=[-1, 0]), r"\[1\]\[0\].indices"),
    ],
)
def test_from_json_names_the_bad_field(root: Path, edit: Any, named: str) -> None:
    data = _valid_json(root)
    edit(data)
    with pytest.raises(InvalidInputError, match=named):
        Plan.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '{"format": "vlprep-plan/1"}'])
def test_from_json_refuses_non_plans(text: str) -> None:
    with pytest.raises(InvalidInputError, match="plan"):
        Plan.from_json(text)


def test_in_memory_images_and_keyframe_seek_replay(root: Path) -> None:
    """Images given as a PIL image or an array (digest of their pixels), and a video
    planned with ``seek="keyframe"``, replay bit for bit too."""
    from PIL import Image

    processor = load_processor("qwen2.5-vl", root)
    array = torch.randint(0, 255, (90, 130, 3), dtype=torch.uint8).numpy()
    with Image.open(IMAGES / "hopper_orientation_6.jpg") as opened:
        conversation = [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": opened},
                    {"type": "image", "image": array},
                    {"type": "video", "video": str(VIDEOS / "nasa_13013.mp4")},
                ],
            }
        ]
        options = VideoOptions(seek="keyframe")
        plan = Plan.from_json(vlprep.plan(conversation, processor, video_options=options).to_json())
        expected = vlprep.build_inputs(conversation, processor, video_options=options)
        replayed = vlprep.build_inputs(conversation, processor, plan=plan, video_options=options)
    assert expected.keys() == replayed.keys()
    for key, value in expected.items():
        assert torch.equal(replayed[key], value), key
    with pytest.raises(InvalidInputError, match="video_seek"):
        vlprep.build_inputs(conversation, processor, plan=plan)
