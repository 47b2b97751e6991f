"""FetchPolicy: which sources may be read, and how long and how much a fetch may take."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from vlprep._errors import InvalidInputError
from vlprep._numbers import is_finite_number, shown

__all__ = ["MIB", "FetchPolicy", "Modality"]

MIB = 1024 * 1024
Modality = Literal["image", "video"]
_KNOWN_SCHEMES = frozenset({"http", "https", "data", "file"})


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Rules for :func:`vlprep._sources.fetch`, the one function that obtains bytes.

    Attributes:
        allowed_schemes: URL schemes accepted (subset of http, https, data, file).
            Bare local paths count as ``file``.
        allow_local: whether ``file://`` URLs and bare paths may be read at all.
        local_root: when set, local files are opened beneath this folder and nowhere else:
            the open itself refuses ``..`` and symbolic links that lead out of it (links
            that stay inside are followed), so a file swapped for a link between checks
            cannot escape. The folder itself may be a link; it is resolved once per open.
        refuse_hard_links: with ``local_root``, refuse files with more than one hard link
            (``st_nlink > 1`` on the opened file). A hard link made inside the root to a
            file outside it is indistinguishable from the file itself; this refuses every
            file that has one. True in :meth:`strict`.
        allow_private_networks: whether http(s) may reach loopback, private, link-local
            and other non-public addresses (checked after DNS resolution, every hop).
        allowed_hosts: when set, the only hostnames http(s) may contact (exact match).
        connect_timeout: seconds to establish a TCP/TLS connection.
        read_timeout: seconds a read may wait without receiving any byte.
        image_deadline / video_deadline: total seconds for one fetch, redirects included.
        max_image_bytes / max_video_bytes: byte caps on the payload (decoded bytes).
        max_redirects: redirects followed before failing (https -> http never followed).
    """

    allowed_schemes: frozenset[str] = _KNOWN_SCHEMES
    allow_local: bool = True
    local_root: str | None = None
    refuse_hard_links: bool = False
    allow_private_networks: bool = True
    allowed_hosts: frozenset[str] | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    image_deadline: float = 30.0
    video_deadline: float = 120.0
    max_image_bytes: int = 32 * MIB
    max_video_bytes: int = 256 * MIB
    max_redirects: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.allowed_schemes, frozenset):
            object.__setattr__(self, "allowed_schemes", frozenset(self.allowed_schemes))
        unknown = set(self.allowed_schemes) - _KNOWN_SCHEMES
        if unknown:
            raise InvalidInputError(
                f"unknown schemes {sorted(unknown)}; valid: {sorted(_KNOWN_SCHEMES)}"
            )
        if self.allowed_hosts is not None:
            hosts = frozenset(h.lower() for h in self.allowed_hosts)
            object.__setattr__(self, "allowed_hosts", hosts)
        if not isinstance(self.refuse_hard_links, bool):
            raise InvalidInputError(
                "FetchPolicy.refuse_hard_links must be True or False, got "
                f"{type(self.refuse_hard_links).__name__}"
            )
        root = self.local_root
        if root is not None and (not isinstance(root, str) or not root or "\x00" in root):
            raise InvalidInputError(
                "FetchPolicy.local_root must be None or a folder path: a non-empty str "
                "without NUL bytes"
            )
        for name in (
            "connect_timeout",
            "read_timeout",
            "image_deadline",
            "video_deadline",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInputError(f"FetchPolicy.{name} must be a number of seconds")
            if not (is_finite_number(value) and value > 0):
                raise InvalidInputError(f"FetchPolicy.{name} must be > 0, got {shown(value)}")
        for name in ("max_image_bytes", "max_video_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(
                    f"FetchPolicy.{name} must be a positive int, got {shown(value)}"
                )
        redirects = self.max_redirects
        is_int = isinstance(redirects, int) and not isinstance(redirects, bool)
        if not is_int or not 0 <= redirects <= 20:
            raise InvalidInputError(
                "FetchPolicy.max_redirects must be an int in [0, 20], got "
                f"{shown(self.max_redirects)}"
            )

    @classmethod
    def strict(
        cls, *, local_root: str | None = None, allowed_hosts: frozenset[str] | None = None
    ) -> FetchPolicy:
        """A policy for servers that take sources from strangers.

        http(s) and ``data:`` only; local files only under ``local_root`` when given, and
        only files with a single hard link (``refuse_hard_links``); no private, loopback,
        link-local or metadata addresses; optional host allow-list; same timeouts,
        deadlines and caps as the default.
        """
        schemes = {"http", "https", "data"} | ({"file"} if local_root else set())
        return cls(
            allowed_schemes=frozenset(schemes),
            allow_local=local_root is not None,
            local_root=local_root,
            refuse_hard_links=True,
            allow_private_networks=False,
            allowed_hosts=allowed_hosts,
        )

    def deadline(self, modality: Modality) -> float:
        """Total seconds allowed for one fetch of ``modality``."""
        return self.image_deadline if modality == "image" else self.video_deadline

    def max_bytes(self, modality: Modality) -> int:
        """Byte cap for one payload of ``modality``."""
        return self.max_image_bytes if modality == "image" else self.max_video_bytes

    def replace(self, **changes: object) -> FetchPolicy:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_POLICY = FetchPolicy()
