"""fetch(): bytes, data: URIs, local paths and file:// URLs under a FetchPolicy."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest

from vlprep import (
    FetchError,
    FetchPolicy,
    FetchTooLargeError,
    InvalidInputError,
    SourceNotAllowedError,
    SourceNotFoundError,
    fetch_image,
)
from vlprep._sources import MIB, fetch

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


def test_open_local_file_checks_and_opens(tmp_path: Path) -> None:
    from vlprep._sources import open_local_file

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x" * 100)
    for src in (str(clip), clip.as_uri()):
        file = open_local_file(src)
        assert file is not None
        with file:
            assert file.read() == b"x" * 100
    assert open_local_file("https://example.test/v.mp4") is None
    assert open_local_file("data:video/mp4;base64,AAAA") is None
    with pytest.raises(FetchTooLargeError):
        open_local_file(str(clip), FetchPolicy(max_video_bytes=10))
    with pytest.raises(SourceNotAllowedError):
        open_local_file(str(clip), FetchPolicy.strict())
    with pytest.raises(SourceNotFoundError):
        open_local_file(str(tmp_path / "missing.mp4"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``root/`` with nested folders and links inside it, and ``elsewhere/secret.png``."""
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "ok.png").write_bytes(b"ok")
    (root / "a" / "b" / "deep.png").write_bytes(b"deep")
    (root / "a" / "b" / "up.png").symlink_to("../../ok.png")  # stays inside
    (root / "alias").symlink_to("a")  # a folder link that stays inside
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.png").write_bytes(b"secret")
    (root / "out").symlink_to("../elsewhere")  # a folder link out of the root
    (root / "a" / "sneak.png").symlink_to("../out/secret.png")  # a chain out of the root
    (root / "abs.png").symlink_to(root / "ok.png")  # absolute, even though inside
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (tmp_path / "root_alias").symlink_to("root")
    return root


def test_local_root_reads_nested_files_and_links_that_stay_inside(
    tree: Path, local_opener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = FetchPolicy.strict(local_root=str(tree))
    assert fetch(str(tree / "a" / "b" / "deep.png"), policy).data == b"deep"
    assert fetch(str(tree / "a" / ".." / "ok.png"), policy).data == b"ok"  # '..' that stays in
    assert fetch(str(tree / "a" / "b" / "up.png"), policy).data == b"ok"
    assert fetch(str(tree / "alias" / "b" / "deep.png"), policy).data == b"deep"
    assert fetch((tree / "alias" / "b" / "up.png").as_uri(), policy).data == b"ok"
    # the root given through a link, the file through either name, and the other way round
    alias = tree.parent / "root_alias"
    assert fetch(str(tree / "ok.png"), policy.replace(local_root=str(alias))).data == b"ok"
    assert fetch(str(alias / "ok.png"), policy).data == b"ok"
    assert fetch(str(alias / "ok.png"), policy.replace(local_root=str(alias))).data == b"ok"
    monkeypatch.chdir(tree / "a")
    assert fetch("b/deep.png", policy).data == b"deep"  # relative to the working directory
    assert fetch("../ok.png", policy).data == b"ok"


def test_local_root_refuses_every_way_out(tree: Path, local_opener: str) -> None:
    from vlprep._sources import open_local_file

    policy = FetchPolicy.strict(local_root=str(tree))
    for src in (
        str(tree / ".." / "elsewhere" / "secret.png"),
        str(tree / "out" / "secret.png"),  # a folder link out
        str(tree / "a" / "sneak.png"),  # a link to a link out
        str(tree / "abs.png"),  # absolute links are refused, like RESOLVE_BENEATH does
        (tree / "out" / "secret.png").as_uri(),
    ):
        with pytest.raises(SourceNotAllowedError, match="outside the allowed root") as info:
            fetch(src, policy)
        if "elsewhere" not in src:
            assert "elsewhere" not in str(info.value)  # where a link leads is not told
        with pytest.raises(SourceNotAllowedError, match="outside the allowed root"):
            open_local_file(src, policy)  # the video path
    with pytest.raises(SourceNotAllowedError, match="more than 40 symbolic links"):
        fetch(str(tree / "loop1"), policy)


def test_local_root_failures_are_vlprep_errors(tree: Path, local_opener: str) -> None:
    policy = FetchPolicy.strict(local_root=str(tree))
    with pytest.raises(SourceNotFoundError, match="no such file"):
        fetch(str(tree / "a" / "missing.png"), policy)
    with pytest.raises(SourceNotFoundError, match="no such file"):
        fetch(str(tree / "nowhere" / "x.png"), policy)
    with pytest.raises(FetchError, match="cannot open") as info:
        fetch(str(tree / "ok.png" / "x.png"), policy)  # a file used as a folder
    assert type(info.value) is FetchError
    for folder in (tree, tree / "a", tree / "alias"):
        with pytest.raises(InvalidInputError, match="not a regular file"):
            fetch(str(folder), policy)
    os.mkfifo(tree / "fifo.png")
    start = time.monotonic()
    with pytest.raises(InvalidInputError, match="not a regular file"):
        fetch(str(tree / "fifo.png"), policy)
    assert time.monotonic() - start < 2.0  # opened non-blocking, refused, never read
    with pytest.raises(InvalidInputError, match="NUL"):
        fetch(str(tree / "ok.png\x00.png"), policy)
    gone = policy.replace(local_root=str(tree / "no-such-root"))
    with pytest.raises(FetchError, match=r"allowed root .* must be an existing folder"):
        fetch(str(tree / "no-such-root" / "x.png"), gone)


def test_hard_links_refused_under_strict_root_only(tree: Path, local_opener: str) -> None:
    linked = tree / "hard.png"
    os.link(tree.parent / "elsewhere" / "secret.png", linked)
    strict = FetchPolicy.strict(local_root=str(tree))
    assert strict.refuse_hard_links and not FetchPolicy().refuse_hard_links
    with pytest.raises(SourceNotAllowedError, match=r"2 hard links.*refuse_hard_links=False"):
        fetch(str(linked), strict)
    assert fetch(str(linked), strict.replace(refuse_hard_links=False)).data == b"secret"
    assert fetch(str(linked), FetchPolicy(local_root=str(tree))).data == b"secret"
    assert fetch(str(linked)).data == b"secret"  # no root: nothing to contain
    assert fetch(str(tree / "ok.png"), strict).data == b"ok"  # one link: read


def test_without_a_root_links_are_followed(tree: Path) -> None:
    assert fetch(str(tree / "out" / "secret.png")).data == b"secret"  # no containment promised
    assert fetch(str(tree / "abs.png")).data == b"ok"
    with pytest.raises(FetchError, match="cannot open"):
        fetch(str(tree / "loop1"))


def test_policy_checks_the_local_fields() -> None:
    for bad in (1, "yes", None):
        with pytest.raises(InvalidInputError, match="refuse_hard_links"):
            FetchPolicy(refuse_hard_links=bad)  # type: ignore[arg-type]
    for root in ("", "a\x00b", 3):
        with pytest.raises(InvalidInputError, match="local_root"):
            FetchPolicy(local_root=root)  # type: ignore[arg-type]
