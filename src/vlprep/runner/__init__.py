"""Run a Qwen-VL checkpoint on conversations (needs the ``runner`` extra: transformers).

``Runner.from_pretrained(dir_or_hub_id)`` loads model and processor; ``generate``,
``stream`` and ``run`` answer conversations whose inputs come from
:func:`vlprep.build_inputs`.
"""

from __future__ import annotations

from vlprep.runner._decode import DecodeResult, Sampling
from vlprep.runner._loading import transformers_module
from vlprep.runner._runner import GenerationResult, Runner

__all__ = ["DecodeResult", "GenerationResult", "Runner", "Sampling", "transformers_module"]
