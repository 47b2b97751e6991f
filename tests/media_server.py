"""A loopback HTTP server for the inspect tests: serves named byte strings, can stall.

``/f/NAME`` sends ``files[NAME]`` whole; ``/stall/NAME`` declares the full length, sends
the first 128 KiB and then waits (until the test ends) without sending the rest;
``/slow/NAME`` waits ``SLOW_DELAY`` seconds, then sends it whole.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STALL_SENT = 128 * 1024
SLOW_DELAY = 0.5


class MediaServer(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.stop = threading.Event()
        self.paths: list[str] = []

    def url(self, route: str, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{route}/{name}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that stop reading early hang up on purpose


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: MediaServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        _, route, name = self.path.split("/", 2)
        if route == "slow":
            self.server.stop.wait(SLOW_DELAY)
        body = self.server.files.get(name)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if route == "stall":
            self.wfile.write(body[:STALL_SENT])
            self.wfile.flush()
            self.server.stop.wait(10)
            return
        self.wfile.write(body)


@contextmanager
def serving(files: dict[str, bytes]) -> Iterator[MediaServer]:
    """Run a :class:`MediaServer` on a thread; stop it and join its threads on exit."""
    server = MediaServer(files)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
