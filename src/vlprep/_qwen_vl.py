"""The first generation (Qwen-VL, Qwen-VL-Chat): prompt, token ids, pixels and image files.

Qwen-VL has no transformers processor. Its remote-code ``QWenTokenizer`` writes each image
as ``Picture n: <img>PATH_OR_URL</img>\\n`` and turns the span into one token per byte of
the path, padded with ``<imgpad>`` to 256 tokens; its model then opens that path (or fetches
that URL, with no timeout and no address check) inside ``forward()``. vlprep never lets it:

- **pixels form** (what vLLM feeds the model): the span is ``<img>`` + 256 ``<imgpad>`` +
  ``</img>`` and ``pixel_values`` is float32 ``(N, 3, 448, 448)``, the images vlprep fetched
  through its guarded fetch, squashed to 448x448 with Pillow's bicubic filter and normalised
  with the CLIP mean/std;
- **path form** (what the remote-code model reads): vlprep writes each checked image as a PNG
  into a directory the caller owns and puts that local path in the span, so the model opens a
  file vlprep wrote and never sees a URL.

The conversation is laid out as the model's own ``make_context`` and ``finetune.py`` do
(ChatML): ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, role and content
tokenised apart, only the image/grounding tags (``IMAGE_ST``) special inside content.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from vlprep._errors import InvalidInputError
from vlprep._messages import is_vision_element
from vlprep._presets import Preset, refuse_video
from vlprep._specs import element_kind

__all__ = [
    "DEFAULT_SYSTEM",
    "IMAGE_SPAN",
    "IMAGE_TAGS",
    "MAX_PATH_BYTES",
    "PictureNumbering",
    "QwenVLTokens",
    "Turn",
    "encode_turns",
    "image_text",
    "pads_span",
    "path_span",
    "pixel_values",
    "render_turns",
    "turns_of",
    "write_images",
]

IMAGE_SPAN = 256
"""Tokens between ``<img>`` and ``</img>`` (``IMG_TOKEN_SPAN`` of ``tokenization_qwen.py``)."""

MAX_PATH_BYTES = IMAGE_SPAN - 1
"""Longest path (UTF-8 bytes) a span can carry: the model reads the span up to the first
``<imgpad>`` of its first 255 tokens, so one pad must follow the path."""

DEFAULT_SYSTEM = "You are a helpful assistant."
"""The system prompt of ``model.chat`` and ``finetune.py``, used when a conversation has none."""

IMAGE_TAGS = ("<img>", "</img>", "<imgpad>")
"""The image span's tokens: refused in text (the remote-code model would open what a span
written in text names)."""

_IMAGE_ST = ("<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", *IMAGE_TAGS)
_SPECIAL = re.compile("|".join(re.escape(tag) for tag in _IMAGE_ST))
_PICTURE = re.compile(r"Picture 1:( ?)<img></img>\n")

PictureNumbering = Literal["conversation", "message"]
"""``"conversation"``: ``Picture 1``, ``Picture 2``, ... across the whole conversation (as
vLLM's chat front end numbers them); ``"message"``: restart at 1 in every message (as
``tokenizer.from_list_format`` does when each turn is built alone)."""


@dataclass(frozen=True, slots=True)
class QwenVLTokens:
    """The ids of a Qwen-VL tokenizer's ChatML and image tokens.

    Attributes:
        im_start / im_end: ``<|im_start|>`` / ``<|im_end|>``.
        img_start / img_end / img_pad: ``<img>`` / ``</img>`` / ``<imgpad>`` (consecutive
            ids: the model finds ``</img>`` and ``<imgpad>`` as ``image_start_id + 1 / + 2``).
        pad: the id batches are padded with (the tokenizer's pad token, else
            ``<|endoftext|>``).
        specials: every ``IMAGE_ST`` tag -> id (``<ref>`` ... ``<imgpad>``).
        picture: ``"Picture {n}: "`` or ``"Picture {n}:"``, as the checkpoint's own
            ``from_list_format`` writes it (copies of ``tokenization_qwen.py`` differ).
    """

    im_start: int
    im_end: int
    img_start: int
    img_end: int
    img_pad: int
    pad: int
    specials: Mapping[str, int]
    picture: str

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> QwenVLTokens:
        """Read the ids (and the ``Picture n:`` spacing) from a ``QWenTokenizer``.

        Raises:
            InvalidInputError: not a Qwen-VL tokenizer (no ``IMAGE_ST`` tags, no plain-text
                encoder), or its image ids are not consecutive.
        """
        _encoder(tokenizer)
        ids: dict[str, int] = {}
        for tag in (*_IMAGE_ST, "<|im_start|>", "<|im_end|>", "<|endoftext|>"):
            value = tokenizer.convert_tokens_to_ids(tag)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(
                    f"the tokenizer has no {tag!r} token; is this the Qwen-VL tokenizer?"
                )
            ids[tag] = value
        start = ids["<img>"]
        if (ids["</img>"], ids["<imgpad>"]) != (start + 1, start + 2):
            raise InvalidInputError(
                "the tokenizer's <img>, </img>, <imgpad> ids are not consecutive "
                f"({start}, {ids['</img>']}, {ids['<imgpad>']}); the Qwen-VL model needs them so"
            )
        pad = getattr(tokenizer, "pad_token_id", None)
        return cls(
            im_start=ids["<|im_start|>"],
            im_end=ids["<|im_end|>"],
            img_start=start,
            img_end=start + 1,
            img_pad=start + 2,
            pad=pad if isinstance(pad, int) else ids["<|endoftext|>"],
            specials={tag: ids[tag] for tag in _IMAGE_ST},
            picture=_picture_form(tokenizer),
        )


def _encoder(tokenizer: Any) -> Any:
    """The tokenizer's plain-text BPE (tiktoken's ``Encoding`` in ``QWenTokenizer``)."""
    encoding = getattr(tokenizer, "tokenizer", None)
    if not hasattr(tokenizer, "IMAGE_ST") or not callable(
        getattr(encoding, "encode_ordinary", None)
    ):
        raise InvalidInputError(
            f"{type(tokenizer).__name__} is not the Qwen-VL tokenizer: build_inputs for "
            "family 'qwen-vl' needs its QWenTokenizer (AutoTokenizer.from_pretrained(checkpoint, "
            "trust_remote_code=True)); vlprep.testing.make_qwen_vl_tokenizer() is an offline "
            "stand-in"
        )
    return encoding


def _picture_form(tokenizer: Any) -> str:
    build = getattr(tokenizer, "from_list_format", None)
    if callable(build):
        match = _PICTURE.fullmatch(str(build([{"image": ""}])))
        if match is not None:
            return "Picture {n}:" + match.group(1)
    return "Picture {n}: "


def image_text(n: int, tokens: QwenVLTokens, path: str = "") -> str:
    """The text of the ``n``-th image (from 1): ``Picture n: <img>path</img>\\n``."""
    return tokens.picture.format(n=n) + "<img>" + path + "</img>\n"


Turn = tuple[str, list[str | int]]
"""One message: its role and its content in order, text as ``str`` and each image as the
``int`` index of the image in the whole batch."""


def _text_of(part: Mapping[str, Any], where: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise InvalidInputError(
            f"{where}: a part needs an image source or 'text' (a string), got keys "
            f"{sorted(str(k) for k in part)[:8]}"
        )
    return text


def turns_of(
    conversation: Sequence[Mapping[str, Any]],
    preset: Preset,
    first_image: int,
    where: str,
) -> tuple[list[Turn], list[Mapping[str, Any]]]:
    """A conversation's messages -> turns, and its image elements in order (the elements
    :func:`vlprep.extract_vision_info` returns, in its order; ``first_image``: the index
    of the first in the batch).

    Raises:
        InvalidInputError: a video element (the first generation takes none), a part
            without text or image, a non-string role, or an image tag written in text.
    """
    turns: list[Turn] = []
    images: list[Mapping[str, Any]] = []
    for m, message in enumerate(conversation):
        role = message.get("role")
        if not isinstance(role, str):
            raise InvalidInputError(f"{where}, message {m}: 'role' must be a string")
        content = message.get("content")
        pieces: list[str | int] = []
        parts = [] if content is None else [content] if isinstance(content, str) else content
        for p, part in enumerate(parts):
            at = f"{where}, message {m}, part {p}"
            if isinstance(part, str):
                text = part
            elif isinstance(part, Mapping) and is_vision_element(part):
                if element_kind(part) == "video" or part.get("type") in ("video", "video_url"):
                    refuse_video(preset)
                pieces.append(first_image + len(images))
                images.append(part)
                continue
            elif isinstance(part, Mapping):
                text = _text_of(part, at)
            else:
                raise InvalidInputError(f"{at}: a part must be a dict, got {type(part).__name__}")
            found = [tag for tag in IMAGE_TAGS if tag in text]
            if found:
                raise InvalidInputError(
                    f"{at}: the text holds {found[0]!r}; an image goes in an image element "
                    "(the Qwen-VL model would open or fetch whatever an <img> span in the "
                    "text names)"
                )
            pieces.append(text)
        turns.append((role, pieces))
    return turns, images


def render_turns(
    turns: Sequence[Turn],
    tokens: QwenVLTokens,
    *,
    system: str | None,
    numbering: PictureNumbering,
    paths: Sequence[str] | None = None,
) -> list[tuple[str, str]]:
    """Turns -> ``(role, content text)`` per message, a default system turn first when the
    conversation has none and ``system`` is not ``None``; images as
    ``Picture n: <img>path</img>\\n`` (``paths[i]`` for the batch's image ``i``, else empty).
    """
    messages: list[tuple[str, str]] = []
    if system is not None and (not turns or turns[0][0] != "system"):
        messages.append(("system", system))
    count = 0
    for role, pieces in turns:
        count = 0 if numbering == "message" else count
        text = ""
        for piece in pieces:
            if isinstance(piece, int):
                count += 1
                text += image_text(count, tokens, "" if paths is None else paths[piece])
            else:
                text += piece
        messages.append((role, text))
    return messages


def _encode_content(text: str, encoding: Any, tokens: QwenVLTokens) -> list[int]:
    """``tokenizer.encode(text, allowed_special=set(tokenizer.IMAGE_ST))``: NFC, the
    ``IMAGE_ST`` tags special, everything else (``<|im_start|>`` included) plain text."""
    text = unicodedata.normalize("NFC", text)
    out: list[int] = []
    start = 0
    for match in _SPECIAL.finditer(text):
        if match.start() > start:
            out.extend(encoding.encode_ordinary(text[start : match.start()]))
        out.append(tokens.specials[match.group()])
        start = match.end()
    if start < len(text):
        out.extend(encoding.encode_ordinary(text[start:]))
    return [int(i) for i in out]


def encode_turns(
    messages: Sequence[tuple[str, str]],
    tokenizer: Any,
    tokens: QwenVLTokens,
    *,
    add_generation_prompt: bool,
    spans: Sequence[Sequence[int]],
) -> list[int]:
    """The ids of rendered messages, each image span's inside replaced by ``spans[i]``.

    ``<|im_start|>`` + role + ``\\n`` + content + ``<|im_end|>`` + ``\\n`` per message (role
    and content tokenised apart, as ``make_context``), then ``<|im_start|>assistant\\n``
    with ``add_generation_prompt``. ``spans``: the 256 ids inside each ``<img>...</img>``
    of these messages, in order.

    Raises:
        InvalidInputError: the spans found are not one per image.
    """
    encoding = _encoder(tokenizer)
    newline = _encode_content("\n", encoding, tokens)
    ids: list[int] = []
    for role, content in messages:
        ids += [tokens.im_start, *_encode_content(role, encoding, tokens), *newline]
        ids += [*_encode_content(content, encoding, tokens), tokens.im_end, *newline]
    if add_generation_prompt:
        ids += [tokens.im_start, *_encode_content("assistant", encoding, tokens), *newline]
    out: list[int] = []
    found = i = 0
    while i < len(ids):
        if ids[i] != tokens.img_start:
            out.append(ids[i])
            i += 1
            continue
        end = ids.index(tokens.img_end, i + 1) if tokens.img_end in ids[i + 1 :] else len(ids)
        if found < len(spans):
            out += [tokens.img_start, *spans[found], tokens.img_end]
        found += 1
        i = end + 1
    if found != len(spans):
        raise InvalidInputError(
            f"the prompt has {found} image spans for {len(spans)} images; is the tokenizer's "
            "<img> handling the Qwen-VL one?"
        )
    return out


def pads_span(tokens: QwenVLTokens) -> list[int]:
    """The pixels form's span: 256 ``<imgpad>`` (vLLM's replacement; the image's embeddings
    go there)."""
    return [tokens.img_pad] * IMAGE_SPAN


def path_span(path: str, tokens: QwenVLTokens) -> list[int]:
    """The path form's span, as ``QWenTokenizer.tokenize`` writes it: one id per UTF-8 byte
    of ``path`` (the id is the byte's value), then ``<imgpad>`` up to 256.

    Raises:
        InvalidInputError: ``path`` longer than :data:`MAX_PATH_BYTES` bytes.
    """
    data = path.encode("utf-8")
    if len(data) > MAX_PATH_BYTES:
        raise InvalidInputError(
            f"the image path is {len(data)} bytes, above the {MAX_PATH_BYTES} an <img> span "
            "carries; use a shorter image_dir (the file name takes 52)"
        )
    return [*data, *[tokens.img_pad] * (IMAGE_SPAN - len(data))]


def pixel_values(
    images: Sequence[Image.Image], preset: Preset, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Resized RGB images -> ``(N, 3, H, W)`` pixels, as torchvision's ``ToTensor`` +
    ``Normalize(mean, std)`` compute them: float32 ``x / 255``, minus the mean, divided by
    the std (the same operations in the same order, so equal bit for bit), then cast to
    ``dtype``. ``H, W`` = ``preset.image_size`` (every image was squashed to it).
    """
    height, width = preset.image_size or (0, 0)
    out = torch.empty((len(images), 3, height, width), dtype=dtype)
    mean = torch.tensor(preset.image_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(preset.image_std, dtype=torch.float32)[:, None, None]
    for i, image in enumerate(images):
        if (image.height, image.width) != (height, width) or image.mode != "RGB":
            raise InvalidInputError(
                f"image {i} is {image.mode} {image.width}x{image.height}, expected RGB "
                f"{width}x{height}"
            )
        array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
        values = array.permute(2, 0, 1).to(torch.float32).div(255)
        out[i] = values.sub_(mean).div_(std).to(dtype)
    return out


def write_images(images: Sequence[Image.Image], directory: str | os.PathLike[str]) -> list[str]:
    """Write each image as a PNG into ``directory`` (which must exist); return the absolute
    paths, one per image, named by content (``vlprep-<sha256 of the PNG, 40 hex>.png``).

    Each file is written under a temporary name and renamed into place, mode 0600; a file of
    the same name (the same pixels) is replaced. Nothing is deleted: the caller owns
    ``directory`` and removes the files once the model has read them.

    Raises:
        InvalidInputError: ``directory`` is not an existing directory, or a path would be
            longer than :data:`MAX_PATH_BYTES` bytes or holds an image tag.
    """
    root = Path(os.path.abspath(os.fspath(directory)))
    if not root.is_dir():
        raise InvalidInputError(
            f"image_dir {str(root)[:120]!r} is not an existing directory; create it (e.g. "
            "tempfile.TemporaryDirectory()) and keep it until the model has read the images"
        )
    paths: list[str] = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        path = root / f"vlprep-{hashlib.sha256(data).hexdigest()[:40]}.png"
        text = str(path)
        if len(text.encode("utf-8")) > MAX_PATH_BYTES or any(
            tag in text for tag in (*_IMAGE_ST, "<|")
        ):
            raise InvalidInputError(
                f"image_dir gives paths of {len(text.encode('utf-8'))} bytes; an <img> span "
                f"carries at most {MAX_PATH_BYTES} bytes and no tags: use a shorter directory"
            )
        temporary = root / f".{path.name}.{os.getpid()}.{id(data):x}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        paths.append(text)
    return paths
