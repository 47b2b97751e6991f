"""``make demo`` runs ``examples/demo.py``: it must keep working as the library moves.

The demo builds inputs for every family with the offline processors and runs a tiny
checkpoint, so a change in the family table or the public names shows up here (a moved
family list broke it once, unnoticed until ``make demo``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_the_demo_runs_on_the_bundled_media() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for family in ("qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qwen-vl"):
        assert f"  {family} " in out, family
    assert "pixel_values (1, 3, 448, 448)" in out  # the first generation's fixed input
    assert "process_vision_info on a 3-image conversation" in out
    assert '"family": "qwen2.5-vl"' in out  # vlprep-run answered
