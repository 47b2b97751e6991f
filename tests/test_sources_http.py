"""fetch_http against real loopback servers: policy, pinning, redirects, limits, encodings.

No test sends traffic outside 127.0.0.0/8 or ::1: an autouse fixture fails any other connect.
"""

from __future__ import annotations

import gzip
import http.server
import ipaddress
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

import vlprep
from vlprep._errors import (
    FetchError,
    FetchTimeoutError,
    FetchTooLargeError,
    InvalidInputError,
    SourceNotAllowedError,
)
from vlprep._sources import MIB, FetchPolicy, Payload, _http, fetch
from vlprep._sources._http import fetch_http

pytestmark = pytest.mark.timeout(10)

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
SECRET = b"SECRET-ERROR-PAGE-BODY"


# --------------------------------------------------------------------------- servers


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread: nothing leaks
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stop = threading.Event()
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.headers: list[dict[str, str]] = []
        self.bomb = b""

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # client hang-ups are expected (timeouts, caps)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.headers.append(dict(self.headers.items()))
        self.server.requests.append(
            (self.path, self.headers.get("Host"), self.headers.get("Accept-Encoding"))
        )
        name, _, arg = parts.path.strip("/").partition("/")
        route = getattr(self, "route_" + name.replace("-", "_"), None)
        self.close_connection = True
        try:
            if route is None:
                self._send(404, SECRET, "text/html")
            else:
                route(arg, dict(parse_qsl(parts.query)))
        except OSError:
            pass

    def _send(self, status: int, body: bytes, ctype: str = "image/png", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _head(self, **headers: str) -> None:
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.flush()

    def route_img(self, arg: str, q: dict[str, str]) -> None:
        self._send(200, IMAGE, "Image/PNG; charset=binary")

    def route_nolen(self, arg: str, q: dict[str, str]) -> None:
        self._head(Content_Type="image/jpeg", Connection="close")
        self.wfile.write(IMAGE)

    def route_chunked(self, arg: str, q: dict[str, str]) -> None:
        self._head(Content_Type="image/png", Transfer_Encoding="chunked")
        for i in range(0, len(IMAGE), 700):
            piece = IMAGE[i : i + 700]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def route_status(self, arg: str, q: dict[str, str]) -> None:
        self._send(int(arg), SECRET, "text/html")

    def route_redirect(self, arg: str, q: dict[str, str]) -> None:
        self._send(int(q.get("code", "302")), SECRET, "text/html", Location=q["to"])

    def route_chain(self, arg: str, q: dict[str, str]) -> None:
        n = int(arg)
        if n == 0:
            self.route_img(arg, q)
            return
        absolute = f"{self.server.base}/chain/{n - 1}"  # alternate absolute and relative
        self._send(302, b"", "text/html", Location=absolute if n % 2 else f"../chain/{n - 1}")

    def route_loop(self, arg: str, q: dict[str, str]) -> None:
        self._send(302, b"", "text/html", Location="/loop")

    def route_slowredirect(self, arg: str, q: dict[str, str]) -> None:
        self.server.stop.wait(0.3)
        self._send(302, b"", "text/html", Location=f"/slowredirect/{int(arg) + 1}")

    def route_hang(self, arg: str, q: dict[str, str]) -> None:
        self.server.stop.wait(8)

    def route_drip(self, arg: str, q: dict[str, str]) -> None:
        self._head(Content_Type="image/png", Content_Length="1000")
        while not self.server.stop.wait(0.2):
            self.wfile.write(b"x")

    def route_dripheaders(self, arg: str, q: dict[str, str]) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not self.server.stop.wait(0.2):
            self.wfile.write(b"a")

    def route_dripchunked(self, arg: str, q: dict[str, str]) -> None:
        self._head(Transfer_Encoding="chunked")
        self.wfile.write(b"1")  # the chunk-size line never ends
        while not self.server.stop.wait(0.2):
            self.wfile.write(b"0")

    def route_endless(self, arg: str, q: dict[str, str]) -> None:
        self._head(Content_Type="image/png", Transfer_Encoding="chunked")
        block = b"%x\r\n%s\r\n" % (65536, b"\xff" * 65536)
        while not self.server.stop.is_set():
            self.wfile.write(block)

    def route_huge(self, arg: str, q: dict[str, str]) -> None:
        self._head(Content_Type="image/png", Content_Length="10000000000")
        self.server.stop.wait(8)

    def route_hints(self, arg: str, q: dict[str, str]) -> None:
        for _ in range(int(arg or 1)):
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        self._send(200, IMAGE)

    def route_short(self, arg: str, q: dict[str, str]) -> None:
        self._head(Content_Type="image/png", Content_Length="1000")
        self.wfile.write(IMAGE[:10])

    def route_long(self, arg: str, q: dict[str, str]) -> None:
        self._head(Content_Type="image/png", Content_Length="10")
        self.wfile.write(IMAGE)

    def route_encoded(self, arg: str, q: dict[str, str]) -> None:
        bodies = {
            "gzip": gzip.compress(IMAGE),
            "x-gzip": gzip.compress(IMAGE[:100]) + gzip.compress(IMAGE[100:]),  # 2 members
            "deflate": zlib.compress(IMAGE),
            "br": b"\x0b\x02\x80hello\x03",
            "gzip, gzip": gzip.compress(gzip.compress(IMAGE)),
            "corrupt": b"\x1f\x8b\x08\x00" + b"\xff" * 64,
            "truncated": gzip.compress(IMAGE)[:-20],
            "bomb": self.server.bomb,
        }
        encoding = arg.replace("_", " ")
        header = "gzip" if encoding in ("corrupt", "truncated", "bomb") else encoding
        self._send(200, bodies[encoding], "image/png", Content_Encoding=header)


def _start(server: _Server) -> Iterator[_Server]:
    before = set(threading.enumerate())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()  # joins the handler threads
        thread.join(5)
        leaked = [t for t in set(threading.enumerate()) - before if t.is_alive()]
        assert not leaked, f"server threads leaked: {leaked}"


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _start(_Server())


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """One gzip member holding 100 MiB of zeros (about 100 KB), built in about 0.1 s.

    After a full flush the deflate output for another MiB of zeros repeats byte for byte,
    so the stream is one compressed MiB repeated, plus the real CRC-32 and length.
    """
    zeros = bytes(MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    repeat = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(100):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (100 * MIB) & 0xFFFFFFFF)
    return header + first + repeat * 99 + packer.flush() + trailer


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Fail the test if anything connects outside 127.0.0.0/8 or ::1; record connects."""
    real_create, real_connect = socket.create_connection, socket.socket.connect
    calls: list[tuple[str, int]] = []

    def check(address: Any) -> None:
        if not ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback:
            pytest.fail(f"connection attempt outside loopback: {address!r}")

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        check(address)
        calls.append(address)
        return real_create(address, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address)
        real_connect(self, address)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return calls


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(address: Any, *args: Any, **kwargs: Any) -> None:
        pytest.fail(f"connected to {address!r} although the policy must refuse first")

    monkeypatch.setattr(socket, "create_connection", refuse)


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Resolve the names in ``table`` to the given IPs; IP literals pass; others fail.

    Returns the list of names looked up (IP literals, which need no DNS, are not listed).
    """
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host in table:
            asked.append(host)
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
                if ":" in ip
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                for ip in table[host]
            ]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            asked.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.monotonic()
    try:
        return call(*args, **kwargs), time.monotonic() - start
    except Exception as exc:
        return exc, time.monotonic() - start


# --------------------------------------------------------------------------- success paths


@pytest.mark.parametrize("route", ["img", "nolen", "chunked"])
def test_fetches_image_bytes(server: _Server, route: str) -> None:
    payload = fetch_http(f"{server.base}/{route}", FetchPolicy(), "image")
    assert payload.data == IMAGE
    assert payload.origin == repr(f"{server.base}/{route}")
    assert payload.media_type == ("image/jpeg" if route == "nolen" else "image/png")


def test_request_headers(server: _Server) -> None:
    fetch_http(f"{server.base}/img", FetchPolicy(), "image")
    path, host, accept_encoding = server.requests[0]
    assert (path, host, accept_encoding) == ("/img", f"127.0.0.1:{server.port}", "identity")
    assert server.headers[0]["User-Agent"] == f"vlprep/{vlprep.__version__}"
    assert server.headers[0]["Connection"] == "close"


def test_public_fetch_entry_point(server: _Server, loopback_only: list[tuple[str, int]]) -> None:
    payload = fetch(f"{server.base}/img", FetchPolicy())
    assert isinstance(payload, Payload)
    assert payload.data == IMAGE
    with pytest.raises(SourceNotAllowedError, match="loopback"):
        fetch(f"{server.base}/img", FetchPolicy.strict())
    assert len(loopback_only) == 1  # the strict fetch never connected


def test_non_ascii_path_is_percent_encoded(server: _Server) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_http(f"{server.base}/图片.png?q=é", FetchPolicy(), "image")
    assert server.requests[0][0] == "/%E5%9B%BE%E7%89%87.png?q=%C3%A9"


def test_longer_body_than_content_length_keeps_declared_bytes(server: _Server) -> None:
    assert fetch_http(f"{server.base}/long", FetchPolicy(), "image").data == IMAGE[:10]


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate"])
def test_compressed_body_is_decoded(server: _Server, encoding: str) -> None:
    assert fetch_http(f"{server.base}/encoded/{encoding}", FetchPolicy(), "image").data == IMAGE


# --------------------------------------------------------------------------- HTTP failures


@pytest.mark.parametrize("status", [404, 500])
def test_error_status(server: _Server, status: int) -> None:
    with pytest.raises(FetchError, match=f"HTTP {status}") as info:
        fetch_http(f"{server.base}/status/{status}", FetchPolicy(), "image")
    assert SECRET.decode() not in str(info.value)
    assert str(server.port) in str(info.value)


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError, match="ConnectionRefusedError") as info:
        fetch_http(f"http://127.0.0.1:{port}/img", FetchPolicy(), "image")
    assert not isinstance(info.value, FetchTimeoutError)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("br", "Content-Encoding 'br'"),
        ("gzip,_gzip", "Content-Encoding 'gzip, gzip'"),
        ("corrupt", "corrupt gzip body"),
        ("truncated", "truncated gzip body"),
    ],
)
def test_bad_encodings(server: _Server, encoding: str, message: str) -> None:
    with pytest.raises(FetchError, match=message):
        fetch_http(f"{server.base}/encoded/{encoding}", FetchPolicy(), "image")


def test_short_body_is_incomplete(server: _Server) -> None:
    with pytest.raises(FetchError, match="incomplete body: got 10 of 1000 bytes"):
        fetch_http(f"{server.base}/short", FetchPolicy(), "image")


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_codes_relative_location(server: _Server, code: int) -> None:
    payload = fetch_http(f"{server.base}/redirect?to=/img&code={code}", FetchPolicy(), "image")
    assert payload.data == IMAGE
    assert [r[0] for r in server.requests] == [f"/redirect?to=/img&code={code}", "/img"]


def test_redirect_chain_within_limit(server: _Server) -> None:
    assert fetch_http(f"{server.base}/chain/5", FetchPolicy(), "image").data == IMAGE
    assert len(server.requests) == 6


def test_redirect_chain_over_limit(server: _Server) -> None:
    with pytest.raises(FetchError, match=r"too many redirects \(limit 5\)"):
        fetch_http(f"{server.base}/chain/6", FetchPolicy(max_redirects=5), "image")
    assert len(server.requests) == 6


def test_redirect_loop(server: _Server) -> None:
    with pytest.raises(FetchError, match=r"too many redirects \(limit 5\)"):
        fetch_http(f"{server.base}/loop", FetchPolicy(), "image")


def test_zero_redirects_allowed(server: _Server) -> None:
    with pytest.raises(FetchError, match=r"too many redirects \(limit 0\)"):
        fetch_http(f"{server.base}/chain/1", FetchPolicy(max_redirects=0), "image")


@pytest.mark.parametrize(
    "to", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:image/png;base64,AA=="]
)
def test_redirect_to_other_scheme_refused(server: _Server, to: str) -> None:
    with pytest.raises(SourceNotAllowedError):
        fetch_http(f"{server.base}/redirect?to={to}", FetchPolicy(), "image")


@pytest.mark.parametrize(
    "to", ["http://a b/x", "http://user@127.0.0.1/x", "http://127.0.0.1:99999/x"]
)
def test_redirect_to_malformed_url_is_a_fetch_error(server: _Server, to: str) -> None:
    with pytest.raises(FetchError, match="redirects to a bad URL"):
        fetch_http(f"{server.base}/redirect?to={quote(to)}", FetchPolicy(), "image")
    assert len(server.requests) == 1


def test_redirect_to_metadata_refused_on_hop_2(
    server: _Server, monkeypatch: pytest.MonkeyPatch, loopback_only: list[tuple[str, int]]
) -> None:
    # Make loopback count as public so hop 1 reaches the test server under a strict policy;
    # the real address check must still refuse the metadata address on hop 2.
    real = _http._refusal
    monkeypatch.setattr(_http, "_refusal", lambda ip: None if ip.is_loopback else real(ip))
    url = f"{server.base}/redirect?to=http://169.254.169.254/latest/meta-data/"
    with pytest.raises(SourceNotAllowedError, match=r"169\.254\.169\.254 \(link-local\)"):
        fetch_http(url, FetchPolicy.strict(), "image")
    assert len(server.requests) == 1
    assert loopback_only == [("127.0.0.1", server.port)]


def test_redirect_to_host_outside_allow_list(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"media.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    policy = FetchPolicy(allowed_hosts=frozenset({"media.test"}))
    assert fetch_http(f"http://media.test:{server.port}/img", policy, "image").data == IMAGE
    url = f"http://media.test:{server.port}/redirect?to=http://other.test:{server.port}/img"
    with pytest.raises(SourceNotAllowedError, match="allowed_hosts"):
        fetch_http(url, policy, "image")
    assert [r[0] for r in server.requests] == [
        "/img",
        urlsplit(url).path + "?" + urlsplit(url).query,
    ]


def test_deadline_covers_all_redirect_hops(server: _Server) -> None:
    policy = FetchPolicy(image_deadline=1.0, max_redirects=20)
    error, elapsed = timed(fetch_http, f"{server.base}/slowredirect/0", policy, "image")
    assert isinstance(error, FetchTimeoutError)
    assert "total deadline of 1 s" in str(error)
    assert elapsed < 1.5


# --------------------------------------------------------------------------- timeouts


def test_server_that_never_answers(server: _Server) -> None:
    error, elapsed = timed(
        fetch_http, f"{server.base}/hang", FetchPolicy(read_timeout=0.5), "image"
    )
    assert isinstance(error, FetchTimeoutError)
    assert "read stall timeout of 0.5 s" in str(error)
    assert "read_timeout" in str(error)
    assert 0.4 < elapsed < 1.5


@pytest.mark.parametrize("route", ["drip", "dripheaders", "dripchunked"])
def test_drip_feed_hits_total_deadline(server: _Server, route: str) -> None:
    policy = FetchPolicy(read_timeout=1.0, image_deadline=1.0)
    error, elapsed = timed(fetch_http, f"{server.base}/{route}", policy, "image")
    assert isinstance(error, FetchTimeoutError), error
    assert "total deadline of 1 s" in str(error)
    assert "image_deadline" in str(error)
    assert 0.9 < elapsed < 1.5


def test_video_uses_video_deadline(server: _Server) -> None:
    policy = FetchPolicy(read_timeout=5.0, image_deadline=5.0, video_deadline=0.5)
    error, elapsed = timed(fetch_http, f"{server.base}/drip", policy, "video")
    assert isinstance(error, FetchTimeoutError)
    assert "video_deadline" in str(error)
    assert elapsed < 1.0


def test_slow_dns_counts_against_the_deadline(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"media.test": ["127.0.0.1"]})
    resolve = socket.getaddrinfo

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(2.0)
        return resolve(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    policy = FetchPolicy(image_deadline=0.5)
    error, elapsed = timed(fetch_http, f"http://media.test:{server.port}/img", policy, "image")
    assert isinstance(error, FetchTimeoutError)
    assert "total deadline of 0.5 s" in str(error)
    assert elapsed < 1.2  # the lookup is abandoned at the deadline, not awaited
    assert server.requests == []
    for thread in threading.enumerate():  # let the abandoned lookup end before teardown
        if thread.name == "vlprep-resolve":
            thread.join(5)


# --------------------------------------------------------------------------- byte caps


def test_endless_body_stops_at_cap(server: _Server) -> None:
    policy = FetchPolicy(max_image_bytes=MIB)
    with pytest.raises(FetchTooLargeError, match=f"cap of {MIB} bytes"):
        fetch_http(f"{server.base}/endless", policy, "image")


def test_huge_content_length_refused_before_reading(server: _Server) -> None:
    policy = FetchPolicy(max_image_bytes=MIB, read_timeout=5.0)
    error, elapsed = timed(fetch_http, f"{server.base}/huge", policy, "image")
    assert isinstance(error, FetchTooLargeError)
    assert "Content-Length 10000000000" in str(error)
    assert elapsed < 0.5  # the server never sends a body: no read was attempted


def test_video_cap(server: _Server) -> None:
    policy = FetchPolicy(max_video_bytes=100)
    assert fetch_http(f"{server.base}/img", policy, "image").data == IMAGE
    with pytest.raises(FetchTooLargeError, match="max_video_bytes"):
        fetch_http(f"{server.base}/chunked", policy, "video")


def test_gzip_bomb_stops_at_decoded_cap(server: _Server, gzip_bomb: bytes) -> None:
    server.bomb = gzip_bomb
    assert len(gzip_bomb) < MIB
    policy = FetchPolicy(max_image_bytes=MIB)
    tracemalloc.start()
    try:
        with pytest.raises(FetchTooLargeError, match="gzip-decoded"):
            fetch_http(f"{server.base}/encoded/bomb", policy, "image")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB


# --------------------------------------------------------------------------- address policy


@pytest.mark.usefixtures("no_connect")
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[fe80::1]/",
        "https://192.168.1.1/",
    ],
)
def test_strict_refuses_non_public_addresses_without_connecting(url: str) -> None:
    with pytest.raises(SourceNotAllowedError, match="allow_private_networks=False"):
        fetch_http(url.format(port=8080), FetchPolicy.strict(), "image")


@pytest.mark.usefixtures("no_connect")
@pytest.mark.parametrize("answers", [["127.0.0.1"], ["93.184.216.34", "127.0.0.1"], ["::1"]])
def test_strict_refuses_any_non_public_dns_answer(
    monkeypatch: pytest.MonkeyPatch, answers: list[str]
) -> None:
    asked = fake_dns(monkeypatch, {"public.test": answers})
    with pytest.raises(SourceNotAllowedError, match="resolves to"):
        fetch_http("http://public.test/img", FetchPolicy.strict(), "image")
    assert asked == ["public.test"]


def test_connection_is_pinned_to_the_checked_address(
    server: _Server, monkeypatch: pytest.MonkeyPatch, loopback_only: list[tuple[str, int]]
) -> None:
    asked = fake_dns(monkeypatch, {"media.test": ["127.0.0.1"]})
    payload = fetch_http(f"http://media.test:{server.port}/img", FetchPolicy(), "image")
    assert payload.data == IMAGE
    assert server.requests[0][1] == f"media.test:{server.port}"
    assert asked == ["media.test"]  # resolved once, never again by the connection
    assert loopback_only == [("127.0.0.1", server.port)]


def test_pinned_connection_tries_next_address(
    server: _Server, monkeypatch: pytest.MonkeyPatch, loopback_only: list[tuple[str, int]]
) -> None:
    fake_dns(monkeypatch, {"media.test": ["127.0.0.2", "127.0.0.1"]})
    with socket.socket() as probe:  # 127.0.0.2 on the server's port: nobody listens there
        probe.bind(("127.0.0.2", server.port))
    payload = fetch_http(f"http://media.test:{server.port}/img", FetchPolicy(), "image")
    assert payload.data == IMAGE
    assert loopback_only == [("127.0.0.2", server.port), ("127.0.0.1", server.port)]


def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {})
    with pytest.raises(FetchError, match="cannot resolve"):
        fetch_http("http://nowhere.test/img", FetchPolicy(), "image")


# --------------------------------------------------------------------------- URL validation


@pytest.mark.usefixtures("no_connect")
@pytest.mark.parametrize(
    "url",
    [
        "http://allowed.test\\@evil.test/x",
        "http://allowed.test@evil.test/x",
        "http://user:pw@allowed.test/x",
        "http://allowed.test/a b",
        "http://allowed.test/x\n",
        "http://allowed.test/x\x00",
        "http:///x",
        "http://:80/x",
        "http://allowed.test:99999/x",
        "http://allowed.test:abc/x",
        "http://allowed.test:0/x",
        "http://allowed..test/x",
        "http://allo<wed.test/x",
    ],
)
def test_malformed_urls_rejected(url: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        fetch_http(url, FetchPolicy(), "image")
    assert type(info.value) is InvalidInputError


@pytest.mark.usefixtures("no_connect")
def test_scheme_rules() -> None:
    with pytest.raises(SourceNotAllowedError, match="allowed"):
        fetch("ftp://x/y.png", FetchPolicy())
    with pytest.raises(SourceNotAllowedError, match="'https'"):
        fetch("http://127.0.0.1/x.png", FetchPolicy(allowed_schemes=frozenset({"https"})))
    with pytest.raises(SourceNotAllowedError):
        fetch_http(
            "http://127.0.0.1/x.png", FetchPolicy(allowed_schemes=frozenset({"https"})), "image"
        )


@pytest.mark.usefixtures("no_connect")
def test_allowed_hosts_checked_before_resolving(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {})
    policy = FetchPolicy(allowed_hosts=frozenset({"Media.Test"}))
    with pytest.raises(SourceNotAllowedError, match="allowed_hosts"):
        fetch_http("http://evil.test/x", policy, "image")
    assert asked == []


def test_long_url_truncated_in_messages(server: _Server) -> None:
    url = f"{server.base}/status/404?" + "q" * 500
    with pytest.raises(FetchError) as info:
        fetch_http(url, FetchPolicy(), "image")
    assert "q" * 100 not in str(info.value)


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=media.test",
            "-addext",
            "subjectAltName=DNS:media.test",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[_Server]:
    server = _Server()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _start(server)


@pytest.fixture
def trust_test_cert(monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    monkeypatch.setattr(_http, "_tls_context", lambda: context)


def test_tls_verifies_certificates(tls_server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"media.test": ["127.0.0.1"]})
    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_http(f"https://media.test:{tls_server.port}/img", FetchPolicy(), "image")


@pytest.mark.usefixtures("trust_test_cert")
def test_tls_pinned_with_sni_and_hostname_check(
    tls_server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"media.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    payload = fetch_http(f"https://media.test:{tls_server.port}/img", FetchPolicy(), "image")
    assert payload.data == IMAGE
    assert tls_server.requests[0][1] == f"media.test:{tls_server.port}"
    with pytest.raises(FetchError, match=r"Hostname mismatch|CERTIFICATE_VERIFY_FAILED"):
        fetch_http(f"https://other.test:{tls_server.port}/img", FetchPolicy(), "image")


@pytest.mark.usefixtures("trust_test_cert")
def test_https_to_http_downgrade_refused(
    tls_server: _Server, server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"media.test": ["127.0.0.1"]})
    url = f"https://media.test:{tls_server.port}/redirect?to=http://media.test:{server.port}/img"
    with pytest.raises(SourceNotAllowedError, match="downgrade"):
        fetch_http(url, FetchPolicy(), "image")
    assert server.requests == []


def test_deprecated_site_local_ipv6_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Red-team finding: the strict policy accepted a DNS answer of fec0::1."""
    fake_dns(monkeypatch, {"site.test": ["fec0::1"]})
    with pytest.raises(SourceNotAllowedError, match=r"fec0::1 \(site-local\)"):
        fetch_http("http://site.test/x.jpg", FetchPolicy.strict(), "image")
    assert _http._refusal(ipaddress.ip_address("fec0::1")) == "site-local"
    assert _http._refusal(ipaddress.ip_address("2001:4860:4860::8888")) is None


def test_informational_responses_before_the_answer_are_skipped(server: _Server) -> None:
    """Red-team finding: a 103 Early Hints before the 200 failed the fetch."""
    assert fetch_http(f"{server.base}/hints/1", FetchPolicy(), "image").data == IMAGE
    assert fetch_http(f"{server.base}/hints/3", FetchPolicy(), "image").data == IMAGE
    with pytest.raises(FetchError, match="invalid HTTP response"):  # more than 8 1xx
        fetch_http(f"{server.base}/hints/9", FetchPolicy(), "image")


class _DripResponse:
    """A response whose body arrives 2 bytes per read, as from a slow-drip server."""

    length = None

    def __init__(self, size: int) -> None:
        self.left = size

    def getheader(self, name: str) -> None:
        return None

    def read1(self, n: int) -> bytes:
        if self.left <= 0:
            return b""
        self.left -= 2
        return b"ab"


def test_a_dripped_body_costs_about_its_size() -> None:
    """Red-team finding: 2-byte packets cost +464 MiB for an image (one object per packet)."""
    import tracemalloc

    size = 1 << 20
    tracemalloc.start()
    try:
        data = _http._read_body(_DripResponse(size), 32 << 20, "'x'", "image")  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(data) == size
    assert peak < 4 * size, f"peak {peak} bytes for a {size}-byte body"

