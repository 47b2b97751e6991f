"""Number checks shared by every place that validates a caller's number.

``math.isfinite`` raises ``OverflowError`` on an int past the float range (``10**400``), and
``repr`` raises ``ValueError`` on one past 4,300 digits, so both are wrapped here.
"""

from __future__ import annotations

import math
from typing import TypeGuard

__all__ = ["is_finite_number", "shown"]


def is_finite_number(value: object) -> TypeGuard[float]:
    """An ``int`` or ``float`` (not a ``bool``) that is finite as a float.

    An int too large for a float (above about ``1.8e308``) is not: every size, rate and
    time is used as a float somewhere.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown(value: object, limit: int = 20) -> str:
    """``value`` for an error message: at most ``limit`` characters of its ``repr``; an int
    longer than that is named by its digit count (its ``repr`` may not even be allowed)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 60:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
