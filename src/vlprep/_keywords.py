"""The keyword renames of the drop-ins: one canonical name per concept, the old one deprecated.

``image_options=`` / ``video_options=`` are the names every entry point uses
(:func:`vlprep.build_inputs`, :func:`vlprep.inspect`, :class:`vlprep.Loader`'s fields);
``fetch_image(options=)``, ``process_vision_info(options=)`` and ``fetch_video(options=)``
keep working with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings
from typing import TypeVar

from vlprep._errors import InvalidInputError

__all__ = ["checked", "renamed"]

T = TypeVar("T")


def checked(value: T | None, expected: type[T], where: str) -> T | None:
    """``value`` when it is ``None`` or an ``expected``; else an error naming the type.

    Raises:
        InvalidInputError: ``value`` is another type (a ``VideoOptions`` given as image
            options, say), named here rather than as an ``AttributeError`` deep inside.
    """
    if value is not None and not isinstance(value, expected):
        raise InvalidInputError(
            f"{where} must be a vlprep.{expected.__name__} or None, got {type(value).__name__}"
        )
    return value


def renamed(
    function: str,
    new_name: str,
    new: T | None,
    old_name: str,
    old: T | None,
    *,
    expected: type[T],
) -> T | None:
    """The value of keyword ``new_name``, or of its deprecated name ``old_name`` (warned).

    Raises:
        InvalidInputError: both names given, or a value of another type than ``expected``.
    """
    if old is not None:
        if new is not None:
            raise InvalidInputError(
                f"{function}() got both {new_name}= and its deprecated name {old_name}=; "
                f"pass {new_name}= only"
            )
        warnings.warn(
            f"{function}({old_name}=) is deprecated; pass {new_name}= (the name every "
            "vlprep entry point uses)",
            DeprecationWarning,
            stacklevel=3,
        )
        return checked(old, expected, f"{function}({old_name}=)")
    return checked(new, expected, f"{function}({new_name}=)")
