"""Every name the README, docs and examples import from vlprep is exported where they import it.

A documented ``from vlprep.x import y`` is a promise: ``y`` must be in ``vlprep.x.__all__``
(so it is public there, not an accident of that module's own imports), and
``vlprep.x`` must be a module users may name. Read with ``ast`` from the fenced Python blocks
of the Markdown files and from the example scripts.
"""

from __future__ import annotations

import ast
import importlib
import re
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```(?:python|py)\n(.*?)^```", re.S | re.M)


def _sources() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, block in enumerate(_FENCE.findall(path.read_text())):
            found.append((f"{path.relative_to(ROOT)} block {n + 1}", block))
    for path in sorted((ROOT / "examples").glob("*.py")):
        found.append((str(path.relative_to(ROOT)), path.read_text()))
    return found


def _imports(code: str) -> list[tuple[str, str | None]]:
    """``(module, name)`` for each vlprep import; ``name`` None for ``import vlprep.x``."""
    try:
        tree = ast.parse(code)
    except SyntaxError:  # a fragment with "..." placeholders: read its import lines alone
        lines = [
            line for line in code.splitlines() if line.startswith(("from vlprep", "import vlprep"))
        ]
        tree = ast.parse("\n".join(lines))
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vlprep":
            out.extend((node.module or "", alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            out.extend((a.name, None) for a in node.names if a.name.split(".")[0] == "vlprep")
    return out


DOCUMENTED = sorted(
    {(module, name) for _, code in _sources() for module, name in _imports(code)}, key=str
)


def test_the_docs_import_something() -> None:
    assert len(DOCUMENTED) > 20  # the scan finds the documented imports at all


def check_exported(module: str, name: str | None) -> None:
    imported = importlib.import_module(module)
    if name is None or _is_submodule(module, name):
        return  # import vlprep.x, or from vlprep import grounding: a documented module
    exported = getattr(imported, "__all__", None)
    assert exported is not None, f"{module} has no __all__ but the docs import {name} from it"
    assert name in exported, f"the docs import {name} from {module}, which does not export it"


@pytest.mark.parametrize(("module", "name"), DOCUMENTED, ids=[f"{m}:{n}" for m, n in DOCUMENTED])
def test_documented_name_is_exported(module: str, name: str | None) -> None:
    check_exported(module, name)


def test_an_unexported_name_fails() -> None:
    # smart_resize is public in vlprep and vlprep._sizing, not in vlprep._image
    assert "smart_resize" not in importlib.import_module("vlprep._image").__all__
    with pytest.raises(AssertionError, match="does not export"):
        check_exported("vlprep._image", "smart_resize")
    assert _imports("from vlprep._image import (\n    smart_resize,\n)\n...") == [
        ("vlprep._image", "smart_resize")
    ]


def _is_submodule(module: str, name: str) -> bool:
    try:
        importlib.import_module(f"{module}.{name}")
    except ImportError:
        return False
    return True


PUBLIC_PATHS = (
    "vlprep",
    "vlprep.runner",
    "vlprep.grounding",
    "vlprep.integrations.ray",
    "vlprep.testing",
    "vlprep.cli.inspect",  # the commands' entry points (the demo runs them in process)
    "vlprep.cli.run",
)


@pytest.mark.parametrize(("module", "name"), DOCUMENTED, ids=[f"{m}:{n}" for m, n in DOCUMENTED])
def test_documented_imports_use_the_public_paths(module: str, name: str | None) -> None:
    # `from vlprep import grounding` names the public package vlprep.grounding
    named = getattr(importlib.import_module(module), name, None) if name is not None else None
    path = f"{module}.{name}" if isinstance(named, types.ModuleType) else module
    assert path in PUBLIC_PATHS, f"the docs import from {path}, which is not one of {PUBLIC_PATHS}"


def test_prose_names_no_old_path() -> None:
    """Outside the migration notes, the docs never teach a path that moved in 0.2."""
    from vlprep._moved import MOVED

    pattern = re.compile(r"\b(" + "|".join(re.escape(old) for old in MOVED) + r")\b(?![._]?\w)")
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if path.name == "migrating.md":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found.extend(f"{path.name}:{n}: {m.group(0)}" for m in pattern.finditer(line))
    assert not found, found
