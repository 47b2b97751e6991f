"""Malformed input is a typed vlprep error, never a bare builtin (red-team finding 5, part)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import photo
from tests.hf_fixtures import load_processor
from vlprep import (
    FetchPolicy,
    InvalidInputError,
    SourceNotFoundError,
    build_inputs,
    inspect,
    process_vision_info,
    smart_nframes,
    smart_resize,
)


def _image(source: object) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image", "image": source}]}]


@pytest.mark.parametrize("source", ["/tmp/a\x00b.jpg", "file:///tmp/a\x00b.jpg"])
def test_nul_in_a_path_is_invalid_input(source: str) -> None:
    with pytest.raises(InvalidInputError, match="NUL byte") as info:
        process_vision_info(_image(source))
    assert "\x00" not in str(info.value)


@pytest.mark.parametrize("batch", [[None], [3], [_image("x.jpg"), "text"], [[{"role": "user"}], None]])
def test_batches_of_non_conversations_are_invalid_input(batch: list[Any]) -> None:
    with pytest.raises(InvalidInputError, match="must be a list of messages"):
        process_vision_info(batch)


@pytest.fixture(scope="module")
def processor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_processor("qwen2-vl", tmp_path_factory.mktemp("proc"))


@pytest.mark.parametrize(
    ("conversation", "match"),
    [
        ([{"role": "user", "content": 5}], "'content' must be a string or a list"),
        ([{"role": "user", "content": {"type": "text", "text": "hi"}}], "'content' must be"),
        ([{"role": "user", "content": [None]}], "part 0: each content part must be a dict"),
        ([{"role": "user", "content": ["hi"]}], "each content part must be a dict"),
        ([{"role": "user", "content": "ok"}, 7], "message 1 must be a dict"),
    ],
)
def test_build_inputs_refuses_what_the_template_cannot_render(
    conversation: list[Any], match: str, processor: Any
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        build_inputs(conversation, processor)


def test_tool_call_turns_with_no_content_still_render(processor: Any) -> None:
    """content=None (an assistant tool-call turn) is left to the template, which renders it."""
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]
    out = build_inputs(conversation, processor)
    text = processor.tokenizer.decode(out["input_ids"][0])
    assert text.endswith("hi<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>assistant\n")


def test_lone_surrogate_in_text_is_invalid_input(processor: Any) -> None:
    conversation = [{"role": "user", "content": [{"type": "text", "text": "hi \udc80 there"}]}]
    with pytest.raises(InvalidInputError, match=r"lone surrogate \(U\+DC80"):
        build_inputs(conversation, processor)



# ---- found by the message fuzz (tests/test_fuzz_messages.py) ----

HUGE = 10**400  # past the float range: math.isfinite raised OverflowError
ENORMOUS = 10**5000  # past 4,300 digits: even repr() raised ValueError


@pytest.mark.parametrize(
    "value", [HUGE, -HUGE, ENORMOUS, [ENORMOUS]], ids=["huge", "-huge", "enormous", "list"]
)
@pytest.mark.parametrize("key", ["min_pixels", "max_pixels", "resized_height"])
def test_integers_past_the_float_range_in_image_keys_are_invalid_input(
    key: str, value: object
) -> None:
    ele = {"type": "image", "image": "x.jpg", key: value, "resized_width": 56}
    with pytest.raises(InvalidInputError, match=f"'{key}' must be a") as info:
        process_vision_info([{"role": "user", "content": [ele]}])
    assert len(str(info.value)) < 200  # the number is named by its size, not printed


@pytest.mark.parametrize(
    "key", ["fps", "nframes", "total_pixels", "video_start", "video_end", "sample_fps"]
)
def test_integers_past_the_float_range_in_video_keys_are_invalid_input(key: str) -> None:
    ele = {"type": "video", "video": [photo(28, 28)] * 2, key: HUGE}
    with pytest.raises(InvalidInputError, match=f"'{key}' must be a finite number"):
        process_vision_info([{"role": "user", "content": [ele]}])


def test_huge_integers_in_the_public_number_checks_are_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="height must be a finite number"):
        smart_resize(HUGE, 100)
    with pytest.raises(InvalidInputError, match="'fps' must be a finite number"):
        smart_nframes({"fps": HUGE}, 300, 30.0)
    with pytest.raises(InvalidInputError, match="max_pixels must be a finite number"):
        inspect(photo(28, 28), max_pixels=ENORMOUS)
    with pytest.raises(InvalidInputError, match=r"FetchPolicy\.connect_timeout must be > 0"):
        FetchPolicy(connect_timeout=HUGE)
    with pytest.raises(InvalidInputError, match=r"FetchPolicy\.max_image_bytes must be a positive"):
        FetchPolicy(max_image_bytes=-ENORMOUS)


@pytest.mark.parametrize("size", [10**200, 1025, 0, -1, 2.5, True, "14"])
@pytest.mark.parametrize(
    "ele",
    [{"image": photo(28, 28)}, {"video": [photo(28, 28)] * 2}],
    ids=["image", "video"],
)
def test_a_patch_size_outside_1_to_1024_is_invalid_input(ele: dict[str, Any], size: object) -> None:
    """10**200 made the default bounds overflow (smart_resize's check for images, an
    OverflowError in video_frame_pixels for videos)."""
    with pytest.raises(InvalidInputError, match=r"image_patch_size must be an int in \[1, 1024\]"):
        process_vision_info([{"role": "user", "content": [ele]}], image_patch_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch", [[[]], ([],), [[{"role": "user", "content": "hi"}], []]])
def test_build_inputs_refuses_a_conversation_without_messages(
    batch: list[Any], processor: Any
) -> None:
    """transformers' apply_chat_template raised IndexError on an empty conversation."""
    with pytest.raises(InvalidInputError, match="has no messages"):
        build_inputs(batch, processor)


@pytest.mark.parametrize("max_length", ["64", 2.5, True, 0, -1])
def test_build_inputs_refuses_a_max_length_that_is_not_a_positive_int(
    max_length: object, processor: Any
) -> None:
    """A string max_length raised TypeError comparing it with the sequence length."""
    conversation = [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidInputError, match="max_length must be an int >= 1"):
        build_inputs(conversation, processor, max_length=max_length)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", ["x", [("add_vision_id", True)], 5])
def test_build_inputs_refuses_chat_template_kwargs_that_are_not_a_mapping(
    kwargs: object, processor: Any
) -> None:
    """``**chat_template_kwargs`` raised TypeError inside the template call."""
    conversation = [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidInputError, match="chat_template_kwargs must be a dict"):
        build_inputs(conversation, processor, chat_template_kwargs=kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("source", ["\ud800x.jpg", "file:///tmp/\ud800x.jpg"])
@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("root", [None, "/tmp"], ids=["no-root", "root"])
def test_lone_surrogate_in_a_path_is_invalid_input(source: str, kind: str, root: str | None) -> None:
    """os.stat / os.path.realpath raised UnicodeEncodeError on a lone surrogate."""
    policy = FetchPolicy(local_root=root)
    with pytest.raises(InvalidInputError, match=r"lone surrogate \(U\+D800\)"):
        process_vision_info([{"role": "user", "content": [{kind: source}]}], policy=policy)


def test_a_surrogate_escaped_file_name_is_still_a_path(tmp_path: Any) -> None:
    """\\udc80 is how Python spells an undecodable byte in a name: not refused."""
    with pytest.raises(SourceNotFoundError):
        process_vision_info([{"role": "user", "content": [{"image": f"{tmp_path}/\udc80.jpg"}]}])


def test_a_grounding_number_past_the_float_range_is_a_parse_error() -> None:
    """Model text with a 400-digit coordinate raised OverflowError (not found by the message
    fuzz: the same math.isfinite check, in the grounding parser)."""
    from vlprep._errors import GroundingParseError
    from vlprep.grounding import parse

    text = '{"bbox_2d": [1, 2, 3, ' + "9" * 400 + '], "label": "a"}'
    with pytest.raises(GroundingParseError, match="bbox_2d must be a list of 4 finite numbers"):
        parse(text, "qwen2.5-vl")
