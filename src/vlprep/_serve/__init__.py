"""``vlprep-serve``: an OpenAI-compatible chat server on the runner, or a preprocessing
gateway in front of one (vLLM, SGLang, another vlprep-serve). Needs the ``serve`` extra.

``create_app(ServeSettings(model=DIR))`` or ``create_app(ServeSettings(upstream=URL,
processor=DIR))`` returns the ASGI app; ``vlprep-serve`` (:mod:`vlprep.cli.serve`) runs it
with uvicorn. See ``docs/serve.md``.
"""

from __future__ import annotations

from typing import Any

from vlprep._errors import BackendUnavailableError
from vlprep._serve._settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "require"]

_PACKAGES = ("fastapi", "uvicorn", "prometheus_client", "httpx")


def require() -> None:
    """Import the server's dependencies, or raise naming the extra.

    Raises:
        BackendUnavailableError: one is missing (``pip install 'vlprep[serve]'``).
    """
    import importlib

    for name in _PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise BackendUnavailableError(
                f"vlprep-serve needs {name}: pip install 'vlprep[serve]' (and 'vlprep[runner]' "
                "for --model)"
            ) from exc


def create_app(settings: ServeSettings, *, runner: Any = None, processor: Any = None) -> Any:
    """The FastAPI app for ``settings`` (see :func:`vlprep._serve._app.create_app`).

    Raises:
        BackendUnavailableError: the ``serve`` extra (or, for a model, ``runner``) is missing.
    """
    require()
    from vlprep._serve._app import create_app as build

    return build(settings, runner=runner, processor=processor)
