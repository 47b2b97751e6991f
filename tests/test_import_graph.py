"""The import graph of ``src/vlprep``, read from the source with ``ast`` (nothing is imported).

Rules:

- **no cycles**: no strongly connected component of more than one module. A package's
  ``__init__`` is a node of its own; ``from vlprep.x import y`` where ``y`` is a submodule is
  an edge to ``vlprep.x.y``, and running the parents' ``__init__`` is not counted.
- **no private imports across a boundary**: a private component (``_x``) is visible only inside
  the scope that holds it. A private module ``a.b._m`` may be imported by ``a.b`` (its
  ``__init__``) and any module under ``a.b`` (siblings such as ``a.b._n``); a private name
  ``_f`` of module ``a.b.m`` only inside ``a.b.m`` (and, for a package, its submodules).
  Dunder names (``__version__``) are not private.
- **the library does not import the CLI**: only modules under ``vlprep.cli`` import it.

Imports inside functions count; imports under ``if TYPE_CHECKING:`` do not (they never run).
Violations that other work is removing are listed in ``KNOWN_VIOLATIONS``; the list may only
shrink: an entry that no longer happens fails the test too, so it gets deleted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

KNOWN_VIOLATIONS: set[str] = set()


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of the tree
    name: str | None  # the attribute taken from it (``from target import name``), if any
    line: int


def module_names(src: Path, package: str) -> dict[str, Path]:
    """Every module under ``src/package``, by dotted name (a package is its ``__init__``)."""
    names = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes_of(other)
            continue
        yield from _import_nodes_of(child)


def _import_nodes_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _import_nodes(node)


def imports(src: Path, package: str) -> list[Import]:
    """Every import of a module of the tree, by every module of the tree."""
    modules = module_names(src, package)
    found = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        found.append(Import(name, alias.name, None, node.lineno))
                continue
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base not in modules:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.append(Import(name, sub, None, node.lineno))
                else:
                    found.append(Import(name, base, alias.name, node.lineno))
    return found


def cycles(edges: set[tuple[str, str]], nodes: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        if a != b:
            graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _within(module: str, scope: str) -> bool:
    return module == scope or module.startswith(scope + ".")


def violations(src: Path = SRC, package: str = "vlprep") -> set[str]:
    found = imports(src, package)
    edges = {(i.importer, i.target) for i in found}
    out = {"cycle: " + ", ".join(c) for c in cycles(edges, set(module_names(src, package)))}
    cli = f"{package}.cli"
    for imp in found:
        reasons = []
        parts = imp.target.split(".")
        if imp.name is not None and _is_private(imp.name):
            parts.append(imp.name)  # a public name is reported as its module
        private = [k for k, part in enumerate(parts) if _is_private(part)]
        if private and not _within(imp.importer, ".".join(parts[: private[-1]])):
            reasons.append("private")
        if _within(imp.target, cli) and not _within(imp.importer, cli):
            reasons.append("library imports cli")
        if reasons:
            out.add(f"{imp.importer} -> {'.'.join(parts)} ({', '.join(reasons)})")
    return out


def _listing(lines: set[str]) -> str:
    return "\n".join(f"    {line!r}," for line in sorted(lines))


def test_no_new_import_violations() -> None:
    new = violations() - KNOWN_VIOLATIONS
    assert not new, (
        f"import graph violations (see this file's docstring for the rules):\n{_listing(new)}"
    )


def test_known_violations_still_happen() -> None:
    gone = KNOWN_VIOLATIONS - violations()
    assert not gone, f"fixed: delete these from KNOWN_VIOLATIONS:\n{_listing(gone)}"


# ----------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "p/__init__.py": "from p import _version\nfrom p._version import __version__\n",
            "p/_version.py": "__version__ = '1'\n",
            "p/a.py": "def f():\n    from p import b\n",
            "p/b.py": "import p.a\nfrom p.c import _hidden\n",
            "p/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p import a\n"
            "else:\n    from .sub import _m\n_hidden = 1\n",
            "p/sub/__init__.py": "from . import _m\nfrom ._m import _x\n",
            "p/sub/_m.py": "from p.sub._n import y\n_x = 1\n",
            "p/sub/_n.py": "from .._version import __version__\ny = 1\n",
            "p/cli/__init__.py": "",
            "p/cli/_out.py": "row = 1\n",
            "p/cli/main.py": "from p.cli._out import row\nfrom p import lib\n",
            "p/lib.py": "from p.cli._out import row\nfrom . import cli\n",
        },
    )
    assert violations(src, "p") == {
        "cycle: p.a, p.b",
        "p.b -> p.c._hidden (private)",
        "p.c -> p.sub._m (private)",
        "p.sub -> p.sub._m._x (private)",
        "p.lib -> p.cli._out (private, library imports cli)",
        "p.lib -> p.cli (library imports cli)",
    }


def test_no_module_imports_a_moved_path() -> None:
    """The paths that moved in 0.2 are aliases for users; the library imports the new ones."""
    moved = _moved_paths(SRC / "vlprep" / "_moved.py")
    assert "vlprep.presets" in moved  # the table is read at all
    users = {
        f"{i.importer} -> {i.target}"
        for i in imports(SRC, "vlprep")
        if i.importer not in moved and i.target in moved
    }
    assert not users, sorted(users)


def _moved_paths(path: Path) -> set[str]:
    """The keys of ``MOVED`` in ``vlprep/_moved.py``, read with ``ast`` (nothing imported)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "MOVED":
            value = node.value
            if isinstance(value, ast.Dict):
                return {k.value for k in value.keys if isinstance(k, ast.Constant)}
    raise AssertionError(f"no MOVED table in {path}")
