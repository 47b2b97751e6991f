"""Deprecated import path since vlprep 0.2 (removed in 0.3): use ``vlprep``.

The code lives in :mod:`vlprep._sources`; this name is an alias of it (see ``vlprep._moved``).
"""

from vlprep._moved import alias
from vlprep._sources import *  # noqa: F403  (the names, for type checkers; replaced by the alias)

alias(__name__)
