"""Property: hostile chat messages give a result or a vlprep error, never a bare builtin.

Red-team finding 5. A Hypothesis strategy builds messages an untrusted client could send
(wrong types at every level, NULs, lone surrogates, huge and non-finite numbers, bad base64,
refused URLs, mixed frame lists, odd PIL images, arrays and tensors) and both entry points,
:func:`vlprep.process_vision_info` and :func:`vlprep.build_inputs`, must either return or
raise a :class:`vlprep._errors.VlprepError` subclass.

Sources are local only: the policy allows ``data:`` and files under a temporary folder, so
an ``http(s)`` URL is refused before any connection is tried (the fuzz never touches the
network). The output caps are lowered (``ImageOptions.max_output_pixels``,
``VideoOptions.max_output_*``) so that a valid but large ``resized_height`` costs
milliseconds; the checks behind them are the same.

In the suite this runs the ``fuzz-messages`` profile (a few hundred derandomized examples,
so CI is reproducible); ``make fuzz-messages FUZZ_EXAMPLES=30000`` runs the
``fuzz-messages-scale`` profile (random seed, ``VLPREP_FUZZ_EXAMPLES`` examples), both
registered in ``tests/conftest.py``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import traceback
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import FUZZ_MESSAGES_PROFILE, media_dir
from tests.hf_fixtures import make_processor
from tests.videos import write_clip
from vlprep import (
    FetchPolicy,
    ImageOptions,
    MediaCache,
    VideoOptions,
    build_inputs,
    process_vision_info,
)
from vlprep._errors import VlprepError

# --------------------------------------------------------------------------- tiny media


def _encoded(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _gradient(width: int, height: int, mode: str = "RGB") -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 37 % 256, y * 53 % 256, (x + y) * 11 % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(arr).convert(mode)


PNG = _encoded(_gradient(9, 7), "PNG")
JPEG = _encoded(_gradient(33, 20), "JPEG", quality=80)
PNG_RGBA = _encoded(_gradient(5, 5, "RGBA"), "PNG")
GIF = _encoded(_gradient(12, 3, "P"), "GIF")
WIDE_PNG = _encoded(_gradient(600, 2), "PNG")  # aspect ratio 300
IMAGE_BYTES = (PNG, JPEG, PNG_RGBA, GIF, WIDE_PNG)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


GOOD_DATA_URIS = [
    f"data:image/png;base64,{_b64(PNG)}",
    f"data:image/jpeg;base64,{_b64(JPEG)}",
    f"data:image/png;base64,{_b64(PNG_RGBA)}",
    f"data:image/gif;base64,{_b64(GIF)}",
    f"data:image;base64,{_b64(PNG)}",  # qwen-vl-utils' own form
]
BAD_DATA_URIS = [
    "data:image/png;base64,!!!!",
    "data:image/png;base64,",
    "data:image/png;base64,=",
    "data:image/png;base64,QUJD",  # valid base64, not an image
    f"data:image/png;base64,{_b64(PNG)[:-7]}",  # cut base64
    f"data:image/png;base64,{_b64(PNG[: len(PNG) // 2])}",  # truncated PNG
    f"data:image/png;base64,{_b64(JPEG)}",  # mislabelled
    f"data:image/svg+xml;base64,{_b64(b'<svg/>')}",
    "data:text/plain;base64,aGVsbG8=",
    "data:,",
    "data:",
    "data:image/png,rawbytes",
    "data:image/png;charset=utf-8;base64,QUJD",
    f"DATA:IMAGE/PNG;BASE64,{_b64(PNG)}",
    "data:image/png;base64,\x00\x00",
    "data:image/png;base64,\udc80",
    "data:video/mp4;base64,AAAA",
]
REMOTE_OR_ODD = [
    "http://127.0.0.1:9/x.jpg",
    "https://example.invalid/a.png",
    "HTTP://EXAMPLE.INVALID/A.PNG",
    "https://user:pass@example.invalid/v.mp4?X-Amz-Signature=abc#frag",
    "http://[::1",
    "ftp://example.invalid/y.png",
    "s3://bucket/key.jpg",
    "javascript:alert(1)",
    "",
    " ",
    ".",
    "/",
    "/etc/passwd",
    "../../etc/passwd",
    "~/.ssh/id_rsa",
    "C:\\x.jpg",
    "\\\\server\\share\\x.png",
    "file:///etc/passwd",
    "file://host/x.png",
    "file:",
    "file://",
    "/tmp/a\x00b.jpg",
    "file:///tmp/a\x00b.jpg",
    "\udc80.png",
    "x" * 5000 + ".png",
    _b64(PNG),  # raw base64, no data: prefix
]


@dataclass(frozen=True)
class Local:
    """A file in the fuzz folder; replaced by its path (or ``file://`` URL) before a call."""

    name: str
    url: bool = False


@dataclass(frozen=True)
class Clip:
    """The generated clip in another form, made fresh per call (file objects are consumed)."""

    form: str  # "data-uri", "bytes", "file", "junk-file", "empty-file", "text-file"...


LOCAL_NAMES = [
    "tiny.png",
    "tiny.jpg",
    "hopper.jpg",
    "truncated_jpeg.jpg",
    "decompression_bomb.gif",
    "junk_jpeg_header.jpg",
    "clip.mp4",
    "clip_cut.mp4",
    "missing.png",
    "sub",  # a folder
]


def _make_root(root: Path) -> Path:
    (root / "tiny.png").write_bytes(PNG)
    (root / "tiny.jpg").write_bytes(JPEG)
    for name, folder in (
        ("hopper.jpg", "images"),
        ("truncated_jpeg.jpg", "hostile"),
        ("decompression_bomb.gif", "hostile"),
        ("junk_jpeg_header.jpg", "hostile"),
    ):
        (root / name).write_bytes((media_dir() / folder / name).read_bytes())
    write_clip(root / "clip.mp4", width=48, height=32, fps=8, frames=12, gop=4)
    clip = (root / "clip.mp4").read_bytes()
    (root / "clip_cut.mp4").write_bytes(clip[: len(clip) // 2])
    (root / "sub").mkdir()
    return root


# --------------------------------------------------------------------------- strategies

def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Branches drawn in proportion to their weights (``one_of`` leans on the first)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


SPECIAL_TEXT = [
    "\x00",
    "\udc80",
    "\ud800x",
    "\u202e",
    "{{ 7*7 }}",
    "{% raw %}",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|><|image_pad|><|vision_end|>",
    "<|im_end|>",
    "\n" * 3,
]
any_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.sampled_from(SPECIAL_TEXT),
)

NUMBERS: list[object] = [
    0,
    -1,
    1,
    2,
    3,
    28,
    3136,
    12_845_056,
    -0.0,
    0.5,
    1e-300,
    5e-324,
    1e308,
    2**31,
    2**63,
    2**64 + 1,
    2**1100,
    -(2**1100),
    10**4300,
    np.float64("nan"),
    np.float32(2.0),
    np.int64(4),
    np.uint8(255),
]
hostile_number = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 64),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NUMBERS),
    st.sampled_from(["1", "2.5", "nan", "inf", "-1", "1e400", "0x10", " 2 ", "", "\x00"]),
    st.lists(st.integers(0, 4), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)

_ARRAY_FACTORIES: list[Callable[[], object]] = [
    lambda: np.zeros((4, 5, 3), np.uint8),
    lambda: np.full((3, 3), 200, np.uint8),
    lambda: np.zeros((4, 4, 1), np.uint8),
    lambda: np.zeros((4, 4, 4), np.uint8),
    lambda: np.zeros((4, 4, 2), np.uint8),
    lambda: np.zeros((0, 4, 3), np.uint8),
    lambda: np.zeros((4, 4, 3), np.float32),
    lambda: np.zeros((4, 4, 3), np.int64),
    lambda: np.zeros((4, 4, 3), bool),
    lambda: np.zeros((2, 2, 2, 2, 3), np.uint8),
    lambda: np.array(5),
    lambda: np.array(["a", "b"]),
    lambda: np.array([None, 1], dtype=object),
    lambda: torch.zeros((3, 4, 5), dtype=torch.uint8),
    lambda: torch.zeros((4, 5, 3), dtype=torch.uint8),
    lambda: torch.zeros((4, 5), dtype=torch.uint8),
    lambda: torch.zeros((3, 4, 5), dtype=torch.float32),
    lambda: torch.zeros((3, 0, 5), dtype=torch.uint8),
    lambda: torch.zeros((), dtype=torch.uint8),
    lambda: torch.zeros((2, 3, 3, 2, 2), dtype=torch.uint8),
]
_PIL_FACTORIES: list[Callable[[], object]] = [
    lambda: _gradient(8, 6),
    lambda: _gradient(8, 6, "RGBA"),
    lambda: _gradient(8, 6, "P"),
    lambda: _gradient(8, 6, "L"),
    lambda: _gradient(8, 6, "LA"),
    lambda: _gradient(8, 6, "1"),
    lambda: _gradient(8, 6, "I"),
    lambda: _gradient(8, 6, "F"),
    lambda: _gradient(8, 6, "CMYK"),
    lambda: _gradient(8, 6, "YCbCr"),
    lambda: _gradient(8, 6, "HSV"),
    lambda: _gradient(8, 6, "I;16"),
    lambda: Image.new("RGB", (0, 0)),
    lambda: Image.new("RGB", (1, 0)),
    lambda: Image.new("RGB", (1, 1)),
    lambda: Image.new("L", (1, 700)),
]
_VIDEO_ARRAYS: list[Callable[[], object]] = [
    lambda: np.zeros((3, 16, 20, 3), np.uint8),
    lambda: np.zeros((2, 3, 16, 20), np.uint8),
    lambda: np.zeros((2, 16, 20, 1), np.uint8),
    lambda: np.zeros((2, 16, 20, 4), np.uint8),
    lambda: np.zeros((0, 16, 20, 3), np.uint8),
    lambda: np.zeros((2, 16, 20, 3), np.float32),
    lambda: np.zeros((16, 20, 3), np.uint8),
    lambda: torch.zeros((2, 3, 16, 20), dtype=torch.uint8),
    lambda: torch.zeros((2, 16, 20, 3), dtype=torch.uint8),
    lambda: torch.zeros((2, 3, 0, 20), dtype=torch.uint8),
]


class _TextReader:
    """A file object whose ``read`` returns text, not bytes."""

    def read(self, size: int = -1) -> str:
        return "not bytes"


class _ReadAttribute:
    read = 5


CLIP_FORMS: dict[str, Callable[[bytes], object]] = {
    "data-uri": lambda clip: "data:video/mp4;base64," + _b64(clip),
    "bytes": lambda clip: clip,
    "file": io.BytesIO,
    "junk-file": lambda _: io.BytesIO(b"\x00\x00\x00\x18ftypmp42junk"),
    "empty-file": lambda _: io.BytesIO(b""),
    "string-io": lambda _: io.StringIO("text"),
    "text-reader": lambda _: _TextReader(),
    "read-attribute": lambda _: _ReadAttribute(),
}


junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(),
        any_text,
        st.binary(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner, max_size=3),
    ),
    max_leaves=6,
)


def _built(factories: list[Callable[[], object]]) -> st.SearchStrategy[object]:
    return st.sampled_from(factories).map(lambda make: make())


local_source = st.builds(Local, st.sampled_from(LOCAL_NAMES), st.booleans())
image_source: st.SearchStrategy[object] = _weighted(
    (6, st.sampled_from(GOOD_DATA_URIS)),
    (4, local_source),
    (2, st.sampled_from(IMAGE_BYTES)),
    (2, _built(_PIL_FACTORIES)),
    (2, _built(_ARRAY_FACTORIES)),
    (2, st.sampled_from(BAD_DATA_URIS)),
    (2, st.sampled_from(REMOTE_OR_ODD)),
    (1, st.sampled_from(IMAGE_BYTES).map(bytearray)),
    (1, st.sampled_from(IMAGE_BYTES).map(lambda b: memoryview(b[: max(1, len(b) // 3)]))),
    (1, st.binary(max_size=48)),
    (1, any_text),
    (1, st.fixed_dictionaries({"url": st.one_of(st.sampled_from(GOOD_DATA_URIS), local_source)})),
    (1, st.fixed_dictionaries({"url": junk})),
    (1, st.dictionaries(st.text(max_size=4), junk, max_size=2)),
    (1, junk),
)

IMAGE_KEYS = ["min_pixels", "max_pixels", "resized_height", "resized_width"]
VIDEO_NUMBER_KEYS = [
    "fps",
    "nframes",
    "min_frames",
    "max_frames",
    "video_start",
    "video_end",
    "min_pixels",
    "max_pixels",
    "total_pixels",
    "resized_height",
    "resized_width",
    "sample_fps",
    "raw_fps",
]
TYPES = ["image", "image_url", "video", "video_url", "text", "imgae", "", "IMAGE"]
type_value = st.one_of(st.sampled_from(TYPES), junk)
# Plausible values for a key most of the time, hostile ones otherwise.
pixels_value = _weighted(
    (5, st.sampled_from([3136, 50_176, 65_536, 200_000, None])), (2, hostile_number)
)
side_value = _weighted((5, st.sampled_from([28, 56, 100, 224, 30, None])), (2, hostile_number))
rate_value = _weighted((5, st.sampled_from([1, 2, 4.0, 0.5, "1", None])), (2, hostile_number))


@st.composite
def image_element(draw: st.DrawFn) -> dict[object, object]:
    ele: dict[object, object] = {}
    if draw(st.booleans()):
        ele["type"] = draw(type_value)
    key = draw(st.sampled_from(["image", "image", "image_url", "image_url", None]))
    if key is not None:
        ele[key] = draw(image_source)
    for name in IMAGE_KEYS:
        if draw(st.integers(0, 4)) == 4:
            ele[name] = draw(side_value if name.startswith("resized") else pixels_value)
    if draw(st.integers(0, 9)) == 9:
        ele[draw(st.one_of(st.text(max_size=10), st.integers(), st.none()))] = draw(junk)
    if draw(st.integers(0, 14)) == 14:
        ele["video"] = draw(video_source)
    return ele


frame_list = st.lists(
    st.one_of(
        st.sampled_from(GOOD_DATA_URIS),
        st.sampled_from([Local("tiny.png"), Local("tiny.jpg", True), Local("hopper.jpg")]),
        image_source,
    ),
    max_size=5,
)


video_source: st.SearchStrategy[object] = _weighted(
    (4, st.builds(Local, st.sampled_from(["clip.mp4", "clip_cut.mp4"]), st.booleans())),
    (2, st.sampled_from(["data-uri", "bytes"]).map(Clip)),
    (3, frame_list),
    (1, frame_list.map(tuple)),
    (1, st.sampled_from(sorted(CLIP_FORMS)).map(Clip)),
    (2, _built(_VIDEO_ARRAYS)),
    (1, image_source),
)


@st.composite
def video_element(draw: st.DrawFn) -> dict[object, object]:
    ele: dict[object, object] = {}
    if draw(st.booleans()):
        ele["type"] = draw(type_value)
    key = draw(st.sampled_from(["video", "video", "video_url", None]))
    if key is not None:
        ele[key] = draw(video_source)
    for name in VIDEO_NUMBER_KEYS:
        if draw(st.integers(0, 5)) == 5:
            if "pixels" in name:
                ele[name] = draw(pixels_value)
            elif name.startswith("resized"):
                ele[name] = draw(side_value)
            else:
                ele[name] = draw(rate_value)
    if draw(st.integers(0, 9)) == 9:
        ele[draw(st.one_of(st.text(max_size=10), st.integers(), st.none()))] = draw(junk)
    return ele


text_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": any_text}),
    st.fixed_dictionaries({"type": st.just("text"), "text": junk}),
    st.fixed_dictionaries({"type": type_value}),
)
content_part = _weighted(
    (4, image_element()),
    (3, video_element()),
    (2, text_part),
    (1, junk),
)
parts = st.lists(content_part, min_size=1, max_size=4)
content = _weighted(
    (12, parts),
    (1, any_text),
    (1, st.none()),
    (1, st.lists(content_part, max_size=2).map(tuple)),
    (1, junk),
)
role = st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), junk)


@st.composite
def message(draw: st.DrawFn) -> object:
    # Hypothesis favours the first choices: 0 is an ordinary message.
    shape = draw(st.integers(0, 19))
    if shape == 15:
        return draw(junk)
    out: dict[object, object] = {}
    if shape != 16:
        out["role"] = draw(role)
    if shape != 17:
        out["content"] = draw(content)
    if shape == 18:
        out[draw(st.text(max_size=6))] = draw(junk)
    if shape == 19:
        return types.MappingProxyType(out)
    return out


conversation = st.lists(message(), min_size=1, max_size=3)
conversations = _weighted(
    (12, conversation),
    (2, st.lists(conversation, min_size=1, max_size=2)),
    (1, st.lists(message(), max_size=1)),
    (1, conversation.map(tuple)),
    (1, junk),
)

call_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "return_video_kwargs": st.booleans(),
        "return_video_metadata": st.booleans(),
        "image_patch_size": st.one_of(
            st.sampled_from([14, 16, 1, 0, -1, True, 2.5, "14", None, 10**6, 10**200]),
        ),
        "workers": st.sampled_from([1, 2, 0, -3, True, 1.5, "2"]),
    },
)
build_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "add_generation_prompt": st.booleans(),
        "padding_side": st.sampled_from(["left", "right", "middle", None, 0]),
        "max_length": st.sampled_from([None, 1, 64, 10**6, 0, -1, True, 2.5, "64", 10**400]),
        "qwen3_video_text": st.sampled_from(["auto", "wrapped", "unwrapped", "transformers", "x"]),
        "dtype": st.sampled_from([None, "bfloat16", torch.float16, torch.int8, "nope", 5]),
        "workers": st.sampled_from([1, 2, 0, True]),
        "chat_template_kwargs": st.sampled_from([None, {}, {"add_vision_id": True}, [], "x"]),
        "device": st.sampled_from([None, "cpu", "cuda", "nope", 5]),
        "preset": st.sampled_from([None, "qwen2-vl", "qwen3-vl", "qwen9", 5]),
    },
)
FAMILIES = ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")


# --------------------------------------------------------------------------- the property


@dataclass(frozen=True)
class FuzzWorld:
    root: Path
    clip: bytes
    policy: FetchPolicy
    processors: dict[str, Any]
    cache: MediaCache

    def __repr__(self) -> str:  # keeps Hypothesis' failure report readable
        return f"FuzzWorld({self.root})"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> FuzzWorld:
    root = _make_root(tmp_path_factory.mktemp("fuzz-root"))
    policy = FetchPolicy(
        allowed_schemes=frozenset({"data", "file"}),
        allow_local=True,
        local_root=str(root),
        image_deadline=5.0,
        video_deadline=10.0,
    )
    processors = {family: make_processor(family) for family in FAMILIES}
    cache = MediaCache(max_bytes=32 << 20)  # shared by every example: hits across calls too
    return FuzzWorld(root, (root / "clip.mp4").read_bytes(), policy, processors, cache)


IMAGE_OPTIONS = ImageOptions(max_output_pixels=1 << 20)
VIDEO_OPTIONS = VideoOptions(
    max_output_frame_pixels=1 << 18, max_output_pixels=1 << 21, max_list_frames=16
)


def _resolve(value: object, world: FuzzWorld, depth: int = 0) -> object:
    """Replace the strategy's placeholders (``Local``, ``Clip``) with real sources."""
    if isinstance(value, Local):
        path = world.root / value.name
        return path.as_uri() if value.url else str(path)
    if isinstance(value, Clip):
        return CLIP_FORMS[value.form](world.clip)
    if depth > 8:
        return value
    if isinstance(value, list):
        return [_resolve(v, world, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, world, depth + 1) for v in value)
    if isinstance(value, types.MappingProxyType):
        return types.MappingProxyType({k: _resolve(v, world, depth + 1) for k, v in value.items()})
    if isinstance(value, dict):
        return {k: _resolve(v, world, depth + 1) for k, v in value.items()}
    return value


COLLECT = os.environ.get("VLPREP_FUZZ_COLLECT")
"""A file path: record each distinct escape there (one JSON line) and keep going, instead of
failing on the first (``make fuzz-messages`` sets it). Unset in the suite."""
_SEEN: set[tuple[str, str]] = set()


def _safe_repr(value: object, limit: int = 400) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # e.g. a 4,300-digit int
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _record(name: str, exc: BaseException, example: object) -> None:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/vlprep/" in f.filename and "/tests/" not in f.filename]
    where = ours[-1] if ours else frames[-1]
    site = f"{Path(where.filename).name}:{where.lineno} {where.name}"
    signature = (type(exc).__name__, site)
    if signature in _SEEN:
        return
    _SEEN.add(signature)
    last = frames[-1]
    line = {
        "call": name,
        "type": type(exc).__name__,
        "message": str(exc)[:300],
        "vlprep_frame": site,
        "raised_at": f"{last.filename}:{last.lineno} {last.name}",
        "example": _safe_repr(example),
    }
    with open(COLLECT, "a", encoding="utf-8") as log:  # type: ignore[arg-type]
        log.write(json.dumps(line) + "\n")


_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{24,}")
_PAYLOADS = "\n".join(uri.split(",", 1)[1] for uri in GOOD_DATA_URIS + BAD_DATA_URIS if "," in uri)


def _check_message(exc: VlprepError, clip: bytes) -> None:
    """The conventions of every vlprep message: bounded, no object address, no payload."""
    text = str(exc)
    assert len(text) <= 1000, f"a {len(text)}-character message: {text[:200]!r}"
    assert " object at 0x" not in text, f"an object address in {text[:200]!r}"
    for run in _BASE64_RUN.findall(text):
        window = run[:24]
        assert window not in _PAYLOADS and window not in _b64(clip), f"base64 in {text[:200]!r}"


def _only_vlprep_errors(
    name: str, call: Callable[[], object], example: object, world: FuzzWorld
) -> None:
    with warnings.catch_warnings():
        # A warning is not an escape (the suite turns warnings into errors).
        warnings.simplefilter("ignore")
        try:
            call()
            event(f"{name}: returned")
        except VlprepError as exc:
            event(f"{name}: {type(exc).__name__}")
            try:
                _check_message(exc, world.clip)
            except AssertionError as bad:
                if not COLLECT:
                    raise
                _record(name, bad, example)
        except Exception as exc:
            if not COLLECT:
                raise
            _record(name, exc, example)


@settings(settings.get_profile(FUZZ_MESSAGES_PROFILE))
@given(
    messages=conversations,
    kwargs=_weighted((4, st.just({})), (1, call_kwargs)),
    family=st.sampled_from(FAMILIES),
    build=_weighted((4, st.just({})), (1, build_kwargs)),
    cached=st.booleans(),
)
def test_hostile_messages_raise_only_vlprep_errors(
    world: FuzzWorld,
    messages: object,
    kwargs: dict[str, Any],
    family: str,
    build: dict[str, Any],
    cached: bool,
) -> None:
    cache = world.cache if cached else None
    resolved: Any = _resolve(messages, world)
    _only_vlprep_errors(
        "process_vision_info",
        lambda: process_vision_info(
            resolved,
            **kwargs,
            policy=world.policy,
            image_options=IMAGE_OPTIONS,
            video_options=VIDEO_OPTIONS,
            cache=cache,
        ),
        (messages, kwargs, cached),
        world,
    )
    resolved = _resolve(messages, world)  # file objects were consumed
    _only_vlprep_errors(
        "build_inputs",
        lambda: build_inputs(
            resolved,
            world.processors[family],
            **build,
            policy=world.policy,
            image_options=IMAGE_OPTIONS,
            video_options=VIDEO_OPTIONS,
            cache=cache,
        ),
        (messages, family, build, cached),
        world,
    )


def test_http_sources_are_refused_without_a_connection(world: FuzzWorld) -> None:
    """The fuzz's policy: any http(s) URL fails at once with a vlprep error (no network)."""
    from vlprep._errors import SourceNotAllowedError

    for url in ("http://127.0.0.1:9/x.jpg", "https://example.invalid/a.png"):
        with pytest.raises(SourceNotAllowedError):
            process_vision_info(
                [{"role": "user", "content": [{"image": url}]}], policy=world.policy
            )
        with pytest.raises(SourceNotAllowedError):
            process_vision_info(
                [{"role": "user", "content": [{"video": url}]}], policy=world.policy
            )
