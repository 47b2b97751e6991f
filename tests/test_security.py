"""Hostile-input catalogue rows not pinned elsewhere, memory cases under RLIMIT_AS, and the
message rules across every hostile case (docs/security.md maps each catalogue row to its test).

Network: only servers on 127.0.0.1 started here; an autouse guard fails any other connect.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from fuzz.harness import check_message
from tests.conftest import encode, media_dir, photo
from tests.media_server import serving
from vlprep import fetch_image
from vlprep._decode.image import decode_image, probe_header
from vlprep._decode.video import _source, probe_video
from vlprep._errors import (
    DecodeError,
    FetchTooLargeError,
    InvalidInputError,
    ResourceLimitError,
    SourceNotAllowedError,
    VlprepError,
)
from vlprep._sources import FetchPolicy, fetch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if not ipaddress.ip_address(address[0]).is_loopback:
            pytest.fail(f"connection attempt outside loopback: {address!r}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


def png_header(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG whose IHDR claims ``width x height`` with a tiny IDAT (a pixel bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + extra
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------- rows without another test


def test_row01_empty_data_uri_payload() -> None:
    with pytest.raises(DecodeError, match="empty image data"):
        fetch_image({"image": "data:image/png;base64,"})


def test_row10_many_frame_gif_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [Image.new("L", (8, 8), (i * 37) % 256) for i in range(3000)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    seeks: list[int] = []
    real_seek = GifImagePlugin.GifImageFile.seek

    def counting_seek(self: Any, frame: int) -> None:
        seeks.append(frame)
        real_seek(self, frame)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "seek", counting_seek)
    header = probe_header(data)
    image = decode_image(data)
    assert header.frames == 2  # "animated", never counted
    assert image.size == (8, 8)
    assert max(seeks, default=0) <= 1  # at most one frame ahead, not 3000


def test_row24_file_url_with_a_host_under_a_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / "host").mkdir(parents=True)
    (root / "host" / "x.png").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)  # file://host/x is the relative path host/x, outside root
    with pytest.raises(SourceNotAllowedError, match="outside the allowed root"):
        fetch("file://host/x.png", FetchPolicy.strict(local_root=str(root)))


def test_row25_fifo_swapped_in_after_the_check_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Any look at the path says "regular file", as it would have just before a swap: the
    # decision must come from the opened descriptor (there is no separate path check).
    real_stat, regular = os.stat, os.stat(__file__)

    def stat_says_regular(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        return regular if str(path) == str(fifo) else real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_says_regular)
    for policy in (FetchPolicy(), FetchPolicy.strict(local_root=str(tmp_path))):
        start = time.monotonic()
        with pytest.raises(InvalidInputError, match="not a regular file"):
            fetch(str(fifo), policy)
        assert time.monotonic() - start < 2.0  # neither blocked on open nor read forever


def test_row25_video_path_swapped_to_a_fifo_is_not_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    real_stat = os.stat
    regular = real_stat(__file__)

    def stat_says_regular(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        return regular if str(path) == str(fifo) else real_stat(path, *args, **kwargs)

    monkeypatch.setattr(_source.os, "stat", stat_says_regular)  # the check saw a file
    start = time.monotonic()
    with pytest.raises(InvalidInputError, match="not a regular file"):
        probe_video(str(fifo))
    assert time.monotonic() - start < 2.0


@pytest.mark.timeout(20)
def test_row36_html_page_with_status_200_is_a_decode_error() -> None:
    page = b"<!doctype html><html><body>Not found</body></html>"
    with (
        serving({"page.jpg": page}) as server,
        pytest.raises(DecodeError, match="not a recognised image") as info,
    ):
        fetch_image({"image": server.url("f", "page.jpg")})
    assert "html" not in str(info.value).lower()


def test_row21_non_image_media_type_in_an_image_slot() -> None:
    jpeg = base64.b64encode(encode(photo(32, 32), "JPEG")).decode()
    assert fetch_image({"image": f"data:image/png;base64,{jpeg}"}).size == (56, 56)
    for media_type in ("text/html", "video/mp4", "application/octet-stream"):
        with pytest.raises(InvalidInputError, match="not an image type"):
            fetch_image({"image": f"data:{media_type};base64,{jpeg}"})


# ----------------------------------------------------------------- memory cases (RLIMIT_AS)

_MEMORY_CHILD = r"""
import base64, http.server, ipaddress, json, os, resource, socket, sys, threading, zlib

import vlprep  # imports (torch included) happen before the cap
from vlprep import fetch_image
from vlprep._sources import FetchPolicy, fetch
from vlprep._video import fetch_video
from vlprep._errors import VlprepError

real_connect = socket.create_connection
def guarded(address, *args, **kwargs):
    if not ipaddress.ip_address(address[0]).is_loopback:
        raise SystemExit(f"connection outside loopback: {address!r}")
    return real_connect(address, *args, **kwargs)
socket.create_connection = guarded

def _gzip_bomb():  # 256 MiB of zeros, compressed a MiB at a time (no big buffer here)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    return b"".join([z.compress(chunk) for _ in range(256)] + [z.flush()])
GZIP_BOMB = _gzip_bomb()

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args): pass
    def do_GET(self):
        self.send_response(200)
        if self.path == "/gzip":
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(GZIP_BOMB)))
            self.end_headers()
            self.wfile.write(GZIP_BOMB)
            return
        self.send_header("Content-Length", str(10 << 30) if self.path == "/declared" else "")
        self.end_headers()
        try:
            while True:  # endless body: 10 GB if nobody stops reading
                self.wfile.write(b"\0" * 65536)
        except OSError:
            pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_address[1]}"

def statm():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")

_, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (statm() + (768 << 20), hard))

cases = json.loads(sys.argv[1])
policy = FetchPolicy(max_image_bytes=8 << 20)
results = {}
for name, spec in cases.items():
    uri = "data:image/png;base64," + "A" * spec[1] if spec[0] == "base64" else None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        if spec[0] == "image_file":
            fetch_image({"image": spec[1]})
        elif spec[0] == "image_url":
            fetch_image({"image": base + spec[1]}, policy=policy)
        elif spec[0] == "base64":
            fetch_image({"image": uri})
        elif spec[0] == "frame_list":
            pixel = spec[1]
            fetch_video({"video": [pixel] * spec[2]})
        results[name] = ["ok", 0]
    except VlprepError as exc:
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        results[name] = [type(exc).__name__, grown * 1024]
    except MemoryError:
        results[name] = ["MemoryError", 0]
print(json.dumps(results))
"""


@pytest.mark.timeout(120)
def test_memory_cases_fail_cleanly_under_rlimit_as(tmp_path: Path) -> None:
    """Rows 7, 8, 9, 10, 22, 33, 35, 48 in one child capped at its size + 768 MiB."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(30_000, 30_000))
    hundred_mp = tmp_path / "100mp.png"
    hundred_mp.write_bytes(png_header(10_000, 10_000))
    ztxt = zlib.compress(b"\0" * (100 << 20), 9)
    text_bomb = tmp_path / "ztxt.png"
    body = b"zTXt" + b"Comment\x00\x00" + ztxt
    text_chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    text_bomb.write_bytes(png_header(16, 16, text_chunk))
    pixel = "data:image/png;base64," + base64.b64encode(encode(photo(4, 4), "PNG")).decode()
    cases = {  # network cases first: ru_maxrss is a peak, the 200 MB string would hide them
        "row33 endless body": ["image_url", "/endless"],
        "row33 10 GB Content-Length": ["image_url", "/declared"],
        "row35 gzip bomb": ["image_url", "/gzip"],
        "row07 30000x30000 PNG": ["image_file", str(bomb)],
        "row08 100 MP PNG": ["image_file", str(hundred_mp)],
        "row09 100 MB zTXt": ["image_file", str(text_bomb)],
        "row10 GIF bomb": ["image_file", str(media_dir() / "hostile/decompression_bomb.gif")],
        "row22 200 MB base64": ["base64", 200 << 20],
        "row48 10000-item frame list": ["frame_list", pixel, 10_000],
    }
    expected = {
        "row07 30000x30000 PNG": "ResourceLimitError",
        "row08 100 MP PNG": "ResourceLimitError",
        "row09 100 MB zTXt": "DecodeError",
        "row10 GIF bomb": "ResourceLimitError",
        "row22 200 MB base64": "FetchTooLargeError",
        "row33 endless body": "FetchTooLargeError",
        "row33 10 GB Content-Length": "FetchTooLargeError",
        "row35 gzip bomb": "FetchTooLargeError",
        "row48 10000-item frame list": "ResourceLimitError",
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=110,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"child died ({proc.returncode}): {proc.stderr[-2000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {name: kind for name, (kind, _) in results.items()} == expected
    for name in ("row33 endless body", "row35 gzip bomb", "row22 200 MB base64"):
        # the cap is 8 MiB: the peak grows by about the cap, never by the 10 GB / 256 MiB
        # body; a 200 MB data: URI is refused without being copied or decoded
        assert results[name][1] < 32 << 20, f"{name}: peak RSS grew {results[name][1]} bytes"


# ----------------------------------------------------------------- messages are our own

_DATA_B64 = base64.b64encode(os.urandom(300)).decode()
_MESSAGE_CASES: list[tuple[str, Any]] = [
    ("image", b""),
    ("image", b"\x00" * 100),
    ("image", b"<html><body>" + b"A" * 300 + b"</body></html>"),
    ("image", encode(photo(40, 30), "JPEG")[:300]),
    ("image", png_header(30_000, 30_000)),
    ("image", png_header(100_000, 1)),
    ("image", b"GIF89a" + os.urandom(200)),
    ("image", b"\x89PNG\r\n\x1a\n" + os.urandom(200)),
    ("image", b"\xff\xd8\xff" + os.urandom(300)),
    ("image", b"RIFF\x00\x00\x00\x00WEBP" + os.urandom(100)),
    ("image", b"BM" + os.urandom(200)),
    ("video", b"\x00\x00\x00\x18ftypmp42" + os.urandom(300)),
    ("video", b"\x1a\x45\xdf\xa3" + os.urandom(300)),
    ("video", b"RIFF\x00\x00\x00\x00AVI " + os.urandom(300)),
    ("video", b"#EXTM3U\n#EXT-X-TARGETDURATION:1\nhttp://evil.test/a.ts\n"),
    ("source", f"data:image/png;base64,{_DATA_B64}!"),
    ("source", f"data:text/html;base64,{_DATA_B64}"),
    ("source", f"data:image/png;BASE64,{_DATA_B64}"),
    ("source", f"data:image/png,{_DATA_B64}"),
    ("source", f"data:image/png;base64 {_DATA_B64}"),
    ("source", "data:image/png\x1b[31m;evil\r\nX: y;base64," + _DATA_B64 + "\n"),
    ("source", _DATA_B64 * 3),
    ("source", "http://allowed.test\\@evil.test/" + "x" * 300),
    ("source", "http://169.254.169.254/latest/meta-data/" + "y" * 300),
    ("source", "http://[::ffff:127.0.0.1]/" + "z" * 200),
    ("source", "gopher://evil.test/" + _DATA_B64),
    ("source", "file:///etc/passwd"),
    ("source", "/etc/" + "p" * 400),
    ("source", "/dev/zero"),
]


def _hostile_cases() -> list[tuple[str, Any]]:
    hostile = sorted((media_dir() / "hostile").iterdir())
    return _MESSAGE_CASES + [("image", p.read_bytes()) for p in hostile]


@pytest.mark.timeout(60)
def test_no_hostile_case_leaks_payload_base64_or_addresses() -> None:
    strict = FetchPolicy.strict()
    failures = 0
    for kind, value in _hostile_cases():
        try:
            if kind == "image":
                decode_image(value)
            elif kind == "video":
                probe_video(value)
            else:
                fetch(value, strict if value.startswith("http") else FetchPolicy(), "image")
        except VlprepError as exc:
            failures += 1
            check_message(exc, value)
            text = str(exc)
            assert not re.search(r"0x[0-9a-f]{6,}|object at|BytesIO", text), text
            assert not any(c in text for c in "\x1b\r\n"), f"control character in {text!r}"
            if isinstance(value, str) and (value.startswith("data:") or value[:5] == _DATA_B64[:5]):
                # data: payloads and raw base64 never appear (URLs are only truncated)
                assert _DATA_B64[:16] not in text and _DATA_B64[-16:] not in text
        except Exception as exc:  # anything else is a bug in itself
            pytest.fail(f"{kind} case raised {type(exc).__name__}, not a VlprepError")
    assert failures >= len(_MESSAGE_CASES) - 1  # at most the decodable hostile files pass


def test_errors_chain_the_library_exception() -> None:
    with pytest.raises(DecodeError) as info:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    assert info.value.__cause__ is not None  # kept for debugging, not copied into the text
    assert "object at" not in str(info.value)


def test_size_refused_from_encoded_length() -> None:
    with pytest.raises(FetchTooLargeError, match="cap of 1000 bytes"):
        fetch("data:image/png;base64," + "A" * 4000, FetchPolicy(max_image_bytes=1000))


def test_aspect_ratio_from_the_header_of_a_fetched_source() -> None:
    uri = "data:image/png;base64," + base64.b64encode(png_header(100_000, 1)).decode()
    with pytest.raises(ResourceLimitError, match="aspect ratio"):
        fetch_image({"image": uri})


def test_row12_adobe_inverted_cmyk_jpeg_gives_the_right_colours() -> None:
    rgb = photo(64, 48)
    data = encode(rgb.convert("CMYK"), "JPEG", quality=95)
    assert b"Adobe" in data[:200]  # Pillow writes the Adobe APP14 marker (inverted CMYK)
    out = decode_image(data)
    diff = np.abs(np.asarray(out, dtype=int) - np.asarray(rgb, dtype=int))
    assert out.mode == "RGB" and diff.mean() < 6


# ----------------------------------------------------------------- docs/security.md stays true

DOC = ROOT / "docs" / "security.md"


def test_catalogue_table_names_real_tests() -> None:
    text = DOC.read_text()
    table = text[text.index("## Catalogue → tests") : text.index("Row notes")]
    rows = re.findall(r"^\| (\d+) \|[^|]*\|(.*)\|$", table, re.M)
    assert [int(n) for n, _ in rows] == list(range(1, 50))  # every catalogue row, in order
    missing = []
    for number, cell in rows:
        refs = re.findall(r"`(test_\w+\.py)::(test_\w+)`", cell)
        assert refs or "memory" in cell, f"row {number} names no test"
        for file, name in refs:
            source = (ROOT / "tests" / file).read_text()
            if not re.search(rf"^def {name}\(", source, re.M):
                missing.append(f"row {number}: {file}::{name}")
    assert not missing, missing


def _recipe() -> dict[str, Any]:
    text = DOC.read_text()
    start = text.index("```python\n", text.index("## Running vlprep behind a server"))
    code = text[start + len("```python\n") : text.index("```\n", start + 10)]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def test_server_recipe() -> None:
    load_vision = _recipe()["load_vision"]
    png = base64.b64encode(encode(photo(40, 30), "PNG")).decode()

    def conversation(source: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"type": "image", "image": source}]}]

    status, images, videos = load_vision(conversation(f"data:image/png;base64,{png}"))
    assert status == 200 and images[0].size == (84, 56) and videos is None
    for source, expected in [
        ("http://169.254.169.254/latest/meta-data/", 400),
        ("/etc/passwd", 400),
        ("http://127.0.0.1:9/x.png", 400),
        ("data:image/png;base64,AAAA", 422),
    ]:
        status, message, _ = load_vision(conversation(source))
        assert status == expected, (source, message)
        check_message(ValueError(message), source)
