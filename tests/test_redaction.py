"""Error messages never carry credentials or payload (red-team finding: credentials echoed).

Every message names its source through ``vlprep._errors.describe_source``; these cases
failed before it learned URLs (userinfo and query values were shown whole) and base64 with
a file suffix (60 characters of payload were shown).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from vlprep import FetchPolicy, VlprepError, process_vision_info
from vlprep._errors import describe_source, looks_like_payload, redact_url

SECRETS = ("hunter2", "bob", "sekrit123", "AKIAEXAMPLE", "deadbeefcafe")


def _message(source: str, **kw: Any) -> str:
    with pytest.raises(VlprepError) as info:
        process_vision_info([{"role": "user", "content": [{"type": "image", "image": source}]}], **kw)
    return "\n".join([str(info.value), *getattr(info.value, "__notes__", [])])


@pytest.mark.parametrize(
    "url",
    [
        "https://bob:hunter2@127.0.0.1:9/photo.jpg",
        "https://bob@127.0.0.1/photo.jpg?token=sekrit123",
        "https://127.0.0.1/p.jpg?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeefcafe",
        "http://[::1]:8080/a.png?sig=deadbeefcafe#sekrit123",
    ],
)
def test_urls_lose_userinfo_query_values_and_fragment(url: str) -> None:
    message = _message(url, policy=FetchPolicy.strict())
    for secret in SECRETS:
        assert secret not in message, message
    assert "127.0.0.1" in message or "[::1]" in message  # still says where


def test_redact_url_keeps_what_helps() -> None:
    assert redact_url("https://u:p@Host.example:8443/a/b.jpg?x=1&y=2#f") == (
        "https://<userinfo>@host.example:8443/a/b.jpg?x=...&y=...#..."
    )
    assert redact_url("http://[2001:db8::1]/v.mp4") == "http://[2001:db8::1]/v.mp4"
    assert redact_url("http://h:99999/x") == "<URL of 16 chars>"  # unparseable port
    many = "http://h/x?" + "&".join(f"k{i}=v" for i in range(9))
    assert redact_url(many).endswith("k5=...&<3 more>")


def test_base64_with_a_file_suffix_is_summarised_with_a_hint() -> None:
    payload = base64.b64encode(bytes(range(256)) * 3).decode()
    for source in (payload + ".png", payload, "iVBORw0KGgo/" + payload[:200] + ".jpg"):
        message = _message(source)
        assert payload[20:40] not in message and payload[-30:-10] not in message
        assert "looks like raw base64" in message and "data:image/png;base64," in message
        assert looks_like_payload(source)


def test_long_paths_still_show_their_ends() -> None:
    path = "/home/user/some/long/directory/structure/with_names/and/more/photo_0001.jpg"
    assert not looks_like_payload(path)
    shown = describe_source(path)
    assert shown.startswith("'/home/user/") and shown.endswith("photo_0001.jpg'")
    assert "looks like raw base64" not in _message(path)


def test_decode_errors_name_the_source_and_chain_no_address(tmp_path: Path) -> None:
    """Red-team finding 9: DecodeError did not name the source; its cause printed a heap address."""
    import traceback

    from vlprep import DecodeError
    from vlprep._image import fetch_image

    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(DecodeError) as info:
        fetch_image({"image": str(bad)})
    assert "not-an-image.jpg" in str(info.value)
    printed = "".join(traceback.format_exception(info.value))
    assert " object at 0x" not in printed
