"""Offline Qwen-VL processors and tiny random-weight checkpoints, for tests and demos.

Nothing here touches a model hub. The tokenizer has the 256 byte-level symbols and the Qwen
special tokens (the same token strings as the real tokenizers, different ids), no merges, so
text costs one token per byte. The chat templates reproduce the Qwen2-VL/Qwen2.5-VL and
Qwen3-VL templates' behaviour for plain chats (no tools). The first generation (Qwen-VL) has
no transformers processor: :func:`make_qwen_vl_tokenizer` is a stand-in for its remote-code
tokenizer, and there is no tiny model of it. Models are random-weight
(about 0.1 M parameters): their answers are meaningless, their shapes and code paths real.
Needs the ``runner`` extra (transformers).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

from vlprep._errors import InvalidInputError
from vlprep._presets import FAMILIES, PROCESSOR_FAMILIES, Family

__all__ = [
    "FAMILIES",
    "PROCESSOR_FAMILIES",
    "QWEN2_VL_TEMPLATE",
    "QWEN3_VL_TEMPLATE",
    "SPECIALS",
    "Family",
    "load_processor",
    "make_processor",
    "make_qwen_vl_tokenizer",
    "make_tokenizer",
    "save_checkpoint",
    "save_processor",
    "tiny_model",
    "vision_token_ids",
]


SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The Qwen2-VL / Qwen2.5-VL chat template's behaviour (reference §3.2): a default system

# One content item -> its vision markup (optional "Picture n: " / "Video n: " ids) or its
# text; the same in both families' templates.
_CONTENT_ITEM = (
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
)

# prompt, vision markup per content item, optional "Picture n: " ids, generation prompt.
QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    + _CONTENT_ITEM
    + "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3-VL's template for plain chats: same markup, no default system prompt.
QWEN3_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    + _CONTENT_ITEM
    + "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _transformers() -> Any:
    from vlprep.runner import transformers_module

    return transformers_module()


def byte_level_alphabet() -> list[str]:
    """The 256 printable symbols a GPT-2 style byte-level tokenizer maps bytes to."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols = [chr(b) for b in printable]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def make_tokenizer() -> Any:
    tokenizers: Any = importlib.import_module("transformers.models.qwen2.tokenization_qwen2")

    vocab = {symbol: i for i, symbol in enumerate(sorted(byte_level_alphabet()))}
    for token in SPECIALS:
        vocab[token] = len(vocab)
    return tokenizers.Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        eos_token="<|im_end|>",  # noqa: S106 - a token, not a password
        pad_token="<|endoftext|>",  # noqa: S106
        extra_special_tokens=SPECIALS,
    )


def _with_processor(family: Family) -> None:
    if family not in PROCESSOR_FAMILIES:
        raise InvalidInputError(
            f"family {family!r} has no transformers processor nor model class (its checkpoints "
            f"are remote code); offline processors and tiny models exist for {PROCESSOR_FAMILIES}"
        )


def make_qwen_vl_tokenizer(picture: str = "Picture {n}: ") -> Any:
    """An offline stand-in for Qwen-VL's remote-code ``QWenTokenizer``: the same special
    tokens at the same ids (``<img>`` 151857, ``</img>`` 151858, ``<imgpad>`` 151859), the
    same interface and ``<img>`` span rule, text one token per byte. ``picture`` is the
    ``from_list_format`` image prefix (``"Picture {n}:"`` imitates the copies without the
    space). See :mod:`vlprep._testing_qwen_vl`."""
    from vlprep._testing_qwen_vl import make_qwen_vl_tokenizer as make

    return make(picture)


def make_processor(family: Family) -> Any:
    """An in-memory transformers processor of ``family`` with the offline tokenizer; for
    ``"qwen-vl"`` (no transformers processor) the object ``build_inputs`` takes for it,
    :func:`make_qwen_vl_tokenizer`'s stand-in tokenizer."""
    if family == "qwen-vl":
        return make_qwen_vl_tokenizer()
    _with_processor(family)
    tf = _transformers()

    tokenizer = make_tokenizer()
    if family == "qwen3-vl":
        half = [0.5, 0.5, 0.5]
        image = tf.Qwen2VLImageProcessor(
            patch_size=16,
            image_mean=half,
            image_std=half,
            size={"shortest_edge": 65_536, "longest_edge": 16_777_216},
        )
        video = tf.Qwen3VLVideoProcessor(patch_size=16, image_mean=half, image_std=half)
        return tf.Qwen3VLProcessor(
            image_processor=image,
            tokenizer=tokenizer,
            video_processor=video,
            chat_template=QWEN3_VL_TEMPLATE,
        )
    image = tf.Qwen2VLImageProcessor(size={"shortest_edge": 3136, "longest_edge": 12_845_056})
    cls = tf.Qwen2VLProcessor if family == "qwen2-vl" else tf.Qwen2_5_VLProcessor
    return cls(
        image_processor=image,
        tokenizer=tokenizer,
        video_processor=tf.Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_TEMPLATE,
    )


def save_processor(family: Family, directory: Path) -> Path:
    """Write an offline processor for ``family`` into ``directory`` and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    make_processor(family).save_pretrained(str(directory))
    return directory


@functools.cache
def _saved_dir(family: Family, root: str) -> Path:
    return save_processor(family, Path(root) / family.replace(".", "_"))


def load_processor(family: Family, root: Path, backend: str | None = None) -> Any:
    """``AutoProcessor.from_pretrained`` on a saved offline processor.

    ``backend="pil"`` selects transformers' PIL image processor; ``None`` its default
    (torchvision when installed).
    """
    tf = _transformers()

    directory = str(_saved_dir(family, str(root)))
    processor = tf.AutoProcessor.from_pretrained(directory, local_files_only=True)
    if backend is not None:
        # ``backend`` on AutoProcessor also applies to the video processor, which has no
        # PIL implementation; swap in the image processor alone.
        processor.image_processor = tf.AutoImageProcessor.from_pretrained(
            directory, local_files_only=True, backend=backend
        )
    return processor


def vision_token_ids(tokenizer: Any) -> dict[str, int]:
    """The model-config keys naming the vision token ids of ``tokenizer`` (all families)."""
    names = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }
    return {key: int(tokenizer.convert_tokens_to_ids(token)) for key, token in names.items()}


def tiny_model(family: Family, processor: Any) -> Any:
    """A random-weight model of ``family`` (about 0.1 M parameters) matching the tokenizer."""
    _with_processor(family)
    import torch

    tf = _transformers()

    tok = processor.tokenizer
    ids = vision_token_ids(tok)
    special = {
        "bos_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tok.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
    }
    text: dict[str, Any] = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        **special,
    }
    torch.manual_seed(0)
    if family == "qwen3-vl":
        text["head_dim"] = 8
        text["rope_parameters"] = {
            "rope_type": "default",
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
            "rope_theta": 5_000_000.0,
        }
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 4,
            "out_hidden_size": 32,
            "patch_size": 16,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        }
        config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
        return tf.Qwen3VLForConditionalGeneration(config).eval()
    text["rope_parameters"] = {
        "rope_type": "default",
        "mrope_section": [2, 1, 1],
        "rope_theta": 1e4,
    }
    if family == "qwen2-vl":
        vision = {
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
        config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        return tf.Qwen2VLForConditionalGeneration(config).eval()
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 4,
        "out_hidden_size": 32,
        "patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [1],
        "tokens_per_second": 2,
    }
    config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    return tf.Qwen2_5_VLForConditionalGeneration(config).eval()


def save_checkpoint(family: Family, directory: Path) -> Path:
    """A loadable tiny checkpoint: random-weight model + offline processor in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    processor = make_processor(family)
    processor.save_pretrained(str(directory))
    model = tiny_model(family, processor)
    model.generation_config.eos_token_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.save_pretrained(str(directory))
    return directory
