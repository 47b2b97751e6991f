"""Offline transformers fixtures for the tests: see :mod:`vlprep.testing`."""

from vlprep.testing import (
    FAMILIES,
    QWEN2_VL_TEMPLATE,
    QWEN3_VL_TEMPLATE,
    SPECIALS,
    Family,
    load_processor,
    make_processor,
    make_tokenizer,
    save_checkpoint,
    save_processor,
    tiny_model,
)

__all__ = [
    "FAMILIES",
    "QWEN2_VL_TEMPLATE",
    "QWEN3_VL_TEMPLATE",
    "SPECIALS",
    "Family",
    "load_processor",
    "make_processor",
    "make_tokenizer",
    "save_checkpoint",
    "save_processor",
    "tiny_model",
]
