"""atheris entry point: ``python fuzz/run.py TARGET [libFuzzer flags...]``.

TARGET is one of ``image``, ``data_uri``, ``url``, ``video`` (see fuzz/harness.py).
Example: ``python fuzz/run.py image fuzz/corpus/image -max_total_time=600``.
"""

from __future__ import annotations

import sys

import atheris

# Heavy dependencies are imported first so that only vlprep and Pillow get instrumented.
import av  # noqa: F401
import numpy  # noqa: F401
import torch  # noqa: F401

with atheris.instrument_imports():
    import PIL.Image  # noqa: F401

    import vlprep.decode.image
    import vlprep.decode.video
    import vlprep.sources
    import vlprep.sources._data_uri
    import vlprep.sources._http  # noqa: F401
    from fuzz.harness import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [corpus dir] [libFuzzer flags]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
