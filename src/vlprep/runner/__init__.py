"""Run a Qwen-VL checkpoint on conversations (needs the ``runner`` extra: transformers).

``Runner.from_pretrained(dir_or_hub_id)`` loads model and processor; ``generate``,
``stream`` and ``run`` answer conversations whose inputs come from
:func:`vlprep.build_inputs`. ``BatchEngine`` serves concurrent requests on one runner,
decoded together, each answer streamed on its own ``GenerationStream``.
"""

from __future__ import annotations

from vlprep._errors import GenerationError, QueueFullError
from vlprep.runner._batching import BatchEngine
from vlprep.runner._decode import DecodeResult, Sampling
from vlprep.runner._loading import transformers_module
from vlprep.runner._runner import GenerationResult, Runner
from vlprep.runner._stream import GenerationStream, StreamResult

__all__ = [
    "BatchEngine",
    "DecodeResult",
    "GenerationError",
    "GenerationResult",
    "GenerationStream",
    "QueueFullError",
    "Runner",
    "Sampling",
    "StreamResult",
    "transformers_module",
]
