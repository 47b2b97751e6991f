"""Keep ``vlprep.inspect`` the function when someone writes ``import vlprep.inspect``.

``vlprep.inspect`` is :func:`vlprep._estimates.inspect`; the command is
``python -m vlprep.cli.inspect`` (or ``vlprep-inspect``), and there is no ``vlprep/inspect.py``.
Without help, ``import vlprep.inspect`` (a user, autodoc) would then raise
``ModuleNotFoundError``, and a real submodule would be worse: after loading a submodule the
import system sets it as the package attribute, so ``vlprep.inspect`` would become the module
and the function would be gone.

For a name already in ``sys.modules`` the import system does neither: it returns the entry and
leaves the package attribute alone. :func:`install` puts an :class:`InspectModule` there: a
real module object (tools that walk ``sys.modules`` see nothing odd) that calls through to the
function and reports its signature, so ``importlib.import_module("vlprep.inspect")(...)``
behaves like ``vlprep.inspect(...)``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from vlprep._estimates import MediaEstimate, inspect

__all__ = ["InspectModule", "install"]


class InspectModule(types.ModuleType):
    """``sys.modules["vlprep.inspect"]``: a module that behaves as the function ``inspect``."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "vlprep.inspect is the function vlprep._estimates.inspect.")
        self.__wrapped__ = inspect  # inspect.signature() follows it

    def __call__(self, *args: Any, **kwargs: Any) -> MediaEstimate:
        return inspect(*args, **kwargs)


def install(package: str) -> None:
    """Register ``<package>.inspect`` in ``sys.modules`` (see the module docstring)."""
    name = f"{package}.inspect"
    if not isinstance(sys.modules.get(name), InspectModule):
        sys.modules[name] = InspectModule(name)
