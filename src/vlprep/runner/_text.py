"""Generated ids -> text deltas, incrementally, with stop strings held back.

The detokenizer decodes a short window of ids instead of the whole answer at each token
(the prefix/read offsets of text-generation-inference and vLLM): ``decode(ids[prefix:])``
minus ``decode(ids[prefix:read])``, where both offsets sit where earlier text was complete.
Text that ends inside a multi-byte character (a trailing U+FFFD) is held until the
character completes, so the deltas join to the whole answer's decode for byte-level BPE
tokenizers (Qwen's) whatever the token boundaries.

Stop strings follow OpenAI's ``stop``: the answer ends before the first occurrence of any
of them, which is not part of the text. While the text so far ends with what could become a
stop string, that tail is held back, so a client never receives the start of a stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlprep._errors import InvalidInputError

__all__ = ["MAX_STOP_CHARS", "MAX_STOPS", "StopText", "check_stops"]

MAX_STOPS = 16
MAX_STOP_CHARS = 256


def check_stops(stop: str | Sequence[str]) -> tuple[str, ...]:
    """The stop strings as a tuple; a lone ``str`` is one stop string (as in OpenAI's API).

    Raises:
        InvalidInputError: not strings, an empty string, more than 16, or one longer than
            256 characters.
    """
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > MAX_STOPS:
        raise InvalidInputError(f"stop holds {len(stops)} strings; at most {MAX_STOPS}")
    for item in stops:
        if not isinstance(item, str):
            raise InvalidInputError(f"stop strings must be str, got {type(item).__name__}")
        if not item or len(item) > MAX_STOP_CHARS:
            raise InvalidInputError(
                f"each stop string must be 1 to {MAX_STOP_CHARS} characters, got {len(item)}"
            )
    return stops


def _held_tail(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class StopText:
    """One answer's text as ids arrive: :meth:`add` returns what may be sent now.

    Args:
        tokenizer: a transformers tokenizer (``decode(ids, skip_special_tokens=True)``).
        stops: stop strings (see :func:`check_stops`).
    """

    def __init__(self, tokenizer: Any, stops: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._stops = stops
        self._ids: list[int] = []
        self._prefix = 0  # window start: text before it is final
        self._read = 0  # ids up to here are in self._text
        self._text = ""  # decoded so far (complete characters)
        self._before = ""  # decode(ids[prefix:read])
        self._sent = 0  # characters of self._text handed out
        self.stopped = False  # a stop string was found: nothing more is added

    @property
    def text(self) -> str:
        """What was handed out so far (the whole answer once :meth:`finish` returned)."""
        return self._text[: self._sent]

    def _decode(self, ids: list[int]) -> str:
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def add(self, token: int) -> str:
        """Append one generated id (not an end-of-turn id); the text now safe to send."""
        if self.stopped:
            return ""
        self._ids.append(token)
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(self._before) and not after.endswith("\ufffd"):
            self._text += after[len(self._before) :]
            self._prefix, self._read = self._read, len(self._ids)
            self._before = self._decode(self._ids[self._prefix : self._read])
        return self._release(final=False)

    def finish(self) -> str:
        """The rest of the text at the end of generation (incomplete characters included)."""
        if not self.stopped and self._read < len(self._ids):
            after = self._decode(self._ids[self._prefix :])
            self._text += after[len(self._before) :]
            self._read = len(self._ids)
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        if self.stopped:
            return ""
        if self._stops:
            # no match starts inside text already sent: that text was never the start of one
            found = [i for i in (self._text.find(s, self._sent) for s in self._stops) if i >= 0]
            if found:
                end = min(found)
                self._text = self._text[:end]
                self.stopped = True
                return self._hand_out(end)
            if not final:
                return self._hand_out(len(self._text) - _held_tail(self._text, self._stops))
        return self._hand_out(len(self._text))

    def _hand_out(self, end: int) -> str:
        if end <= self._sent:
            return ""
        piece = self._text[self._sent : end]
        self._sent = end
        return piece
