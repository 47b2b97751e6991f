"""An offline stand-in for Qwen-VL's remote-code ``QWenTokenizer`` (for tests and demos).

Same special tokens at the same ids (``<|endoftext|>`` 151643, ``<|im_start|>`` 151644,
``<|im_end|>`` 151645, 205 ``<|extra_i|>``, then ``<ref>`` 151851 ... ``<img>`` 151857,
``</img>`` 151858, ``<imgpad>`` 151859), the same interface vlprep and ``model.chat`` use
(``IMAGE_ST``, ``im_start_id``, ``img_start_id``, ..., ``tokenizer.encode_ordinary``,
``from_list_format``) and the same ``<img>`` span rule: the bytes between ``<img>`` and
``</img>`` become one token each (id = byte value), padded with ``<imgpad>`` to 256. Text
costs one token per UTF-8 byte (id = byte value; no BPE merges), so its ids differ from the
real tokenizer's except inside an image span, where they are the same by construction.
Written for vlprep from the behaviour described in ``tokenization_qwen.py``; no code of it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from transformers import PreTrainedTokenizer

__all__ = ["QWenStandInTokenizer", "make_qwen_vl_tokenizer"]

_FIRST_SPECIAL = 151643  # len(qwen.tiktoken's ranks): the first special id
_SPAN = 256
_CHATML = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_EXTRAS = tuple(f"<|extra_{i}|>" for i in range(205))
_IMAGE_ST = (
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    "<quad>",
    "</quad>",
    "<img>",
    "</img>",
    "<imgpad>",
)


class _ByteEncoding:
    """tiktoken's ``Encoding`` interface over bytes: ``encode``, ``encode_ordinary``,
    ``decode``; ordinary ids are byte values."""

    def __init__(self, specials: Mapping[str, int]) -> None:
        self.special_tokens = dict(specials)
        self.n_vocab = _FIRST_SPECIAL + len(specials)
        self.eot_token = specials["<|endoftext|>"]
        self._by_id = {v: k for k, v in specials.items()}

    def encode_ordinary(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode(
        self,
        text: str,
        allowed_special: str | Collection[str] = frozenset(),
        disallowed_special: str | Collection[str] = "all",
    ) -> list[int]:
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        banned = (
            set(self.special_tokens) - allowed
            if disallowed_special == "all"
            else set(disallowed_special)
        )
        for token in banned:
            if token in text:
                raise ValueError(f"disallowed special token {token!r} in the text")
        if not allowed:
            return self.encode_ordinary(text)
        pattern = re.compile("|".join(re.escape(t) for t in sorted(allowed, key=len, reverse=True)))
        out: list[int] = []
        start = 0
        for match in pattern.finditer(text):
            out += self.encode_ordinary(text[start : match.start()])
            out.append(self.special_tokens[match.group()])
            start = match.end()
        return out + self.encode_ordinary(text[start:])

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        text, pending = "", b""
        for i in ids:
            if i < 256:
                pending += bytes([i])
                continue
            text += pending.decode("utf-8", errors=errors) + self._by_id[i]
            pending = b""
        return text + pending.decode("utf-8", errors=errors)


class QWenStandInTokenizer(PreTrainedTokenizer):
    """The offline stand-in (see the module docstring). Its class name starts with
    ``QWen`` like the real one, so :func:`vlprep.preset_from_processor` reads the family."""

    model_input_names = ["input_ids", "attention_mask"]  # noqa: RUF012 - transformers' API

    def __init__(self, picture: str = "Picture {n}: ", **kwargs: Any) -> None:
        names = (*_CHATML, *_EXTRAS, *_IMAGE_ST)
        self.special_tokens = {token: _FIRST_SPECIAL + i for i, token in enumerate(names)}
        self.IMAGE_ST = _IMAGE_ST
        self.image_start_tag, self.image_end_tag, self.image_pad_tag = _IMAGE_ST[6:]
        self.img_start_id = self.special_tokens["<img>"]
        self.img_end_id = self.special_tokens["</img>"]
        self.img_pad_id = self.special_tokens["<imgpad>"]
        self.im_start_id = self.special_tokens["<|im_start|>"]
        self.im_end_id = self.special_tokens["<|im_end|>"]
        self.eod_id = self.special_tokens["<|endoftext|>"]
        self.tokenizer = _ByteEncoding(self.special_tokens)
        self.picture = picture
        self.errors = "replace"
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.n_vocab)

    def __len__(self) -> int:
        return int(self.tokenizer.n_vocab)

    def get_vocab(self) -> dict[str | bytes, int]:  # type: ignore[override]
        vocab: dict[str | bytes, int] = {bytes([b]): b for b in range(256)}
        vocab.update(self.special_tokens)
        return vocab

    def _add_tokens(self, new_tokens: Sequence[Any], special_tokens: bool = False) -> int:
        for token in new_tokens:
            if str(getattr(token, "content", token)) not in self.special_tokens:
                raise ValueError("adding tokens is not supported")
        return 0

    def tokenize(  # type: ignore[override]
        self,
        text: str,
        allowed_special: str | Collection[str] = "all",
        disallowed_special: str | Collection[str] = (),
        **kwargs: Any,
    ) -> list[bytes | str]:
        """Text -> token surfaces (bytes or special strings), ``<img>`` spans turned into
        the path's bytes and ``<imgpad>`` up to 256 tokens."""
        text = unicodedata.normalize("NFC", text)
        ids = self.tokenizer.encode(
            text, allowed_special=allowed_special, disallowed_special=disallowed_special
        )
        surfaces = [self._convert_id_to_token(i) for i in ids]
        out: list[bytes | str] = []
        i = 0
        while i < len(surfaces):
            if surfaces[i] != self.image_start_tag:
                out.append(surfaces[i])
                i += 1
                continue
            try:
                end = surfaces.index(self.image_end_tag, i + 1)
            except ValueError:
                raise ValueError("Unclosed image token") from None
            inside = b"".join(s for s in surfaces[i + 1 : end] if isinstance(s, bytes))
            if len(inside) > _SPAN:
                raise ValueError("The content in <img>..</img> is too long")
            out += [self.image_start_tag, *(bytes([b]) for b in inside)]
            out += [self.image_pad_tag] * (_SPAN - len(inside)) + [self.image_end_tag]
            i = end + 1
        return out

    def convert_tokens_to_ids(self, tokens: Any) -> Any:
        if isinstance(tokens, (str, bytes)):
            return self._convert_token_to_id(tokens)
        return [self._convert_token_to_id(t) for t in tokens]

    def _convert_token_to_id(self, token: str | bytes) -> int | None:
        if isinstance(token, str):
            return self.special_tokens.get(token)
        return token[0] if len(token) == 1 else None

    def _convert_id_to_token(self, index: int) -> str | bytes:  # type: ignore[override]
        if 0 <= index < 256:
            return bytes([index])
        for token, value in self.special_tokens.items():
            if value == index:
                return token
        raise ValueError(f"unknown id {index}")

    def convert_tokens_to_string(self, tokens: list[str | bytes]) -> str:  # type: ignore[override]
        ids = [self._convert_token_to_id(t) for t in tokens]
        return self.tokenizer.decode(i for i in ids if i is not None)

    def _decode(  # type: ignore[override]
        self, token_ids: int | list[int], skip_special_tokens: bool = False, **kwargs: Any
    ) -> str:
        ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        out: list[int] = []
        i = 0
        while i < len(ids):  # a span reads back as its path, as the real tokenizer decodes it
            if ids[i] == self.img_start_id and self.img_end_id in ids[i + 1 :]:
                end = ids.index(self.img_end_id, i + 1)
                inside = ids[i + 1 : end]
                path = (
                    inside[: inside.index(self.img_pad_id)] if self.img_pad_id in inside else inside
                )
                out += [self.img_start_id, *path, self.img_end_id]
                i = end + 1
                continue
            out.append(ids[i])
            i += 1
        if skip_special_tokens:
            out = [i for i in out if i < self.eod_id]
        return self.tokenizer.decode(out, errors=str(kwargs.get("errors") or self.errors))

    def from_list_format(self, list_format: Sequence[Mapping[str, Any]]) -> str:
        """``[{"image": path}, {"text": ...}, {"ref": ..., "box": [...]}]`` -> query text, as
        the real tokenizer writes it (``Picture n: <img>path</img>\\n`` per image)."""
        text, images = "", 0
        for element in list_format:
            if "image" in element:
                images += 1
                text += self.picture.format(n=images) + f"<img>{element['image']}</img>\n"
            elif "text" in element:
                text += str(element["text"])
            elif "box" in element:
                if "ref" in element:
                    text += f"<ref>{element['ref']}</ref>"
                for box in element["box"]:
                    text += "<box>(%d,%d),(%d,%d)</box>" % tuple(box[:4])  # noqa: UP031
            else:
                raise ValueError(f"Unsupported element: {sorted(element)}")
        return text

    def save_vocabulary(
        self, save_directory: str, filename_prefix: str | None = None
    ) -> tuple[str, ...]:
        return ()


def make_qwen_vl_tokenizer(picture: str = "Picture {n}: ") -> QWenStandInTokenizer:
    """The offline stand-in for ``AutoTokenizer.from_pretrained("Qwen/Qwen-VL-Chat",
    trust_remote_code=True)``; ``picture="Picture {n}:"`` imitates the copies of
    ``tokenization_qwen.py`` that write no space after the colon."""
    return QWenStandInTokenizer(picture=picture)
