"""The text side of a model input: the chat template's output and Qwen3-VL's video text.

Shared by :func:`vlprep.build_inputs` (which tokenises what it renders) and the token-budget
solver :func:`vlprep.fit` (which counts it without loading any media), so both see the same
text: the same template call, the same refusals, the same Qwen3-VL per-frame blocks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from vlprep._errors import InvalidInputError
from vlprep._processor_forms import Qwen3VideoForm, qwen3_video_form

__all__ = [
    "Conversation",
    "Qwen3VideoText",
    "VideoTimestamps",
    "as_conversations",
    "check_messages",
    "check_text_options",
    "is_vision_element",
    "qwen3_form",
    "render",
    "vision_parts",
]

Qwen3VideoText = Literal["auto", "wrapped", "unwrapped", "transformers"]
"""How Qwen3-VL video placeholders are written.

Every form writes each temporal patch as ``<t seconds><|vision_start|>pads<|vision_end|>``;
they differ in what happens to the chat template's own
``<|vision_start|><|video_pad|><|vision_end|>`` around the whole video.

``"auto"`` (default): whatever the processor passed in does, found by probing it once per
processor class (:func:`vlprep._processor_forms.qwen3_video_form`), so ``build_inputs``
equals that processor on every transformers release.
``"unwrapped"``: the per-frame blocks replace the whole wrapper (a bare ``<|video_pad|>``
is replaced where it stands): transformers 5.3-5.9 and 5.25 onwards, 4.57, and vLLM.
``"wrapped"``: only the pad is replaced, the template's pair stays around the blocks (two
tokens more per video): transformers 5.10-5.24.
``"transformers"``: the old name of ``"wrapped"`` (the 5.10-5.24 processor's form, vlprep's
default before ``"auto"``); kept so existing calls keep their output.
"""

VideoTimestamps = Literal["pts", "transformers"]
"""Where the seconds in Qwen3-VL's ``<t seconds>`` text come from.

``"pts"`` (default): the sampled frames' presentation times, where the backend reports them
(PyAV and decord from the container's index, torchcodec from the frames it decoded). On a
constant-rate stream they equal ``index / fps`` to within
:data:`vlprep._expansion.PTS_TOLERANCE` and ``index / fps`` is written, so the text is
transformers' bit for bit; on a variable-frame-rate file it is the frames' real time, where
``index / fps`` can be a quarter of a second or more off. Frame lists have no times:
``index / fps`` as transformers.
``"transformers"``: always ``index / fps`` (the mean of each temporal patch's first and
last), what ``Qwen3VLProcessor`` computes from the same metadata: equal to transformers on
every file, variable-rate ones included.
"""


Conversation = Sequence[Mapping[str, Any]]


def as_conversations(conversations: Conversation | Sequence[Conversation]) -> list[Conversation]:
    """One conversation or a batch -> a list of conversations (an empty input -> ``[]``).

    Raises:
        InvalidInputError: not a list of messages or a list of such lists.
    """
    if isinstance(conversations, (str, bytes, Mapping)) or not isinstance(conversations, Sequence):
        raise InvalidInputError(
            "conversations must be a list of messages or a list of such lists, "
            f"got {type(conversations).__name__}"
        )
    if not conversations:
        return []
    if isinstance(conversations[0], Mapping):
        return [conversations]  # type: ignore[list-item]
    for index, conversation in enumerate(conversations):
        if isinstance(conversation, (str, bytes, Mapping)) or not isinstance(
            conversation, Sequence
        ):
            raise InvalidInputError(
                f"conversation {index} of the batch must be a list of messages, "
                f"got {type(conversation).__name__}"
            )
    return list(conversations)  # type: ignore[arg-type]


def check_messages(conversations: Sequence[Conversation]) -> None:
    """What the chat template needs: at least one message each, dict messages, content a
    string, a list of dicts or None.

    Raises:
        InvalidInputError: naming the conversation and message that is not.
    """
    for c, conversation in enumerate(conversations):
        if not conversation:  # transformers' template call indexes message 0
            raise InvalidInputError(
                f"conversation {c} has no messages; give at least one "
                "{'role': ..., 'content': ...} dict"
            )
        for m, message in enumerate(conversation):
            where = f"conversation {c}, message {m}"
            if not isinstance(message, Mapping):
                raise InvalidInputError(
                    f"{where} must be a dict with 'role' and 'content', got "
                    f"{type(message).__name__}"
                )
            content = message.get("content")
            if content is None or isinstance(content, str):  # None: tool-call turns
                continue
            if not isinstance(content, list):
                raise InvalidInputError(
                    f"{where}: 'content' must be a string or a list of parts, got "
                    f"{type(content).__name__}"
                )
            for p, part in enumerate(content):
                if not isinstance(part, Mapping):
                    raise InvalidInputError(
                        f"{where}, part {p}: each content part must be a dict "
                        "({'type': 'text', 'text': ...}, {'type': 'image', 'image': ...}), got "
                        f"{type(part).__name__}"
                    )


def check_text_options(qwen3_video_text: str, timestamps: str, processor: Any) -> None:
    """Refuse an unknown ``qwen3_video_text`` or ``video_timestamps`` before any loading.

    Raises:
        InvalidInputError: naming the argument and the valid values.
    """
    if qwen3_video_text not in ("auto", "wrapped", "unwrapped", "transformers"):
        qwen3_form(qwen3_video_text, processor)  # raises the typed error
    if timestamps not in ("pts", "transformers"):
        raise InvalidInputError(
            "video_timestamps must be 'pts' (the frames' presentation times) or "
            f"'transformers' (index / fps, as the processor), got {str(timestamps)[:32]!r}"
        )


def qwen3_form(mode: str, processor: Any) -> Qwen3VideoForm:
    """The Qwen3-VL video text form that ``mode`` (:data:`Qwen3VideoText`) stands for.

    Raises:
        InvalidInputError: an unknown mode.
    """
    if mode == "auto":
        return qwen3_video_form(processor)
    if mode in ("wrapped", "transformers"):
        return "wrapped"
    if mode == "unwrapped":
        return "unwrapped"
    raise InvalidInputError(
        "qwen3_video_text must be 'auto', 'wrapped', 'unwrapped' or 'transformers' "
        f"(= 'wrapped'), got {str(mode)[:32]!r}"
    )


def render(
    conversations: Sequence[Conversation],
    processor: Any,
    add_generation_prompt: bool,
    template_kwargs: Mapping[str, Any],
) -> list[str]:
    """Each conversation through the processor's chat template (``tokenize=False``).

    Raises:
        InvalidInputError: the template returned something other than a string, or text
            that is not valid Unicode (a lone surrogate).
    """
    call = getattr(processor, "apply_chat_template", None)
    if call is None:
        call = processor.tokenizer.apply_chat_template
    texts: list[str] = []
    for conversation in conversations:
        text = call(
            [dict(message) for message in conversation],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **template_kwargs,
        )
        if isinstance(text, list) and len(text) == 1:
            text = text[0]
        if not isinstance(text, str):
            raise InvalidInputError(
                f"the chat template rendered {type(text).__name__}, expected a string"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # the tokenizer would raise a bare TypeError
            raise InvalidInputError(
                f"the text of conversation {len(texts)} holds a lone surrogate "
                f"(U+{ord(text[exc.start]):04X} at character {exc.start}), which is not "
                "valid Unicode text; decode the input with errors='replace' or fix it"
            ) from None
        texts.append(text)
    return texts


_VISION_KEYS = ("image", "image_url", "video", "video_url")


def is_vision_element(ele: Mapping[str, Any]) -> bool:
    """Whether a content part is one of the elements :func:`vlprep.extract_vision_info`
    returns: it has an ``image``, ``image_url``, ``video`` or ``video_url`` key, or such a
    ``type``."""
    return any(k in ele for k in _VISION_KEYS) or ele.get("type", "text") in _VISION_KEYS


def vision_parts(conversation: Conversation) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(message index, element)`` of each vision element of one conversation, in order.

    Messages whose ``content`` is not a list, and content parts that are not dicts, are
    skipped (the one walk :func:`vlprep.extract_vision_info` and :func:`vlprep.fit` share).

    Raises:
        InvalidInputError: a message that is not a dict.
    """
    for m, message in enumerate(conversation):
        if not isinstance(message, Mapping):
            raise InvalidInputError(
                "each message must be a dict with 'role' and 'content', "
                f"got {type(message).__name__}"
            )
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for ele in content:
            if isinstance(ele, Mapping) and is_vision_element(ele):
                yield m, ele
