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

# Everything the targets reach is imported inside the block: modules imported later
# (Pillow's plugins, the PyAV reader, both loaded lazily) would give libFuzzer no coverage.
with atheris.instrument_imports():
    import PIL.Image

    import vlprep._decode.image
    import vlprep._decode.video
    import vlprep._decode.video._pyav
    import vlprep._decode.video._pyav_index
    import vlprep._decode.video._rotation
    import vlprep._decode.video._source
    import vlprep._sources
    import vlprep._sources._data_uri
    import vlprep._sources._http
    import vlprep._sources._local  # noqa: F401
    from fuzz.harness import TARGETS

    PIL.Image.init()  # imports every Pillow plugin now, instrumented


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [corpus dir] [libFuzzer flags]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
