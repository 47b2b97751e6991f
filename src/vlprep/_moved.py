"""The import paths that became private in 0.2, and the aliases that keep them working.

Each old module (``vlprep.presets``, ``vlprep.sources``, ...) is a file that calls
:func:`alias`: importing it warns once (``DeprecationWarning``) and binds the old name to
the private module that now holds the code, so ``vlprep.presets is vlprep._presets`` and
every name (public or private, including monkeypatching) behaves as before. The public
names are exported from :mod:`vlprep`. The aliases go away in 0.3 (``docs/migrating.md``).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Mapping

__all__ = ["MOVED", "alias"]

MOVED: Mapping[str, str] = {
    "vlprep.cache": "vlprep._cache",
    "vlprep.decode": "vlprep._decode",
    "vlprep.decode.image": "vlprep._decode.image",
    "vlprep.decode.video": "vlprep._decode.video",
    "vlprep.device_images": "vlprep._device_images",
    "vlprep.errors": "vlprep._errors",
    "vlprep.estimates": "vlprep._estimates",
    "vlprep.expansion": "vlprep._expansion",
    "vlprep.image": "vlprep._image",
    "vlprep.inputs": "vlprep._inputs",
    "vlprep.limits": "vlprep._limits",
    "vlprep.loader": "vlprep._loader",
    "vlprep.messages": "vlprep._messages",
    "vlprep.planning": "vlprep._planning",
    "vlprep.plans": "vlprep._plans",
    "vlprep.positions": "vlprep._positions",
    "vlprep.presets": "vlprep._presets",
    "vlprep.sampling": "vlprep._sampling",
    "vlprep.sizing": "vlprep._sizing",
    "vlprep.sources": "vlprep._sources",
    "vlprep.sources.policy": "vlprep._sources.policy",
    "vlprep.specs": "vlprep._specs",
    "vlprep.tensors": "vlprep._tensors",
    "vlprep.video": "vlprep._video",
    "vlprep.video_input": "vlprep._video_input",
}
"""Old import path -> the private module that holds its code since 0.2."""


def alias(old: str) -> None:
    """Warn that ``old`` moved and bind it (and its moved submodules) to the new module.

    Called from the body of the old module while it is being imported; the import
    statement then returns the new module (the import system reads ``sys.modules`` back).
    """
    new = MOVED[old]
    warnings.warn(
        f"the import path {old} is deprecated since vlprep 0.2 and goes away in 0.3: import "
        f"its public names from vlprep (the code now lives in the private {new}; "
        "see docs/migrating.md)",
        DeprecationWarning,
        stacklevel=3,  # past this function and the old module's body: the importer
    )
    sys.modules[old] = importlib.import_module(new)
    for sub_old, sub_new in MOVED.items():
        if sub_old.startswith(old + ".") and sub_old not in sys.modules:
            sys.modules[sub_old] = importlib.import_module(sub_new)
