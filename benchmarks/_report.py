"""Shared by the benchmarks: version and CPU facts, and writing a marked docs section."""

from __future__ import annotations

import gc
import importlib.metadata as md
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path


def version(dist: str) -> str:
    """Installed version of ``dist``, or ``"absent"``."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "absent"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def round_robin(methods: Mapping[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Seconds per call: ``repeat`` rounds in which every method runs once.

    The starting method rotates each round and the garbage collector is off while timing
    (as ``timeit`` does); warm-up calls are the caller's.
    """
    names = list(methods)
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        for r in range(repeat):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                methods[name]()
                times[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    return times


def write_section(
    path: Path, name: str, heading: str, body: str, header: str = "# Performance\n"
) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path``.

    When the markers are absent, append ``## heading`` and the marked section (creating
    the file from ``header`` if needed).
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body}\n{end}"
    text = path.read_text() if path.exists() else header
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
