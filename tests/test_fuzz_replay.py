"""Replay every stored file through the fuzz harness (Pillow's test_fuzzers.py pattern).

Inputs: the committed fuzz corpus (seeds and every crash reproducer, fuzz/corpus/), the
repository fixtures and the bundled test media (tests/media), each through all four targets. A
target may only raise ``VlprepError`` with a message of our own (no object address, no
payload echo); anything else is a regression of a fuzz finding. atheris is not needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.harness import TARGETS, FindingError, check_message
from vlprep._errors import DecodeError

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "tests" / "media"


def _files() -> list[Path]:
    folders = [ROOT / "fuzz" / "corpus", ROOT / "fixtures", MEDIA]
    found = {p.resolve() for folder in folders if folder.is_dir() for p in folder.rglob("*")}
    return sorted(p for p in found if p.is_file())


FILES = _files()


def _id(path: Path) -> str:
    for base in (MEDIA, ROOT):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return path.name


def test_inputs_found() -> None:
    corpus = [p for p in FILES if "fuzz/corpus" in str(p)]
    crashes = [p for p in corpus if p.name.startswith("crash-")]
    assert len(corpus) >= 30 and crashes, "the committed corpus is missing"
    assert any(p.suffix == ".mp4" for p in FILES) and any(p.suffix == ".png" for p in FILES)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("path", FILES, ids=_id)
def test_replay(path: Path, target: str) -> None:
    TARGETS[target](path.read_bytes())


def test_check_message_catches_leaks() -> None:
    leak = DecodeError("cannot identify image file <_io.BytesIO object at 0x7a95c3d2f1a0>")
    with pytest.raises(FindingError, match="object address"):
        check_message(leak)
    payload = "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ" * 3
    with pytest.raises(FindingError, match="data: payload"):
        check_message(DecodeError(f"bad {payload[30:60]}"), payload)
    with pytest.raises(FindingError, match="echoes"):
        check_message(DecodeError("x" + "abcdefghij" * 7), "abcdefghij" * 9)
    check_message(DecodeError("cannot decode image (12 bytes): not an image"), b"GIF89a....")
