"""build_inputs against transformers' processors (the oracle), for the three families."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers.video_utils import VideoMetadata

from tests.conftest import media_dir, photo
from tests.hf_fixtures import FAMILIES, Family, load_processor, tiny_model
from tests.upstream import PIL_NOT_BIT_EXACT, mixed_media_model_bug
from tests.videos import write_clip
from vlprep import InvalidInputError, ResourceLimitError
from vlprep._inputs import build_inputs
from vlprep._messages import extract_vision_info
from vlprep._presets import QWEN3_VL, preset_from_processor
from vlprep._processor_forms import qwen3_video_form
from vlprep._sizing import smart_resize
from vlprep._video import fetch_video

IMAGES = media_dir() / "images"
VIDEOS = media_dir() / "videos"
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*cap_pixels_per_frame.*"),
    pytest.mark.filterwarnings("ignore:.*per-frame pixel cap.*"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("processors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=45, fps=15)


def _user(*content: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(content)}]


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image(source: object, **keys: object) -> dict[str, Any]:
    return {"type": "image", "image": source, **keys}


def _video(source: object, **keys: object) -> dict[str, Any]:
    return {"type": "video", "video": source, **keys}


def _cases(clip: Path) -> dict[str, list[list[dict[str, Any]]]]:
    return {
        "single image": [_user(_image(str(IMAGES / "hopper.jpg")), _text("What is this?"))],
        "several images": [
            _user(
                _image(str(IMAGES / "hopper_orientation_6.jpg")),
                _text("and"),
                _image(str(IMAGES / "pil_sample_cmyk.jpg"), max_pixels=40_000),
                _image(photo(333, 201, seed=3)),
                _text("compare them"),
            )
        ],
        "video": [_user(_video(str(clip), fps=4), _text("What happens?"))],
        "mixed": [
            _user(
                _text("first"),
                _video(str(VIDEOS / "nasa_13013.mp4"), nframes=6),
                _image(str(IMAGES / "transparent.png")),
                _video(str(clip), nframes=5, min_pixels=10_000, max_pixels=30_000),
            )
        ],
        "batch": [
            _user(_image(str(IMAGES / "flower2.jpg"), max_pixels=60_000), _text("Short.")),
            [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        _image(photo(120, 90, seed=1)),
                        _video(str(clip), nframes=4),
                        _text("A longer question about both of these."),
                    ],
                },
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "again"},
            ],
        ],
    }


def _reference(conversations: list[Any], processor: Any, **render: Any) -> Any:
    """What users do today: qwen-vl-utils-style loading, then the processor, no resize."""
    from vlprep._inputs import _load

    preset = preset_from_processor(processor)
    images, videos = _load(extract_vision_info(conversations), preset, None, None)
    texts = [
        processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True, **render)
        for c in conversations
    ]
    kwargs: dict[str, Any] = {}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs["videos"] = [v for v, _, _ in videos]
        kwargs["video_metadata"] = [
            VideoMetadata(
                total_num_frames=m["total_num_frames"],
                fps=m["fps"],
                frames_indices=m["frames_indices"],
            )
            for _, m, _ in videos
        ]
        kwargs["do_sample_frames"] = False
    return processor(
        text=texts,
        do_resize=False,
        padding=True,
        padding_side="left",
        return_tensors="pt",
        **kwargs,
    )


def _assert_same(ours: Any, ref: Any, pixel_tol: float) -> None:
    assert sorted(ours.keys()) == sorted(ref.keys())
    for key in ref:
        a, b = ours[key], ref[key]
        assert a.shape == b.shape, key
        if key == "second_per_grid_ts":
            assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-7), key
        elif a.is_floating_point():
            tol = 1e-6 if key == "pixel_values_videos" else pixel_tol
            diff = (a - b).abs().max().item()
            assert diff <= tol, f"{key}: max abs diff {diff}"
        else:
            assert torch.equal(a, b.to(a.dtype)), key


@pytest.mark.parametrize("case", ["single image", "several images", "video", "mixed", "batch"])
@pytest.mark.parametrize("backend", ["pil", "torchvision"])
@pytest.mark.parametrize("family", FAMILIES)
def test_equals_processor(family: Family, backend: str, case: str, root: Path, clip: Path) -> None:
    processor = load_processor(family, root, backend="pil" if backend == "pil" else None)
    conversations = _cases(clip)[case]
    ours = build_inputs(conversations, processor)
    ref = _reference(conversations, processor)
    # PIL backend: bit for bit (from 5.9; see tests/upstream.py); torchvision: within 1e-6.
    exact = backend == "pil" and not PIL_NOT_BIT_EXACT
    _assert_same(ours, ref, pixel_tol=0.0 if exact else 1e-6)
    if "pixel_values" in ref and exact:
        assert torch.equal(ours["pixel_values"], ref["pixel_values"])


def test_add_vision_id_and_right_padding(root: Path, clip: Path) -> None:
    processor = load_processor("qwen2-vl", root, backend="pil")
    conversations = _cases(clip)["batch"]
    ours = build_inputs(
        conversations,
        processor,
        padding_side="right",
        chat_template_kwargs={"add_vision_id": True},
    )
    text = processor.tokenizer.decode(ours["input_ids"][1])
    assert "Picture 1: " in text and "Video 1: " in text
    mask = ours["attention_mask"]
    assert mask[0, 0] == 1 and mask[0, -1] == 0  # the shorter row is padded on the right
    left = build_inputs(conversations, processor, chat_template_kwargs={"add_vision_id": True})
    assert torch.equal(left["input_ids"][1], ours["input_ids"][1])


def test_qwen3_video_timestamps(root: Path, clip: Path) -> None:
    processor = load_processor("qwen3-vl", root)
    conversation = [_user(_video(str(clip), nframes=6), _text("?"))]
    inputs = build_inputs(conversation, processor)
    (_, metadata), _ = fetch_video(
        _video(str(clip), nframes=6), 16, return_video_sample_fps=True, return_video_metadata=True
    )
    indices = metadata["frames_indices"]
    fps = metadata["fps"]
    stamps = [(indices[i] / fps + indices[i + 1] / fps) / 2 for i in range(0, 6, 2)]
    t, gh, gw = inputs["video_grid_thw"][0].tolist()
    assert t == 3
    expected = "".join(
        f"<{t:.1f} seconds><|vision_start|>" + "<|video_pad|>" * (gh * gw // 4) + "<|vision_end|>"
        for t in stamps
    )
    wrapped = build_inputs(conversation, processor, qwen3_video_text="wrapped")
    unwrapped = build_inputs(conversation, processor, qwen3_video_text="unwrapped")
    # The template's outer pair stays in the "wrapped" form (transformers 5.10-5.24) and is
    # collapsed into the per-frame blocks in the "unwrapped" form (5.3-5.9, 5.25+, vLLM).
    text_wrapped = processor.tokenizer.decode(wrapped["input_ids"][0])
    text_unwrapped = processor.tokenizer.decode(unwrapped["input_ids"][0])
    assert f"<|vision_start|>{expected}<|vision_end|>" in text_wrapped
    assert f"<|vision_start|>{expected}<|vision_end|>" not in text_unwrapped
    assert expected in text_unwrapped
    assert unwrapped["input_ids"].shape[1] == wrapped["input_ids"].shape[1] - 2
    assert torch.equal(unwrapped["pixel_values_videos"], wrapped["pixel_values_videos"])
    # "transformers" is the old name of "wrapped"; the default follows the processor.
    legacy = build_inputs(conversation, processor, qwen3_video_text="transformers")
    assert torch.equal(legacy["input_ids"], wrapped["input_ids"])
    auto = inputs if qwen3_video_form(processor) == "wrapped" else unwrapped
    assert torch.equal(inputs["input_ids"], auto["input_ids"])


def _pts_times(name: str) -> list[float]:
    """ffprobe's presentation time of every frame of a shared clip (``videos/reference``)."""
    info = json.loads((VIDEOS / "reference" / f"{name}.stream0.all_frames_info.json").read_text())
    frames = info["frames"] if isinstance(info, dict) else info
    return [float(frame["pts_time"]) for frame in frames]


def _written_seconds(inputs: Any, processor: Any) -> list[float]:
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    return [float(t) for t in re.findall(r"<(\d+\.\d) seconds>", text)]


@pytest.mark.parametrize("fps", [2, 4])
def test_qwen3_timestamps_are_presentation_times_on_variable_frame_rate(
    root: Path, fps: int
) -> None:
    """Red-team finding 8: ``index / average fps`` wrote <1.6 seconds> for frames at 1.3 s.

    var_fps_video.mp4 has 30 and 15 fps stretches and a 0.53 s gap; each temporal patch's
    time must be the mean of its two frames' real presentation times (ffprobe), off by the
    one-decimal rounding only. ``video_timestamps="transformers"`` keeps the processor's
    ``index / fps`` text, bit for bit.
    """
    processor = load_processor("qwen3-vl", root)
    times = _pts_times("var_fps_video.mp4")
    element = _video(str(VIDEOS / "var_fps_video.mp4"), fps=fps)
    conversation = [_user(element, _text("?"))]
    (_, metadata), _ = fetch_video(
        dict(element), 16, return_video_sample_fps=True, return_video_metadata=True
    )
    indices = list(metadata["frames_indices"])
    indices += indices[-1:] * (len(indices) % 2)
    real = [(times[a] + times[b]) / 2 for a, b in zip(indices[::2], indices[1::2], strict=True)]

    written = _written_seconds(build_inputs(conversation, processor), processor)
    assert len(written) == len(real)
    assert max(abs(w - r) for w, r in zip(written, real, strict=True)) <= 0.05 + 1e-9

    legacy = build_inputs(conversation, processor, video_timestamps="transformers")
    assert torch.equal(legacy["input_ids"], _reference(conversation, processor)["input_ids"])
    legacy_written = _written_seconds(legacy, processor)
    assert max(abs(w - r) for w, r in zip(legacy_written, real, strict=True)) > 0.25


def test_qwen3_presentation_times_keep_transformers_text_on_constant_rate(
    root: Path, clip: Path
) -> None:
    """On constant-rate video the "pts" text is the processor's, bit for bit."""
    from vlprep._inputs import _load
    from vlprep._video import FRAMES_SECONDS

    processor = load_processor("qwen3-vl", root)
    for source, keys in (
        (VIDEOS / "nasa_13013.mp4", {"fps": 2}),
        (VIDEOS / "av1_video.mkv", {"nframes": 10}),  # Matroska: millisecond timestamps
        (clip, {"fps": 4}),
    ):
        conversation = [_user(_video(str(source), **keys), _text("?"))]
        _, videos = _load(extract_vision_info(conversation), QWEN3_VL, None, None)
        assert FRAMES_SECONDS in videos[0][1]  # the times are known: the "pts" path runs
        pts = build_inputs(conversation, processor)
        legacy = build_inputs(conversation, processor, video_timestamps="transformers")
        assert torch.equal(pts["input_ids"], legacy["input_ids"]), source.name
        assert torch.equal(pts["input_ids"], _reference(conversation, processor)["input_ids"])
    with pytest.raises(InvalidInputError, match="video_timestamps must be"):
        build_inputs(conversation, processor, video_timestamps="index")  # type: ignore[arg-type]


def test_qwen3_bare_video_pad_is_expanded_in_both_forms(root: Path, clip: Path) -> None:
    """A template that writes a bare <|video_pad|> (no pair): both forms expand it in place."""
    processor = load_processor("qwen3-vl", root)
    conversation = [_user(_video(str(clip), nframes=4), _text("?"))]
    template = processor.chat_template.replace(
        "<|vision_start|><|video_pad|><|vision_end|>", "<|video_pad|>"
    )
    kwargs = {"chat_template_kwargs": {"chat_template": template}}
    wrapped = build_inputs(conversation, processor, qwen3_video_text="wrapped", **kwargs)
    unwrapped = build_inputs(conversation, processor, qwen3_video_text="unwrapped", **kwargs)
    assert torch.equal(wrapped["input_ids"], unwrapped["input_ids"])


def test_qwen3_video_text_rejects_unknown_form(root: Path, clip: Path) -> None:
    processor = load_processor("qwen3-vl", root)
    with pytest.raises(InvalidInputError, match="qwen3_video_text must be"):
        build_inputs([_user(_text("hi"))], processor, qwen3_video_text="outer")  # type: ignore[arg-type]


def test_second_per_grid_ts_uses_real_sample_fps(root: Path, clip: Path) -> None:
    processor = load_processor("qwen2.5-vl", root)
    inputs = build_inputs(
        [_user(_video(str(clip), fps=3), _video(str(clip), nframes=8), _text("?"))], processor
    )
    fps_a = fetch_video(_video(str(clip), fps=3), 14, return_video_sample_fps=True)[1]
    fps_b = fetch_video(_video(str(clip), nframes=8), 14, return_video_sample_fps=True)[1]
    expected = torch.tensor([2 / fps_a, 2 / fps_b], dtype=torch.float32)
    assert torch.equal(inputs["second_per_grid_ts"], expected)
    assert "second_per_grid_ts" not in build_inputs(
        [_user(_video(str(clip)))], load_processor("qwen2-vl", root)
    )


def test_preset_from_processor(root: Path) -> None:
    preset = preset_from_processor(load_processor("qwen3-vl", root))
    assert (preset.patch_size, preset.factor) == (16, 32)
    assert preset.image_mean == preset.image_std == (0.5, 0.5, 0.5)
    assert (preset.image_min_pixels, preset.image_max_pixels) == (65_536, 16_777_216)
    assert preset.video_min_pixels == QWEN3_VL.video_min_pixels
    qwen2 = preset_from_processor(load_processor("qwen2.5-vl", root))
    assert qwen2.name == "qwen2.5-vl" and qwen2.patch_size == 14
    with pytest.raises(InvalidInputError, match="not a Qwen-VL processor"):
        preset_from_processor(object())


def test_preset_bounds_and_element_override(root: Path) -> None:
    processor = load_processor("qwen3-vl", root)
    tiny = photo(40, 30)
    inputs = build_inputs([_user(_image(tiny))], processor)
    # the processor's 65,536-pixel minimum applies (qwen-vl-utils' default would give 64x32)
    _, gh, gw = inputs["image_grid_thw"][0].tolist()
    assert gh * 16 * gw * 16 >= 65_536
    small = build_inputs([_user(_image(tiny, max_pixels=4096))], processor)
    h, w = smart_resize(30, 40, factor=32, min_pixels=4096, max_pixels=4096)
    assert small["image_grid_thw"][0].tolist() == [1, h // 16, w // 16]  # the element wins
    fixed = build_inputs([_user(_image(tiny, resized_height=64, resized_width=320))], processor)
    h, w = smart_resize(64, 320, factor=32, min_pixels=65_536, max_pixels=16_777_216)
    assert fixed["image_grid_thw"][0].tolist() == [1, h // 16, w // 16]


def test_placeholder_mismatch_and_limits(root: Path) -> None:
    processor = load_processor("qwen2-vl", root)
    literal = [_user(_image(photo(56, 56)), _text("fake <|image_pad|> here"))]
    with pytest.raises(InvalidInputError, match="2 image and 0 video placeholders"):
        build_inputs(literal, processor)
    with pytest.raises(ResourceLimitError, match="max_length=20"):
        build_inputs([_user(_image(photo(56, 56)))], processor, max_length=20)
    with pytest.raises(InvalidInputError, match="at least one conversation"):
        build_inputs([], processor)
    with pytest.raises(InvalidInputError, match="padding_side"):
        build_inputs([_user(_text("hi"))], processor, padding_side="middle")  # type: ignore[arg-type]
    text_only = build_inputs([_user(_text("hi"))], processor)
    assert "pixel_values" not in text_only and int(text_only["mm_token_type_ids"].sum()) == 0


@pytest.mark.parametrize("family", [pytest.param(f, marks=mixed_media_model_bug(f)) for f in FAMILIES])
def test_tiny_model_forward_and_generate(family: Family, root: Path, clip: Path) -> None:
    processor = load_processor(family, root)
    model = tiny_model(family, processor)
    conversations = _cases(clip)["batch"]
    inputs = build_inputs(conversations, processor)
    with torch.no_grad():
        out = model(**inputs)
        assert out.logits.shape[:2] == inputs["input_ids"].shape
        assert torch.isfinite(out.logits).all()
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape == (2, inputs["input_ids"].shape[1] + 4)
    assert torch.equal(generated[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])


def test_concurrent_loading_keeps_order_and_attributes_errors(root: Path, clip: Path) -> None:
    processor = load_processor("qwen2.5-vl", root, backend="pil")
    conversations = _cases(clip)["mixed"] + _cases(clip)["several images"]
    serial = build_inputs(conversations, processor, workers=1)
    parallel = build_inputs(conversations, processor, workers=3)
    assert sorted(serial.keys()) == sorted(parallel.keys())
    for key in serial:
        assert torch.equal(serial[key], parallel[key]), key
    broken = [
        _user(
            _image(photo(64, 64)),
            _image(str(IMAGES / "missing-file.jpg")),
            _video(str(clip), nframes=4),
        )
    ]
    from vlprep import SourceNotFoundError

    with pytest.raises(SourceNotFoundError) as info:
        build_inputs(broken, processor, workers=3)
    assert "while loading vision item 2 of 3" in "\n".join(info.value.__notes__)
    with pytest.raises(InvalidInputError, match="workers"):
        build_inputs(conversations, processor, workers=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, "bfloat16"])
def test_dtype_writes_pixels_as_the_cast(dtype: Any, root: Path, clip: Path) -> None:
    processor = load_processor("qwen2.5-vl", root, backend="pil")
    conversations = _cases(clip)["mixed"]
    full = build_inputs(conversations, processor)
    low = build_inputs(conversations, processor, dtype=dtype)
    target = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    assert sorted(low.keys()) == sorted(full.keys())
    for key in full:
        if key in ("pixel_values", "pixel_values_videos"):
            assert low[key].dtype == target, key
            assert torch.equal(low[key].view(torch.int16), full[key].to(target).view(torch.int16))
        else:
            assert low[key].dtype == full[key].dtype and torch.equal(low[key], full[key]), key
    with pytest.raises(InvalidInputError, match="pixel dtype"):
        build_inputs(conversations, processor, dtype=torch.float64)
