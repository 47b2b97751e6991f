"""Malformed input is a typed vlprep error, never a bare builtin (red-team finding 5, part)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.hf_fixtures import load_processor
from vlprep import InvalidInputError, build_inputs, process_vision_info


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

