"""fetch(): bytes, data: URIs, local paths and file:// URLs under a FetchPolicy."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from vlprep import (
    FetchPolicy,
    FetchTooLargeError,
    InvalidInputError,
    SourceNotAllowedError,
    SourceNotFoundError,
    fetch_image,
)
from vlprep.sources import MIB, fetch

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


def test_bytes_pass_through_with_cap() -> None:
    assert fetch(b"abc").data == b"abc"
    with pytest.raises(FetchTooLargeError, match="cap of 2 bytes"):
        fetch(b"abc", FetchPolicy(max_image_bytes=2))
    assert "abc" not in repr(fetch(b"abc"))


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("data:image/png;base64", "no ','"),
        ("data:text/plain,hi", "only ';base64,'"),
        (f"data:image/png;BASE64,{PNG}", "only ';base64,'"),
        (f"data:image/png; base64,{PNG}", "only ';base64,'"),
        (f"data:text/html;base64,{PNG}", "not an image type"),
        (f"data:video/mp4;base64,{PNG}", "not an image type"),
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("data:image/png;base64,iVBORw0KGgo", "not valid base64"),
        ("data:image/png;base64,iVBO Rw0K", "not valid base64"),
    ],
)
def test_strict_data_uris(uri: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        fetch(uri)
    assert PNG[:20] not in str(info.value)


def test_data_uri_decodes_and_sniffs_subtype_loosely() -> None:
    payload = fetch(f"data:image/jpeg;base64,{PNG}")
    assert payload.data.startswith(b"\x89PNG")
    assert payload.media_type == "image/jpeg"
    assert PNG not in payload.origin
    assert fetch(f"data:image;base64,{PNG}").data.startswith(b"\x89PNG")


def test_data_uri_length_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    big = "data:image/png;base64," + "A" * (4 * MIB)
    monkeypatch.setattr(base64, "b64decode", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(FetchTooLargeError, match="cap of 1048576"):
        fetch(big, FetchPolicy(max_image_bytes=MIB))


def test_data_scheme_can_be_disallowed() -> None:
    with pytest.raises(SourceNotAllowedError, match="data"):
        fetch(
            f"data:image/png;base64,{PNG}",
            FetchPolicy(allowed_schemes=frozenset({"http", "https"})),
        )


@pytest.mark.parametrize(
    "url", ["ftp://x/y.png", "gopher://x", "s3://bucket/key", "javascript:alert(1)", "HTTP2://x"]
)
def test_unknown_schemes(url: str) -> None:
    with pytest.raises(SourceNotAllowedError, match="allowed"):
        fetch(url)


def test_local_paths_and_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a b.png"
    target.write_bytes(b"hello")
    assert fetch(str(target)).data == b"hello"
    assert fetch(target.as_uri()).data == b"hello"  # percent-encoded space
    assert fetch("file://" + str(target)).data == b"hello"
    monkeypatch.chdir(tmp_path)
    assert fetch("file://a b.png").data == b"hello"  # qwen-vl-utils reads file://x as relative x


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fetch(str(tmp_path / "nope.png"))
    with pytest.raises(SourceNotFoundError, match="nope"):
        fetch_image({"image": f"file://{tmp_path}/nope.png"})


def test_raw_base64_without_prefix_is_not_echoed() -> None:
    raw = base64.b64encode(os.urandom(3000)).decode()
    with pytest.raises(SourceNotFoundError) as info:
        fetch(raw)
    assert raw[:100] not in str(info.value)


def test_local_disabled(tmp_path: Path) -> None:
    target = tmp_path / "x.png"
    target.write_bytes(b"x")
    strict = FetchPolicy.strict()
    for src in (str(target), target.as_uri(), "/etc/passwd", "file:///etc/passwd"):
        with pytest.raises(SourceNotAllowedError, match="local"):
            fetch(src, strict)


def test_local_root_containment(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.png").write_bytes(b"ok")
    (tmp_path / "secret.png").write_bytes(b"secret")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    policy = FetchPolicy.strict(local_root=str(root))
    assert fetch(str(root / "ok.png"), policy).data == b"ok"
    assert fetch((root / "ok.png").as_uri(), policy).data == b"ok"
    for src in (
        str(root / ".." / "secret.png"),
        f"file://{root}/%2e%2e/secret.png",
        str(root / "link.png"),
        "/etc/passwd",
        f"{root}_sibling/x.png",
    ):
        with pytest.raises(SourceNotAllowedError, match="outside the allowed root"):
            fetch(src, policy)


def test_non_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for src in ("/dev/zero", str(fifo), str(tmp_path)):
        with pytest.raises(InvalidInputError, match="not a regular file"):
            fetch(src)


def test_local_size_cap(tmp_path: Path) -> None:
    target = tmp_path / "big.png"
    target.write_bytes(b"x" * 2000)
    with pytest.raises(FetchTooLargeError, match="2000 bytes"):
        fetch(str(target), FetchPolicy(max_image_bytes=1000))


def test_policy_validation() -> None:
    with pytest.raises(InvalidInputError, match="unknown schemes"):
        FetchPolicy(allowed_schemes=frozenset({"ftp"}))
    with pytest.raises(InvalidInputError, match="image_deadline"):
        FetchPolicy(image_deadline=0)
    for bad in (-1, 2.5, "3", True):
        with pytest.raises(InvalidInputError, match="max_redirects"):
            FetchPolicy(max_redirects=bad)  # type: ignore[arg-type]
    assert FetchPolicy(allowed_hosts=frozenset({"A.Test"})).allowed_hosts == {"a.test"}
    strict = FetchPolicy.strict()
    assert strict.allowed_schemes == frozenset({"http", "https", "data"})
    assert not strict.allow_private_networks and not strict.allow_local
    default = FetchPolicy()
    assert (default.image_deadline, default.max_image_bytes, default.max_redirects) == (
        30.0,
        32 * MIB,
        5,
    )
    assert default.replace(max_redirects=0).max_redirects == 0


def test_empty_and_wrong_types() -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        fetch("")
    with pytest.raises(InvalidInputError, match="str or bytes"):
        fetch(123)  # type: ignore[arg-type]


def test_local_path_checks_without_reading(tmp_path: Path) -> None:
    from vlprep.sources import local_path

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x" * 100)
    assert local_path(str(clip)) == str(clip)
    assert local_path(clip.as_uri()) == str(clip)
    assert local_path("https://example.test/v.mp4") is None
    assert local_path("data:video/mp4;base64,AAAA") is None
    with pytest.raises(FetchTooLargeError):
        local_path(str(clip), FetchPolicy(max_video_bytes=10))
    with pytest.raises(SourceNotAllowedError):
        local_path(str(clip), FetchPolicy.strict())
    with pytest.raises(SourceNotFoundError):
        local_path(str(tmp_path / "missing.mp4"))
