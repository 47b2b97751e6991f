"""The import paths that became private in 0.2 keep working for one release, with a warning.

Each old path (``vlprep._moved.MOVED``) must import in a fresh interpreter, warn once with a
``DeprecationWarning`` that points at the importing line, and *be* its private successor (the
same module object, so names, private helpers and monkeypatching behave as before). The
library itself never imports an old path: importing every public package with warnings as
errors must succeed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from vlprep._moved import MOVED

PUBLIC = (
    "vlprep",
    "vlprep.runner",
    "vlprep.grounding",
    "vlprep.integrations.ray",
    "vlprep.testing",
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_old_path_warns_and_is_its_successor() -> None:
    code = "\n".join(
        [
            "import importlib, sys, warnings",
            "from vlprep._moved import MOVED",
            "for old, new in MOVED.items():",
            "    for name in MOVED:",
            "        sys.modules.pop(name, None)",
            "    with warnings.catch_warnings(record=True) as caught:",
            "        warnings.simplefilter('always')",
            "        module = importlib.import_module(old)",
            "    assert module is importlib.import_module(new), old",
            "    moved = [w for w in caught if issubclass(w.category, DeprecationWarning)]",
            "    named = {old, old.rpartition('.')[0]}  # a moved submodule warns for its package",
            "    assert moved and any(f'path {n} is' in str(moved[0].message) for n in named), old",
            "    assert 'docs/migrating.md' in str(moved[0].message)",
            "print('ok', len(MOVED))",
        ]
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", str(len(MOVED))]


def test_the_warning_points_at_the_import_line() -> None:
    result = _run(
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "import vlprep\n"
        "from vlprep.presets import QWEN2_5_VL  # line 4\n"
        "assert QWEN2_5_VL is vlprep.QWEN2_5_VL\n"
    )
    assert result.returncode == 0, result.stderr
    assert "<string>:4: DeprecationWarning: the import path vlprep.presets" in result.stderr


def test_old_subpackage_paths_share_the_modules() -> None:
    result = _run(
        "import warnings\n"
        "warnings.simplefilter('ignore')\n"
        "import vlprep.sources.policy, vlprep.decode.video, vlprep.decode.image\n"
        "import vlprep._sources.policy, vlprep._decode.video, vlprep._decode.image\n"
        "assert vlprep.sources.policy is vlprep._sources.policy\n"
        "assert vlprep.decode.video is vlprep._decode.video\n"
        "from vlprep.sources import FetchPolicy\n"
        "assert FetchPolicy is vlprep.FetchPolicy\n"
    )
    assert result.returncode == 0, result.stderr


def test_the_library_never_imports_an_old_path() -> None:
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        f"import {', '.join(PUBLIC)}\n"
        "import vlprep.cli.inspect, vlprep.cli.run\n"
        "import sys\n"
        "from vlprep._moved import MOVED\n"
        "loaded = sorted(n for n in MOVED if n in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_names_are_not_public_paths(old: str) -> None:
    assert not old.startswith(PUBLIC[1:])  # the five public paths never moved
    assert MOVED[old].split(".")[1].startswith("_")
