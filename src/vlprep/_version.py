"""The package version, in a module of its own so that submodules need not import ``vlprep``.

``vlprep/__init__`` imports most of the library (and torch); a submodule that wants only the
version (the HTTP ``User-Agent``, ``--version``) reads it here and stays out of that cycle.
``pyproject.toml`` reads it from here too (``[tool.setuptools.dynamic]``).
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
