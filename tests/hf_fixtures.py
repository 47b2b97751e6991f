"""Offline transformers fixtures for the tests: see :mod:`vlprep.testing`.

``FAMILIES`` here is the families with a transformers processor (what ``make_processor``,
``load_processor`` and ``tiny_model`` build): ``vlprep.FAMILIES`` minus the first
generation ``"qwen-vl"``, whose tests live in ``tests/test_qwen_vl.py``.
"""

from vlprep.testing import (
    PROCESSOR_FAMILIES as FAMILIES,
)
from vlprep.testing import (
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
