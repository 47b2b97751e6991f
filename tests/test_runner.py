"""The runner on tiny random-weight checkpoints of each family, saved and reloaded offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import vlprep
from tests.conftest import REPO, media_dir, photo
from tests.hf_fixtures import FAMILIES, Family, save_checkpoint
from tests.upstream import CACHE_KEYWORD, mixed_media_model_bug
from tests.videos import write_clip
from vlprep import (
    BackendUnavailableError,
    ImageOptions,
    InvalidInputError,
    SourceNotFoundError,
    build_inputs,
)
from vlprep.cli.run import main as run_main
from vlprep.runner import Runner, Sampling

pytestmark = pytest.mark.filterwarnings("ignore:.*cap_pixels_per_frame.*")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {f: save_checkpoint(f, root / f.replace(".", "_")) for f in FAMILIES}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=30, fps=15)


def _conversation(clip: Path | None = None, text: str = "What is this?") -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "image", "image": photo(160, 100)}]
    if clip is not None:
        content.append({"type": "video", "video": str(clip), "nframes": 4})
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=mixed_media_model_bug(f)) for f in FAMILIES]
)
def test_load_generate_and_match_the_model(
    family: Family, checkpoints: dict[str, Path], clip: Path
) -> None:
    runner = Runner.from_pretrained(checkpoints[family], device="cpu")
    assert runner.family == family and runner.dtype == torch.float32
    assert runner.decode_mode == "eager" and runner.device.type == "cpu"
    assert runner.preset.patch_size == (16 if family == "qwen3-vl" else 14)
    conversation = _conversation(clip)
    # the runner's prompt logits are the model's own on build_inputs output
    direct = build_inputs(conversation, runner.processor)
    with torch.no_grad():
        expected = runner.model(**direct).logits
    assert torch.equal(runner.logits(conversation), expected)
    # greedy tokens equal transformers' generate (same model, float32)
    batch = [conversation, _conversation(text="A longer second question, left-padded.")]
    result = runner.run(batch, Sampling(max_new_tokens=6))
    inputs = build_inputs(batch, runner.processor)
    with torch.no_grad():
        reference = runner.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    reference = reference[:, inputs["input_ids"].shape[1] :].tolist()
    for ours, ref in zip(result.token_ids, reference, strict=True):
        assert ours == ref[: len(ours)]
    assert len(result.texts) == 2 and all(isinstance(t, str) for t in result.texts)
    assert result.prompt_tokens == inputs["attention_mask"].sum(-1).tolist()
    assert result.vision_tokens[1] == int((inputs["mm_token_type_ids"][1] > 0).sum())
    assert result.generated_tokens == [len(ids) for ids in result.token_ids]
    assert set(result.timings) == {"load", "preprocess", "prefill", "decode", "decode_tokens_per_s"}
    single = runner.generate(conversation, max_new_tokens=6)
    assert isinstance(single, str) and single == result.texts[0]
    assert runner.generate(batch, max_new_tokens=6) == result.texts


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_static_cache_loop_gives_the_same_tokens(
    family: Family, checkpoints: dict[str, Path], clip: Path
) -> None:
    eager = Runner.from_pretrained(checkpoints[family], device="cpu", decode_mode="eager")
    static = Runner(
        eager.model,
        eager.processor,
        family=eager.family,
        preset=eager.preset,
        device=eager.device,
        dtype=eager.dtype,
        decode_mode="static",
    )
    batch = [_conversation(clip), _conversation(text="Another one, a little longer.")]
    a = eager.run(batch, Sampling(max_new_tokens=8))
    b = static.run(batch, Sampling(max_new_tokens=8))
    assert b.decode_mode == "static"
    assert a.token_ids == b.token_ids


def test_sampling_is_seeded_and_streaming_matches(checkpoints: dict[str, Path]) -> None:
    runner = Runner.from_pretrained(checkpoints["qwen2-vl"], device="cpu")
    conversation = _conversation()
    kwargs: dict[str, Any] = {"max_new_tokens": 12, "do_sample": True, "temperature": 1.5}
    first = runner.run([conversation], Sampling(seed=7, **kwargs)).token_ids
    again = runner.run([conversation], Sampling(seed=7, **kwargs)).token_ids
    assert first == again
    nucleus = runner.run([conversation], Sampling(seed=7, top_p=1e-9, **kwargs)).token_ids
    greedy = runner.run([conversation], Sampling(max_new_tokens=12)).token_ids
    assert nucleus == greedy  # top_p -> 0 keeps only the most likely token
    pieces = list(runner.stream(conversation, max_new_tokens=12))
    assert "".join(pieces) == runner.generate(conversation, max_new_tokens=12)
    with pytest.raises(InvalidInputError, match="one conversation"):
        list(runner.stream([conversation, conversation]))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="top_p"):
        Sampling(top_p=0)
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        Sampling(max_new_tokens=0)


def test_bounds_override_and_errors(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    small = Runner.from_pretrained(checkpoints["qwen2.5-vl"], device="cpu", max_pixels=28 * 28 * 4)
    big = photo(600, 400)
    result = small.run(
        [[{"role": "user", "content": [{"type": "image", "image": big}]}]],
        Sampling(max_new_tokens=1),
    )
    ((h, w),) = result.image_sizes
    assert h * w <= 28 * 28 * 4
    with pytest.raises(SourceNotFoundError, match="no checkpoint"):
        Runner.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceNotFoundError, match=r"config\.json"):
        Runner.from_pretrained(tmp_path / "empty")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    text_only = tmp_path / "text-only"
    Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    ).save_pretrained(str(text_only))
    with pytest.raises(InvalidInputError, match="not Qwen-VL"):
        Runner.from_pretrained(text_only)
    with pytest.raises(InvalidInputError, match="device"):
        Runner.from_pretrained(checkpoints["qwen2-vl"], device="tpu:9")
    with pytest.raises(InvalidInputError, match="dtype"):
        Runner.from_pretrained(checkpoints["qwen2-vl"], dtype="int3")


def test_image_options_reach_build_inputs(checkpoints: dict[str, Path]) -> None:
    path = str(media_dir() / "images" / "flower2.jpg")
    conversation = [{"role": "user", "content": [{"type": "image", "image": path}]}]
    exact = Runner.from_pretrained(checkpoints["qwen2.5-vl"], device="cpu", max_pixels=64 * 28 * 28)
    fast = Runner.from_pretrained(
        checkpoints["qwen2.5-vl"],
        device="cpu",
        max_pixels=64 * 28 * 28,
        image_options=ImageOptions(decode="fast"),
    )
    a, b = exact.prepare(conversation), fast.prepare(conversation)
    assert torch.equal(a["image_grid_thw"], b["image_grid_thw"])
    assert torch.equal(a["input_ids"], b["input_ids"])  # same token counts
    assert not torch.equal(a["pixel_values"], b["pixel_values"])  # the fast mode did run
    assert float((a["pixel_values"] - b["pixel_values"]).abs().mean()) < 0.05


def test_missing_transformers_names_the_extra(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BackendUnavailableError, match=r"vlprep\[runner\]"):
        Runner.from_pretrained(checkpoints["qwen2-vl"], device="cpu")


def test_cli_json_and_stream(checkpoints: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    image = str(media_dir() / "images" / "hopper.jpg")
    code = run_main(
        [
            "--model",
            str(checkpoints["qwen3-vl"]),
            "--image",
            image,
            "--max-new-tokens",
            "5",
            "--device",
            "cpu",
            "--json",
            "Describe it.",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["family"] == "qwen3-vl" and report["device"] == "cpu"
    assert 1 <= report["generated_tokens"] <= 5 and report["vision_tokens"] > 0
    assert report["prompt_tokens"] > report["vision_tokens"]
    assert set(report["timings"]) == {
        "load",
        "preprocess",
        "prefill",
        "decode",
        "decode_tokens_per_s",
    }
    assert len(report["image_sizes"]) == 1 and isinstance(report["answer"], str)
    messages = tmp_path / "chat.json"
    messages.write_text(
        json.dumps(
            [
                {
                    "role": "user",
                    "content": [{"type": "image", "image": image}, {"type": "text", "text": "hi"}],
                }
            ]
        )
    )
    assert (
        run_main(
            [
                "--model",
                str(checkpoints["qwen3-vl"]),
                "--messages",
                str(messages),
                "--stream",
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    streamed = capsys.readouterr().out
    assert streamed.endswith("\n")


def test_cli_exit_codes(checkpoints: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    model = str(checkpoints["qwen2-vl"])
    assert run_main(["--model", model]) == 2  # no prompt
    assert "usage" in capsys.readouterr().err
    assert run_main(["--model", model, "--messages", str(tmp_path / "nope.json")]) == 2
    assert run_main(["--bogus"]) == 2
    assert run_main(["--model", str(tmp_path / "missing"), "hi"]) == 1
    err = capsys.readouterr().err
    assert "SourceNotFoundError" in err
    assert run_main(["--model", model, "--image", str(tmp_path / "no.jpg"), "hi"]) == 1
    # as an installed console script, in a fresh process
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlprep.cli.run",
            "--model",
            model,
            "--max-new-tokens",
            "3",
            "--device",
            "cpu",
            "--json",
            "Hello",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert json.loads(proc.stdout)["family"] == "qwen2-vl"


def test_cli_boxes(checkpoints: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    from PIL import Image

    from vlprep.cli.run import _draw_boxes

    image = tmp_path / "rotated.jpg"  # stored landscape 200x120, EXIF says rotate to portrait
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(200, 120).save(image, "JPEG", exif=exif, quality=95)
    out = tmp_path / "boxes.png"
    code = run_main(
        [
            "--model",
            str(checkpoints["qwen2.5-vl"]),
            "--image",
            str(image),
            "--device",
            "cpu",
            "--max-new-tokens",
            "4",
            "--boxes",
            str(out),
            "--json",
            "Find the circle.",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["boxes_file"] == str(out) and report["boxes_drawn"] >= 0
    with Image.open(out) as picture:
        assert picture.size == (120, 200)  # drawn on the upright picture
    runner = Runner.from_pretrained(checkpoints["qwen2.5-vl"], device="cpu")
    conversation = [{"role": "user", "content": [{"type": "image", "image": str(image)}]}]
    ((h, w),) = runner.run(conversation, Sampling(max_new_tokens=1)).image_sizes
    assert (h, w) == (196, 112)  # resized input, upright
    # a Qwen2.5-VL answer in resized-input pixels: the left half lands on x = 0..60 of 120
    answer = f'```json\n[{{"bbox_2d": [0, 0, {w // 2}, {h}], "label": "left"}}]\n```'
    assert _draw_boxes(runner, conversation, answer, tmp_path / "one.png") == 1
    with Image.open(tmp_path / "one.png") as drawn, Image.open(out) as plain:
        a, b = drawn.convert("RGB"), plain.convert("RGB")
        assert a.getpixel((1, 100)) != b.getpixel((1, 100))  # the box's left edge
        assert a.getpixel((59, 100)) != b.getpixel((59, 100))  # its right edge, x = 60
        assert a.getpixel((90, 100)) == b.getpixel((90, 100))  # outside the box: untouched


def test_processor_without_torchvision_is_a_typed_error(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    def no_torchvision(*args: Any, **kwargs: Any) -> Any:
        raise ImportError("\nQwen2VLVideoProcessor requires the Torchvision library")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", no_torchvision)
    with pytest.raises(BackendUnavailableError, match="need torchvision"):
        Runner.from_pretrained(checkpoints["qwen2-vl"], device="cpu")


def test_cache_keyword_follows_the_models_signature(checkpoints: dict[str, Path]) -> None:
    """transformers 5.24 renamed past_key_values to cache; older models swallow cache=."""
    from vlprep.runner._decode import cache_keyword

    class Old:
        def forward(self, input_ids: Any = None, past_key_values: Any = None, **kw: Any) -> None:
            pass

    class New:
        def forward(self, input_ids: Any = None, cache: Any = None, **kw: Any) -> None:
            pass

    assert cache_keyword(Old()) == "past_key_values"
    assert cache_keyword(New()) == "cache"
    model = Runner.from_pretrained(checkpoints["qwen2-vl"], device="cpu").model
    assert cache_keyword(model) == CACHE_KEYWORD


def test_runner_asks_build_inputs_for_its_dtype(
    checkpoints: dict[str, Path], clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vlprep.runner._runner as runner_module

    runner = Runner.from_pretrained(checkpoints["qwen2.5-vl"], device="cpu", dtype="bfloat16")
    assert runner.dtype == torch.bfloat16
    asked: list[Any] = []
    real = runner_module.build_inputs

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("dtype"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "build_inputs", spy)
    inputs = runner.prepare(_conversation(clip))
    assert asked == [torch.bfloat16]
    assert inputs["pixel_values"].dtype == torch.bfloat16
    assert inputs["pixel_values_videos"].dtype == torch.bfloat16
    expected = build_inputs(_conversation(clip), runner.processor)["pixel_values"]
    assert torch.equal(inputs["pixel_values"], expected.to(torch.bfloat16))
    assert isinstance(runner.generate(_conversation(clip), max_new_tokens=2), str)


def test_max_total_tokens_fits_prompt_and_answer(checkpoints: dict[str, Path], capsys: Any) -> None:
    image = str(media_dir() / "images" / "hopper.jpg")
    runner = Runner.from_pretrained(checkpoints["qwen2.5-vl"], device="cpu")
    question = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": image},
                {"type": "text", "text": "Describe it."},
            ],
        }
    ]
    (free,) = vlprep.fit(question, 10**6, processor=runner.processor)
    assert free.text_tokens is not None
    prompt = free.text_tokens + free.items[0].before_tokens // 2
    base = ["--model", str(checkpoints["qwen2.5-vl"]), "--image", image]
    base += ["--max-new-tokens", "4", "--device", "cpu", "--json", "Describe it."]
    assert run_main([*base, "--max-total-tokens", str(prompt + 4)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prompt_tokens"] <= prompt < free.total_before
    fitted = Runner.from_pretrained(
        checkpoints["qwen2.5-vl"], device="cpu", max_total_tokens=prompt + 4
    )
    assert fitted.prepare(question, reserve=4)["input_ids"].shape[1] <= prompt
    assert fitted.run([question], Sampling(max_new_tokens=4)).prompt_tokens[0] <= prompt
    with pytest.raises(InvalidInputError, match="no room"):
        fitted.prepare(question, reserve=prompt + 4)
