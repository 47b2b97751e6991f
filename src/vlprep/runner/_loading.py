"""Checkpoint resolution, device and dtype choice, and model loading (transformers glue)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from vlprep._errors import BackendUnavailableError, InvalidInputError, SourceNotFoundError
from vlprep._presets import FAMILY_BY_MODEL_TYPE

__all__ = ["FAMILY_BY_MODEL_TYPE", "load_checkpoint", "pick_device", "pick_dtype"]

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def transformers_module() -> Any:
    """``import transformers``, or a :class:`BackendUnavailableError` naming the extra."""
    try:
        import transformers
    except ImportError as exc:
        raise BackendUnavailableError(
            "the runner needs transformers: pip install 'vlprep[runner]'"
        ) from exc
    return transformers


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA, then MPS, then CPU; anything else is parsed by ``torch.device``.

    Raises:
        InvalidInputError: an unknown device string, or a device that is not available.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(
            f"unknown device {str(device)[:40]!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was asked for but torch sees no CUDA GPU")
    return chosen


def pick_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``"auto"``: bfloat16 on GPUs that support it (float16 on older CUDA cards and on MPS),
    float32 on CPU. Names like ``"bf16"``/``"bfloat16"`` or a ``torch.dtype`` are accepted.

    Raises:
        InvalidInputError: an unknown name.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise InvalidInputError(
            f"unknown dtype {str(dtype)[:20]!r}; use 'auto', 'float32', 'bfloat16' or 'float16'"
        )
    return _DTYPES[dtype]


def _resolve(model: str | Path) -> str:
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise SourceNotFoundError(
                f"{str(path)[:120]!r} is not a checkpoint directory (no config.json); give the "
                "folder a model was saved to with save_pretrained, or a hub id like "
                "'Qwen/Qwen2-VL-2B-Instruct'"
            )
        return str(path)
    text = str(model)
    if _HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return text
    raise SourceNotFoundError(
        f"no checkpoint at {text[:120]!r}: the path does not exist and is not a hub id "
        "('organisation/name')"
    )


_FIRST_GENERATION = (
    "is a first-generation Qwen-VL checkpoint (model_type 'qwen'): its model exists only as "
    "remote code (trust_remote_code=True), which the runner does not execute. Build its "
    "inputs with vlprep.build_inputs(messages, tokenizer, preset=vlprep.QWEN_VL) and run them "
    "on vLLM, or on the remote-code model with build_inputs(..., image_dir=...) so it reads "
    "local files vlprep checked (docs/qwen-vl.md)"
)


def _local_model_type(location: str) -> object:
    path = Path(location) / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # AutoConfig reports it
    return config.get("model_type") if isinstance(config, dict) else None


def load_checkpoint(
    model: str | Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    attn_implementation: str | None = None,
) -> tuple[Any, Any, str]:
    """Load ``(model, processor, family)`` from a local directory or a hub id.

    Raises:
        BackendUnavailableError: transformers is not installed.
        SourceNotFoundError: no checkpoint there (or the hub could not be reached).
        InvalidInputError: the checkpoint is not a Qwen-VL model.
    """
    transformers = transformers_module()
    location = _resolve(model)
    if FAMILY_BY_MODEL_TYPE.get(str(_local_model_type(location))) == "qwen-vl":
        raise InvalidInputError(f"{location[:120]!r} {_FIRST_GENERATION}")
    try:
        config = transformers.AutoConfig.from_pretrained(location)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):  # a hub id of a remote-code model
            raise InvalidInputError(
                f"{location[:120]!r} needs remote code (trust_remote_code=True), which the "
                "runner does not execute; if it is Qwen-VL (the first generation), "
                "see docs/qwen-vl.md"
            ) from exc
        raise
    except OSError as exc:
        raise SourceNotFoundError(
            f"could not load a checkpoint config from {location[:120]!r} ({type(exc).__name__}); "
            "check the path, or the hub id and your network / HF_HUB_OFFLINE setting"
        ) from exc
    family = FAMILY_BY_MODEL_TYPE.get(getattr(config, "model_type", ""))
    if family == "qwen-vl":
        raise InvalidInputError(f"{location[:120]!r} {_FIRST_GENERATION}")
    if family is None:
        raise InvalidInputError(
            f"{location[:120]!r} is a {getattr(config, 'model_type', 'unknown')!r} model, not "
            f"Qwen-VL; the runner supports model types {sorted(FAMILY_BY_MODEL_TYPE)}"
        )
    try:
        processor = transformers.AutoProcessor.from_pretrained(location)
    except ImportError as exc:
        # transformers 5.x builds every Qwen-VL processor with its torchvision video
        # processor, even though vlprep never runs it.
        raise BackendUnavailableError(
            "transformers could not build the checkpoint's processor "
            f"({str(exc).strip().splitlines()[0][:120]}); its Qwen-VL processors need "
            "torchvision: pip install the torchvision release that matches your torch"
        ) from exc
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    network = transformers.AutoModelForImageTextToText.from_pretrained(location, **kwargs)
    network = network.to(device).eval()
    logger.info("loaded %s (%s) on %s as %s", location, family, device, dtype)
    return network, processor, family
