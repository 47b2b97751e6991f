"""``make lock``: write constraints.txt from the test venv, plus the demo/fuzz/bench extras.

The test venv's ``pip freeze`` (vlprep itself left out) gives the exact versions of
everything ``make test`` installs; the packages only the other venvs install (``--extra``,
e.g. atheris and matplotlib) are resolved against those pins with ``pip install --dry-run
--report`` and added with their dependencies. Standard library only.

    python scripts/lock.py --venv .venv --extra atheris matplotlib --out constraints.txt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HEADER = """\
# The pinned test environment: every package `make test`, `make demo`, `make fuzz` and
# `make bench` install, at one exact version (pip's constraints format: `-c constraints.txt`).
# Updating a version here is a deliberate commit: run `make test` and `make compat` first.
# Regenerate after a change with `make lock` (pip freeze of the test venv plus the extras that
# only the demo, fuzz and bench venvs install).
# The video extras load the system FFmpeg libraries; CI installs Debian's ffmpeg (.ci/run).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--venv", type=Path, default=Path(".venv"))
    parser.add_argument("--extra", nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=Path("constraints.txt"))
    args = parser.parse_args(argv)
    python = str(args.venv / "bin" / "python")
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    pins = {line.split("==")[0].lower(): line for line in frozen if "==" in line}
    if args.extra:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp, "base.txt")
            base.write_text("\n".join(pins.values()) + "\n")
            report = Path(tmp, "report.json")
            subprocess.run(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--dry-run",
                    "--report",
                    str(report),
                    "-c",
                    str(base),
                    *args.extra,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            for item in json.loads(report.read_text())["install"]:
                meta = item["metadata"]
                pins.setdefault(meta["name"].lower(), f"{meta['name']}=={meta['version']}")
    body = sorted(pins.values(), key=str.lower)
    args.out.write_text(HEADER + "\n".join(body) + "\n")
    print(f"{len(body)} pins written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
