"""``python -m vlprep.inspect``: the ``vlprep-inspect`` command (see :mod:`vlprep.cli.inspect`).

Only for running: ``vlprep.inspect`` is the library function
:func:`vlprep.estimates.inspect`, and this file is never imported by vlprep itself.
"""

from __future__ import annotations

if __name__ == "__main__":
    from vlprep.cli.inspect import main

    raise SystemExit(main())
