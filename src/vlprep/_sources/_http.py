"""Fetch http(s) URLs under a FetchPolicy: the only network code in vlprep.

Each hop parses its URL once, resolves once, checks every address and connects to the
checked IP (keeping ``Host`` and SNI). Every ``recv``, status line and headers included, is
bounded by the stall timeout and the time left to the total deadline; decoded bytes count.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urljoin, urlsplit

from vlprep._errors import (
    FetchError,
    FetchTimeoutError,
    FetchTooLargeError,
    InvalidInputError,
    SourceNotAllowedError,
    VlprepError,
    describe_source,
)
from vlprep._sources._payload import Payload
from vlprep._sources.policy import FetchPolicy, Modality
from vlprep._version import __version__

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["fetch_http"]

_log = logging.getLogger(__name__)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HOSTNAME = re.compile(r"^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*\.?$")
_SAFE_IN_TARGET = "/%:@!$&'()*+,;=?~[]"
_CONNECT, _READ, _TOTAL = "connect timeout", "read stall timeout", "total deadline"
_REFUSED_NETWORKS = {
    ipaddress.ip_network("100.64.0.0/10"): "shared CGNAT",
    ipaddress.ip_network("2002::/16"): "6to4",
    ipaddress.ip_network("64:ff9b::/96"): "NAT64",
    ipaddress.ip_network("64:ff9b:1::/48"): "NAT64",
    ipaddress.ip_network("2001::/32"): "Teredo",
}


class _Target(NamedTuple):
    """One parsed, validated URL: what is checked is what is contacted."""

    url: str
    scheme: str
    host: str
    port: int
    host_header: str
    request_target: str


@cache
def _tls_context() -> ssl.SSLContext:
    """The verifying client context, built once (building one costs about 30 ms)."""
    return ssl.create_default_context()


def _parse(url: str, policy: FetchPolicy) -> _Target:
    """Parse ``url`` once and apply the scheme and host rules of ``policy``."""
    shown = describe_source(url)
    if "\\" in url or any(c.isspace() or not c.isprintable() for c in url):
        raise InvalidInputError(
            f"URL {shown} contains a backslash, whitespace or control character; "
            "percent-encode it (%20, %5C) or strip it"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInputError(f"malformed URL {shown}: bad port or IPv6 literal") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or scheme not in policy.allowed_schemes:
        allowed = sorted(policy.allowed_schemes & {"http", "https"})
        raise SourceNotAllowedError(
            f"scheme {scheme[:16]!r} of {shown} is not allowed for http fetches; allowed: {allowed}"
        )
    if "@" in parts.netloc:
        raise InvalidInputError(f"URL {shown} has userinfo ('@' in the host part); remove it")
    host = parts.hostname or ""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            host = ""
    literal = ":" in host
    if port == 0 or not (literal or (len(host) <= 253 and _HOSTNAME.match(host))):
        raise InvalidInputError(f"URL {shown} has no valid host or port; use scheme://host/path")
    if policy.allowed_hosts is not None and host not in {h.lower() for h in policy.allowed_hosts}:
        raise SourceNotAllowedError(
            f"host {host[:64]!r} of {shown} is not in FetchPolicy.allowed_hosts "
            f"({len(policy.allowed_hosts)} hosts); add it there to fetch from it"
        )
    default_port = 443 if scheme == "https" else 80
    host_header = f"[{host}]" if literal else host
    if port is not None and port != default_port:
        host_header += f":{port}"
    target = quote(parts.path or "/", safe=_SAFE_IN_TARGET)
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE_IN_TARGET)
    return _Target(url, scheme, host, port or default_port, host_header, target)


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is not a public address (``None`` when it is)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network, name in _REFUSED_NETWORKS.items():
        if ip.version == network.version and ip in network:
            return name
    # site_local: IPv6 fec0::/10, deprecated (RFC 3879) but still routed inside some
    # networks; Python counts it as global.
    flags = ("loopback", "link_local", "site_local", "private", "multicast", "unspecified",
             "reserved")
    for flag in flags:
        if getattr(ip, f"is_{flag}", False):
            return flag.replace("_", "-")
    return None if ip.is_global else "not globally routable"


def _resolve(target: _Target, policy: FetchPolicy, clock: _Clock) -> list[str]:
    """Resolve once; refuse the host when any answer is non-public and the policy says so."""
    shown = describe_source(target.url)
    try:
        answers = [ipaddress.ip_address(target.host)]
    except ValueError:
        try:
            infos = _getaddrinfo(target.host, target.port, clock.budget(_TOTAL, clock.total))
        except (OSError, UnicodeError) as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise FetchError(
                f"cannot resolve the host of {shown}: {_why(exc)}; check the URL"
            ) from exc
        answers = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for ip in [] if policy.allow_private_networks else answers:
        reason = _refusal(ip)
        if reason is not None:
            raise SourceNotAllowedError(
                f"{shown} resolves to {ip} ({reason}), refused by this FetchPolicy "
                "(allow_private_networks=False); use a public URL, or "
                "FetchPolicy(allow_private_networks=True) for trusted input only"
            )
    return [str(ip) for ip in answers]


def _getaddrinfo(host: str, port: int, seconds: float) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo`` bounded by ``seconds`` (it cannot be interrupted itself).

    The lookup runs in a daemon thread; when the time is up the caller gets
    ``TimeoutError`` and the thread is abandoned (it ends with the resolver's own timeout).
    """
    box: list[object] = []
    done = threading.Event()

    def work() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the caller below
            box.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name="vlprep-resolve", daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[return-value]


def _why(exc: BaseException) -> str:
    """A short cause for a message: the exception type and errno text, never its repr.

    Library exception text can hold object reprs or peer-controlled bytes; only the
    strerror of an OSError and the reason code of a TLS error are kept.
    """
    name = type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{name}: {exc.reason} ({str(exc.verify_message)[:120]})"
    if isinstance(exc, ssl.SSLError):
        return f"{name}: {exc.reason}"
    strerror = getattr(exc, "strerror", None)
    return f"{name}: {strerror[:120]}" if isinstance(strerror, str) and strerror else name


class _Clock:
    """The total deadline of one fetch, and which limit bounds the current socket call."""

    def __init__(self, policy: FetchPolicy, modality: Modality) -> None:
        self.start = time.monotonic()
        self.total, self.modality = policy.deadline(modality), modality
        self.limit = (_TOTAL, self.total)

    def budget(self, name: str, seconds: float) -> float:
        """Seconds the next socket call may block, ``min(seconds, time left)``.

        Raises:
            TimeoutError: the total deadline has passed.
        """
        left = self.start + self.total - time.monotonic()
        self.limit = (name, seconds) if seconds < left else (_TOTAL, self.total)
        if left <= 0:
            raise TimeoutError
        return min(seconds, left)

    def error(self, shown: str) -> FetchTimeoutError:
        """The FetchTimeoutError naming the limit that expired."""
        name, seconds = self.limit
        field = {_CONNECT: "connect_timeout", _READ: "read_timeout"}.get(name, "")
        return FetchTimeoutError(
            f"fetching {shown} hit the {name} of {seconds:g} s after "
            f"{time.monotonic() - self.start:.2f} s (raise FetchPolicy."
            f"{field or self.modality + '_deadline'} if the source is just slow)"
        )


class _DeadlineReader(io.RawIOBase):
    """Raw reader whose every ``recv`` is bounded by the stall timeout and the deadline."""

    def __init__(self, sock: socket.socket, clock: _Clock, read_timeout: float) -> None:
        super().__init__()
        self._sock, self._clock, self._read_timeout = sock, clock, read_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        self._sock.settimeout(self._clock.budget(_READ, self._read_timeout))
        return self._sock.recv_into(buffer)


_MAX_INFORMATIONAL = 8


class _DeadlineResponse(http.client.HTTPResponse):
    """An HTTPResponse reading through a :class:`_DeadlineReader`, headers included."""

    def __init__(self, sock: socket.socket, clock: _Clock, read_timeout: float) -> None:
        super().__init__(sock, method="GET")
        self.fp.close()
        self.fp = io.BufferedReader(_DeadlineReader(sock, clock, read_timeout))

    def _read_status(self) -> tuple[str, int, str]:
        """The status line, past any informational response (``103 Early Hints``, ...).

        http.client skips only ``100 Continue``; other 1xx (not 101, which vlprep never asks
        for) are skipped here with their headers, at most ``_MAX_INFORMATIONAL`` of them
        (each read under the same deadline).
        """
        for _ in range(_MAX_INFORMATIONAL):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not (100 < status < 200 and status != 101):
                return version, status, reason
            http.client.parse_headers(self.fp)
        raise http.client.HTTPException(
            f"more than {_MAX_INFORMATIONAL} informational (1xx) responses"
        )


class _PinnedConnection(http.client.HTTPConnection):
    """Connects to the already checked addresses (in order), never re-resolving the host."""

    def __init__(self, target: _Target, addresses: list[str], clock: _Clock, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._target, self._addresses, self._clock = target, addresses, clock

    def _budget(self) -> float:
        return self._clock.budget(_CONNECT, self.timeout or 0.0)

    def connect(self) -> None:
        *others, last = self._addresses
        for ip in others:  # the last address's error propagates
            try:
                sock = socket.create_connection((ip, self.port), timeout=self._budget())
                break
            except OSError as exc:
                _log.debug("connect to %s port %d failed: %s", ip, self.port, exc)
        else:
            sock = socket.create_connection((last, self.port), timeout=self._budget())
        if self._target.scheme == "https":
            try:
                sock.settimeout(self._budget())
                sock = _tls_context().wrap_socket(sock, server_hostname=self._target.host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock


class _Inflater:
    """Incremental gzip/deflate decoding that never outputs more than it is asked for."""

    def __init__(self, encoding: str) -> None:
        self._wbits = 15 if encoding == "deflate" else 31
        self.stream = zlib.decompressobj(self._wbits)

    def feed(self, data: bytes, room: int) -> bytes:
        """Decode ``data``, returning at most ``room + 1`` bytes (one more means too large)."""
        out: list[bytes] = []
        while data and room >= 0:
            piece = self.stream.decompress(data, room + 1)
            out.append(piece)
            room -= len(piece)
            data = self.stream.unused_data if self.stream.eof else self.stream.unconsumed_tail
            if data and self.stream.eof:  # another gzip member, or garbage (zlib.error)
                self.stream = zlib.decompressobj(self._wbits)
        return b"".join(out)


def _read_body(
    response: http.client.HTTPResponse, cap: int, shown: str, what: str, limit: int | None = None
) -> bytes:
    """Read the body, counting received and decoded bytes against ``cap``.

    With ``limit``, stop once ``limit`` decoded bytes are in and return only those (the
    connection is then closed by the caller; the rest is never read).
    """
    declared = response.length
    fix = f"(raise FetchPolicy.max_{what}_bytes or use a smaller file)"
    if declared is not None and declared > cap:
        raise FetchTooLargeError(
            f"{shown} declares Content-Length {declared}, above the {what} cap of {cap} bytes {fix}"
        )
    encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
        raise FetchError(
            f"{shown} was sent with Content-Encoding {encoding[:32]!r} despite "
            "'Accept-Encoding: identity'; only gzip and deflate are decoded"
        )
    inflater = None if encoding == "identity" else _Inflater(encoding)
    # One growing buffer: a list of chunks costs ~35 bytes of object per chunk, which a
    # server dripping 2-byte packets turns into 17x the body (+464 MiB for an image).
    body = bytearray()
    received = size = 0
    while chunk := response.read1(65536):
        received += len(chunk)
        if inflater is not None:
            try:
                chunk = inflater.feed(chunk, cap - size)
            except zlib.error as exc:
                raise FetchError(f"corrupt {encoding} body from {shown}") from exc
        size += len(chunk)
        if received > cap or size > cap:
            counted = "received" if received > cap else f"{encoding}-decoded"
            raise FetchTooLargeError(
                f"{shown} sent more than the {what} cap of {cap} bytes ({counted}) {fix}"
            )
        body += chunk
        if limit is not None and size >= limit:
            return bytes(body[:limit])
    if declared is not None and received < declared:
        raise FetchError(
            f"incomplete body: got {received} of {declared} bytes from {shown}; "
            "the server closed the connection early (retry)"
        )
    if inflater is not None and received and not inflater.stream.eof:
        raise FetchError(f"truncated {encoding} body from {shown} ({received} bytes received)")
    return bytes(body)


def _hop(
    target: _Target,
    policy: FetchPolicy,
    clock: _Clock,
    modality: Modality,
    limit: int | None = None,
) -> Payload | str:
    """One request: the payload, or the absolute URL a redirect points to."""
    shown = describe_source(target.url)
    conn: _PinnedConnection | None = None
    try:
        addresses = _resolve(target, policy, clock)
        _log.debug("GET %s via %s", shown, addresses)
        conn = _PinnedConnection(target, addresses, clock, policy.connect_timeout)
        conn.connect()
        conn.sock.settimeout(clock.budget(_READ, policy.read_timeout))
        headers = {
            "Host": target.host_header,
            "Accept-Encoding": "identity",
            "User-Agent": f"vlprep/{__version__}",
            "Connection": "close",
        }
        conn.request("GET", target.request_target, headers=headers)
        response = _DeadlineResponse(conn.sock, clock, policy.read_timeout)
        try:
            response.begin()
            status = response.status
            if status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"HTTP {status} redirect without a Location from {shown}")
                return urljoin(target.url, location.strip())
            if not 200 <= status < 300:
                raise FetchError(f"HTTP {status} from {shown}; expected 2xx (check the URL)")
            data = _read_body(response, policy.max_bytes(modality), shown, modality, limit)
            media_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            return Payload(data=data, origin=shown, media_type=media_type or None)
        finally:
            response.close()
    except VlprepError:
        raise
    except TimeoutError as exc:
        raise clock.error(shown) from exc
    except http.client.IncompleteRead as exc:
        raise FetchError(f"incomplete body from {shown}: the connection ended early") from exc
    except http.client.HTTPException as exc:
        raise FetchError(f"invalid HTTP response from {shown} ({type(exc).__name__})") from exc
    except OSError as exc:  # ConnectionError and ssl.SSLError included
        raise FetchError(f"cannot fetch {shown}: {_why(exc)}") from exc
    finally:
        if conn is not None:
            conn.close()


def fetch_http(
    url: str, policy: FetchPolicy, modality: Modality, limit: int | None = None
) -> Payload:
    """Fetch an ``http(s)://`` URL under ``policy``, validating every redirect hop.

    Args:
        url: the URL; parsed once, and never re-parsed from another string.
        policy: schemes, hosts, private networks, timeouts, total deadline and byte caps.
        modality: ``"image"`` or ``"video"``, selecting the deadline and the byte cap.
        limit: return only the first ``limit`` bytes of the body and stop reading there
            (a declared ``Content-Length`` above the cap is still refused).

    Returns:
        The body, with ``origin`` the truncated URL and ``media_type`` the bare Content-Type.

    Raises:
        InvalidInputError: malformed URL (backslash, whitespace, userinfo, bad host or port).
        SourceNotAllowedError: scheme, host or resolved address refused, on any hop, or an
            https -> http redirect.
        FetchTimeoutError: the connect timeout, the read stall timeout or the total deadline.
        FetchTooLargeError: the declared, received or decoded size exceeds the cap.
        FetchError: HTTP status other than 2xx, too many redirects, connection or protocol
            failure, incomplete or corrupt body.
    """
    clock = _Clock(policy, modality)
    target = _parse(url, policy)
    for hop in range(policy.max_redirects + 1):
        result = _hop(target, policy, clock, modality, limit)
        if isinstance(result, Payload):
            return result
        if hop == policy.max_redirects:
            break
        try:
            next_target = _parse(result, policy)
        except SourceNotAllowedError:
            raise
        except InvalidInputError as exc:  # the server's fault, not the caller's input
            raise FetchError(
                f"{describe_source(target.url)} redirects to a bad URL: {exc}"
            ) from exc
        if target.scheme == "https" and next_target.scheme == "http":
            raise SourceNotAllowedError(
                f"{describe_source(target.url)} redirects to plain http "
                f"({describe_source(result)}); https -> http downgrades are never followed"
            )
        target = next_target
    raise FetchError(
        f"too many redirects (limit {policy.max_redirects}) fetching {describe_source(url)}; "
        "raise FetchPolicy.max_redirects or use the final URL"
    )
