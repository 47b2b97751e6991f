"""fetch(..., prefix=N): read only what a header needs, through the one guarded fetch path."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

import vlprep
from tests.conftest import encode, photo
from tests.media_server import STALL_SENT, MediaServer, serving
from vlprep._errors import (
    FetchTimeoutError,
    FetchTooLargeError,
    InvalidInputError,
    SourceNotAllowedError,
)
from vlprep._sources import FetchPolicy, fetch

pytestmark = pytest.mark.timeout(20)
BIG = encode(photo(2000, 1500, seed=4), quality=95)  # several hundred KiB


@pytest.fixture
def server() -> Iterator[MediaServer]:
    with serving({"big.jpg": BIG, "clip": BIG[:1000]}) as srv:
        yield srv


def test_local_prefix_reads_only_the_start(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(BIG)
    assert fetch(str(path), prefix=1000).data == BIG[:1000]
    assert fetch("file://" + str(path), prefix=10).data == BIG[:10]
    assert fetch(str(path), prefix=len(BIG) + 5).data == BIG  # short: the whole file


def test_prefix_keeps_every_policy_check(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(BIG)
    small_cap = FetchPolicy(max_image_bytes=len(BIG) - 1)
    with pytest.raises(FetchTooLargeError):
        fetch(str(path), small_cap, prefix=100)
    with pytest.raises(SourceNotAllowedError):
        fetch(str(path), FetchPolicy(allow_local=False), prefix=100)
    with pytest.raises(FetchTooLargeError):
        fetch(BIG, small_cap, prefix=100)


def test_prefix_of_bytes_and_data_uri() -> None:
    assert fetch(BIG, prefix=7).data == BIG[:7]
    uri = "data:image/jpeg;base64," + base64.b64encode(BIG[:300]).decode()
    assert fetch(uri, prefix=100).data == BIG[:100]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_prefix(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="prefix"):
        fetch(b"abc", prefix=bad)  # type: ignore[arg-type]


def test_http_prefix_stops_reading(server: MediaServer) -> None:
    """The server sends 128 KiB of a longer body and then stalls: a prefix fetch is done
    long before, a full fetch can only time out."""
    policy = FetchPolicy(read_timeout=1.0)
    url = server.url("stall", "big.jpg")
    assert len(BIG) > 2 * STALL_SENT
    assert fetch(url, policy, prefix=1000).data == BIG[:1000]
    with pytest.raises(FetchTimeoutError):
        fetch(url, policy)


def test_http_prefix_refuses_a_declared_length_above_the_cap(server: MediaServer) -> None:
    with pytest.raises(FetchTooLargeError, match="Content-Length"):
        fetch(server.url("f", "big.jpg"), FetchPolicy(max_image_bytes=1000), prefix=10)


def test_inspect_reads_a_url_header_only(server: MediaServer) -> None:
    est = vlprep.inspect(server.url("stall", "big.jpg"), policy=FetchPolicy(read_timeout=2.0))
    assert (est.original_height, est.original_width) == (1500, 2000)
    assert est.tokens == vlprep.inspect(BIG, kind="image").tokens
