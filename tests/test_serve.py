"""vlprep-serve in model mode, driven by the official ``openai`` client over loopback HTTP.

One server per family (tiny random-weight checkpoints, ``vlprep.testing``) with a policy
that explicitly allows the loopback media server; one strict server (``FetchPolicy.strict()``,
an API key, a small body cap, two images per request) for the refusals.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MEDIA, encode, photo
from tests.media_server import MediaServer, serving
from tests.serve_server import running
from vlprep import FetchPolicy, build_inputs
from vlprep._serve import ServeSettings, create_app
from vlprep.runner import BatchEngine
from vlprep.testing import PROCESSOR_FAMILIES, save_checkpoint

HOPPER = (MEDIA / "images" / "hopper.jpg").read_bytes()
BIG = encode(photo(640, 480))
VIDEO = (MEDIA / "videos" / "h265_video.mp4").read_bytes()
LOOPBACK = FetchPolicy.strict().replace(
    allow_private_networks=True, allowed_hosts=frozenset({"127.0.0.1"})
)
KEY = "test-key-0123456789"


def data_uri(data: bytes, kind: str = "image/jpeg") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def image_part(url: str, **knobs: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}, **knobs}


def user(*parts: dict[str, Any], text: str = "What is this?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with serving({"hopper.jpg": HOPPER, "big.jpg": BIG, "clip.mp4": VIDEO}) as server:
        yield server


class RecordingEngine(BatchEngine):
    """The server's default engine, keeping every stream it was given (to see cancellations)."""

    def __init__(self, runner: Any) -> None:
        super().__init__(runner, max_waiting=8)
        self.streams: list[Any] = []

    def submit(self, inputs: Any, sampling: Any, *, stop: Any = ()) -> Any:
        stream = super().submit(inputs, sampling, stop=stop)
        self.streams.append(stream)
        return stream


@pytest.fixture(scope="module", params=PROCESSOR_FAMILIES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Any, Path]]:
    family = request.param
    directory = save_checkpoint(family, tmp_path_factory.mktemp("ckpt") / family.replace(".", "_"))
    settings = ServeSettings(
        model=str(directory),
        device="cpu",
        policy=LOOPBACK,
        engine_factory=RecordingEngine,
        max_images=4,
    )
    app = create_app(settings)
    with running(app) as base:
        yield base, app, directory


_CLIENTS: dict[tuple[str, str], openai.OpenAI] = {}


def client(base: str, key: str = "unused") -> openai.OpenAI:
    """One ``openai.OpenAI`` per server and key, closed when the module ends."""
    if (base, key) not in _CLIENTS:
        _CLIENTS[base, key] = openai.OpenAI(
            base_url=base + "/v1", api_key=key, max_retries=0, timeout=60
        )
    return _CLIENTS[base, key]


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.popitem()[1].close()


def detail(usage: Any, name: str) -> int:
    """A per-modality count of ``usage.prompt_tokens_details``."""
    value = getattr(usage.prompt_tokens_details, name)
    assert isinstance(value, int)
    return value


def tokenize(base: str, messages: list[dict[str, Any]], key: str = "unused") -> dict[str, Any]:
    answer = httpx.post(
        base + "/v1/tokenize",
        json={"messages": messages},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_chat_non_stream_and_stream_agree(served: tuple[str, Any, Path]) -> None:
    base, _, directory = served
    messages = user(image_part(data_uri(HOPPER)))
    api = client(base)
    answer = api.chat.completions.create(model=directory.name, messages=messages, max_tokens=6)
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert isinstance(choice.message.content, str)
    usage = answer.usage
    assert usage is not None and usage.completion_tokens >= 1
    assert detail(usage, "image_tokens") > 0
    assert detail(usage, "video_tokens") == 0
    counted = tokenize(base, messages)
    assert counted["count"] == usage.prompt_tokens
    assert counted["image_tokens"] == detail(usage, "image_tokens")
    assert counted["text_tokens"] == detail(usage, "text_tokens")

    chunks = list(
        api.chat.completions.create(
            model=directory.name,
            messages=messages,
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content  # greedy: the same answer
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == choice.finish_reason
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == usage.completion_tokens


def test_image_by_url_and_per_item_max_pixels(
    served: tuple[str, Any, Path], media: MediaServer
) -> None:
    base, app, directory = served
    preset = app.state.server.backend.preset
    small = max(64 * preset.factor**2, 2 * preset.image_min_pixels)
    url = media.url("f", "big.jpg")
    plain = tokenize(base, user(image_part(url)))
    capped = tokenize(base, user(image_part(url, max_pixels=small)))
    inner = tokenize(
        base, user({"type": "image_url", "image_url": {"url": url, "max_pixels": small}})
    )
    h, w = capped["items"][0]["size"]
    assert h * w <= small < plain["items"][0]["size"][0] * plain["items"][0]["size"][1]
    assert inner["items"] == capped["items"]
    low = tokenize(base, user({"type": "image_url", "image_url": {"url": url, "detail": "low"}}))
    assert low["items"][0]["tokens"] <= 256 < plain["items"][0]["tokens"]
    assert capped["image_tokens"] == capped["items"][0]["tokens"] < plain["image_tokens"]
    answer = client(base).chat.completions.create(
        model=directory.name, messages=user(image_part(url, max_pixels=small)), max_tokens=3
    )
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == capped["count"]
    assert detail(answer.usage, "image_tokens") == capped["image_tokens"]


def test_video_by_url_and_frame_list(served: tuple[str, Any, Path], media: MediaServer) -> None:
    base, app, directory = served
    messages = user(
        {"type": "video_url", "video_url": {"url": media.url("f", "clip.mp4")}, "fps": 4},
        text="Describe the clip.",
    )
    counted = tokenize(base, messages)
    assert counted["video_tokens"] > 0 and counted["items"][0]["kind"] == "video"
    answer = client(base).chat.completions.create(
        model=directory.name, messages=messages, max_tokens=3
    )
    assert answer.usage is not None and answer.usage.prompt_tokens == counted["count"]
    assert detail(answer.usage, "video_tokens") == counted["video_tokens"]
    # the count equals build_inputs' own sequence length
    backend = app.state.server.backend
    translated = app.state.server.translate(messages, {})
    inputs = build_inputs(
        translated.conversation, backend.processor, preset=backend.preset, policy=LOOPBACK
    )
    assert inputs["input_ids"].shape[1] == counted["count"]

    frames = [data_uri(encode(photo(64, 48, seed=i))) for i in range(4)]
    listed = user({"type": "video", "video": frames, "sample_fps": 2}, text="And this?")
    counted = tokenize(base, listed)
    assert counted["items"][0]["frames"] == 4
    answer = client(base).chat.completions.create(
        model=directory.name, messages=listed, max_tokens=2
    )
    assert answer.usage is not None and answer.usage.prompt_tokens == counted["count"]


@pytest.fixture
def endless(served: tuple[str, Any, Path]) -> Iterator[None]:
    """The runner without end-of-turn ids, so a random-weight model cannot stop early: only
    max_tokens or a cancellation ends an answer."""
    runner = served[1].state.server.backend.runner
    saved = runner.stop_ids
    runner.stop_ids = []
    try:
        yield
    finally:
        runner.stop_ids = saved


@pytest.mark.usefixtures("endless")
def test_disconnect_cancels_the_generation(served: tuple[str, Any, Path]) -> None:
    base, app, directory = served
    engine = app.state.server.backend.engine
    before = len(engine.streams)
    stream = client(base).chat.completions.create(
        model=directory.name,
        messages=[{"role": "user", "content": "Go on for a long time."}],
        max_tokens=4000,
        stream=True,
    )
    for _ in stream:
        break
    stream.close()
    generation = engine.streams[before]
    deadline = time.monotonic() + 30
    while generation.result is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert generation.result is not None
    assert generation.result.finish_reason == "cancelled"
    assert generation.result.generated_tokens < 4000


@pytest.mark.usefixtures("endless")
def test_non_stream_client_gone_cancels_too(served: tuple[str, Any, Path]) -> None:
    base, app, directory = served
    engine = app.state.server.backend.engine
    before = len(engine.streams)
    body = {
        "model": directory.name,
        "messages": [{"role": "user", "content": "Long."}],
        "max_tokens": 4000,
    }
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(base + "/v1/chat/completions", json=body, timeout=httpx.Timeout(30, read=1.0))
    deadline = time.monotonic() + 30
    while (len(engine.streams) <= before or engine.streams[before].result is None) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    result = engine.streams[before].result
    assert result is not None and result.finish_reason == "cancelled"
    assert result.generated_tokens < 4000


@pytest.mark.usefixtures("endless")
def test_stop_string_and_seeded_sampling(served: tuple[str, Any, Path]) -> None:
    base, _, directory = served
    api = client(base)
    messages = [{"role": "user", "content": "Say something."}]
    full = api.chat.completions.create(model=directory.name, messages=messages, max_tokens=16)
    text = full.choices[0].message.content or ""
    candidates = [ch for ch in text[1:] if ch != "\ufffd"]
    assert candidates, f"the answer {text!r} has no character to stop at"
    stop = candidates[len(candidates) // 2]
    stopped = api.chat.completions.create(
        model=directory.name, messages=messages, max_tokens=16, stop=[stop]
    )
    assert stopped.choices[0].message.content == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"
    sampled = [
        api.chat.completions.create(
            model=directory.name, messages=messages, max_tokens=8, temperature=0.9, seed=7
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]


def test_health_models_and_metrics(served: tuple[str, Any, Path]) -> None:
    base, _, directory = served
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    listed = client(base).models.list()
    assert [m.id for m in listed.data] == [directory.name]
    metrics = httpx.get(base + "/metrics").text
    assert 'vlprep_serve_requests_total{endpoint="/v1/chat/completions",status="200"}' in metrics
    assert "vlprep_serve_prompt_tokens_total" in metrics
    assert 'vlprep_serve_vision_tokens_total{modality="image"}' in metrics
    with pytest.raises(openai.NotFoundError) as caught:
        client(base).chat.completions.create(
            model="another-model", messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    assert caught.value.response.json()["error"]["code"] == "model_not_found"


# ------------------------------------------------------------------------ refusals


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, Path]]:
    directory = save_checkpoint("qwen2-vl", tmp_path_factory.mktemp("strict") / "qwen2_vl")
    settings = ServeSettings(
        model=str(directory),
        device="cpu",
        api_key=KEY,
        max_body_bytes=96 * 1024,
        max_images=2,
        max_queue=1,
        deadline=3.0,
    )
    app = create_app(settings)
    with running(app) as base:
        yield base, app, directory


def error_of(caught: pytest.ExceptionInfo[openai.APIStatusError], status: int) -> dict[str, Any]:
    assert caught.value.status_code == status
    body = caught.value.response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_private_address_refused_under_strict_policy(
    strict: tuple[str, Any, Path], media: MediaServer
) -> None:
    base, _, directory = strict
    url = media.url("f", "hopper.jpg") + "?token=s3cr3t"
    with pytest.raises(openai.BadRequestError) as caught:
        client(base, KEY).chat.completions.create(
            model=directory.name, messages=user(image_part(url)), max_tokens=1
        )
    error = error_of(caught, 400)
    assert error["code"] == "source_not_allowed"
    assert "s3cr3t" not in error["message"]
    assert not media.paths or all("s3cr3t" not in p for p in media.paths)


def test_too_many_images(strict: tuple[str, Any, Path]) -> None:
    base, _, directory = strict
    parts = [image_part(data_uri(HOPPER)) for _ in range(3)]
    with pytest.raises(openai.BadRequestError) as caught:
        client(base, KEY).chat.completions.create(
            model=directory.name, messages=user(*parts), max_tokens=1
        )
    error = error_of(caught, 400)
    assert error["code"] == "too_many_images" and error["param"] == "messages"
    assert "limit of 2" in error["message"]


def test_body_over_the_cap(strict: tuple[str, Any, Path]) -> None:
    base, _, directory = strict
    big = data_uri(encode(photo(600, 400), "PNG"), "image/png")
    assert len(big) > 96 * 1024
    with pytest.raises(openai.APIStatusError) as caught:
        client(base, KEY).chat.completions.create(
            model=directory.name, messages=user(image_part(big)), max_tokens=1
        )
    error = error_of(caught, 413)
    assert error["code"] == "body_too_large"
    assert big[40:80] not in error["message"]


def test_wrong_or_missing_key(strict: tuple[str, Any, Path]) -> None:
    base, _, directory = strict
    with pytest.raises(openai.AuthenticationError) as caught:
        client(base, "wrong-key").chat.completions.create(
            model=directory.name, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    assert error_of(caught, 401)["code"] == "invalid_api_key"
    assert caught.value.response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(base + "/v1/models").status_code == 401
    assert httpx.get(base + "/health").status_code == 200
    good = client(base, KEY).chat.completions.create(
        model=directory.name, messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )
    assert good.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    ("part", "code", "words"),
    [
        ({"type": "image_url", "image_url": {}}, "invalid_content", "non-empty string url"),
        ({"type": "image_url"}, "invalid_content", "needs 'image_url'"),
        ({"type": "input_audio", "input_audio": {}}, "unsupported_part", "not supported"),
        (
            {"type": "image_url", "image_url": {"url": "x"}, "max_pixel": 5},
            "unknown_key",
            "max_pixel",
        ),
        (
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,AAAA"},
                "max_pixels": "big",
            },
            "invalid_input",
            "max_pixels",
        ),
        ("not an object", "invalid_content", "must be an object"),
    ],
)
def test_malformed_parts(strict: tuple[str, Any, Path], part: Any, code: str, words: str) -> None:
    base, _, directory = strict
    with pytest.raises(openai.BadRequestError) as caught:
        client(base, KEY).chat.completions.create(
            model=directory.name,
            messages=[{"role": "user", "content": [part]}],  # type: ignore[list-item]
            max_tokens=1,
        )
    error = error_of(caught, 400)
    assert error["code"] == code
    assert words in error["message"]
    assert error["param"] in (None, "messages[0].content[0]")


def test_undecodable_data_never_echoed(strict: tuple[str, Any, Path]) -> None:
    base, _, directory = strict
    payload = base64.b64encode(b"this is not an image, just words " * 20).decode()
    with pytest.raises(openai.BadRequestError) as caught:
        client(base, KEY).chat.completions.create(
            model=directory.name,
            messages=user(image_part("data:image/png;base64," + payload)),
            max_tokens=1,
        )
    error = error_of(caught, 400)
    assert payload[:24] not in json.dumps(error)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
    ],
)
def test_bad_parameters(strict: tuple[str, Any, Path], body: dict[str, Any], param: str) -> None:
    base, _, _ = strict
    answer = httpx.post(
        base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    bad_json = httpx.post(
        base + "/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["code"] == "invalid_json"


def test_queue_full_answers_429_and_deadline_408(strict: tuple[str, Any, Path]) -> None:
    """max_queue=1: while one request waits on a source that stalls, the next gets 429
    with Retry-After; the stalled one ends at the 3 s deadline with 408."""
    base, app, directory = strict
    server = app.state.server
    release = threading.Event()

    def stall() -> None:
        release.wait(10)

    results: dict[str, Any] = {}

    def first() -> None:
        try:
            results["first"] = httpx.post(
                base + "/v1/tokenize",
                json={"messages": [{"role": "user", "content": "x"}]},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=30,
            )
        except Exception as exc:
            results["first"] = exc

    original = server.tokenize
    server.tokenize = lambda *args: (stall(), original(*args))[1]
    try:
        thread = threading.Thread(target=first)
        thread.start()
        deadline = time.monotonic() + 10
        while server.metrics.in_flight._value.get() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as caught:
            client(base, KEY).chat.completions.create(
                model=directory.name, messages=[{"role": "user", "content": "hi"}], max_tokens=1
            )
        error = error_of(caught, 429)
        assert error["code"] == "queue_full"
        assert caught.value.response.headers["retry-after"] == "1"
        thread.join(20)
    finally:
        release.set()
        server.tokenize = original
    assert results["first"].status_code == 408
    assert results["first"].json()["error"]["code"] == "deadline_exceeded"


def test_access_log_has_no_media(
    strict: tuple[str, Any, Path], caplog: pytest.LogCaptureFixture
) -> None:
    base, _, directory = strict
    with caplog.at_level("INFO", logger="vlprep.serve.access"):
        client(base, KEY).chat.completions.create(
            model=directory.name, messages=user(image_part(data_uri(HOPPER))), max_tokens=1
        )
        deadline = time.monotonic() + 10  # the line is written after the last byte is sent
        while time.monotonic() < deadline:
            lines = [r.getMessage() for r in caplog.records if r.name == "vlprep.serve.access"]
            if lines and json.loads(lines[-1])["path"] == "/v1/chat/completions":
                break
            time.sleep(0.02)
    record = json.loads(lines[-1])
    assert record["status"] == 200 and record["images"] == 1
    assert record["prompt_tokens"] > 0
    assert "base64" not in lines[-1] and "hi" not in record


def test_urllib_smoke_no_openai(strict: tuple[str, Any, Path]) -> None:
    base, _, _ = strict
    with urllib.request.urlopen(base + "/health", timeout=10) as answer:
        assert json.load(answer) == {"status": "ok"}


def test_cli_names_the_extra_and_builds_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from vlprep._errors import BackendUnavailableError
    from vlprep.cli import serve as cli

    def missing() -> None:
        raise BackendUnavailableError("vlprep-serve needs fastapi: pip install 'vlprep[serve]'")

    monkeypatch.setattr(cli, "require", missing)
    assert cli.main(["--model", str(tmp_path)]) == 2
    assert "pip install 'vlprep[serve]'" in capsys.readouterr().err
    key = tmp_path / "key.txt"
    key.write_text("k3y\n")
    args = cli.build_parser().parse_args(
        [
            "--upstream",
            "http://127.0.0.1:1/v1",
            "--processor",
            str(tmp_path),
            "--api-key-file",
            str(key),
            "--allow-host",
            "cdn.example.com",
            "--max-body-mb",
            "1",
            "--max-images",
            "3",
        ]
    )
    settings = cli.settings_from_args(args)
    assert settings.api_key == "k3y" and settings.max_body_bytes == 1024 * 1024
    assert settings.policy.allowed_hosts == frozenset({"cdn.example.com"})
    assert settings.policy.allow_private_networks is False and settings.max_images == 3
    assert "k3y" not in repr(settings)


def test_importing_the_cli_needs_no_server_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys, vlprep, vlprep.cli.serve, vlprep._serve\n"
        "assert not {'fastapi', 'uvicorn', 'prometheus_client', 'httpx'} & set(sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_max_total_tokens_fits_the_request_or_refuses_with_the_deficit(
    strict: tuple[str, Any, Path],
) -> None:
    base, _, directory = strict
    messages = user(image_part(data_uri(HOPPER)))
    counted = tokenize(base, messages, KEY)
    api = client(base, KEY)

    def chat(max_total_tokens: int) -> Any:
        return api.chat.completions.create(
            model=directory.name,
            messages=messages,
            max_tokens=2,
            extra_body={"max_total_tokens": max_total_tokens},
        )

    fits = chat(counted["count"] + 2)  # exactly room for the prompt and the answer
    assert fits.usage is not None and fits.usage.prompt_tokens == counted["count"]
    # one token short: the image is fitted (vlprep.fit), not refused
    limit = counted["count"] + 1
    fitted = chat(limit)
    assert fitted.usage is not None
    assert fitted.usage.prompt_tokens + 2 <= limit
    assert fitted.usage.prompt_tokens < counted["count"]
    response = httpx.post(
        base + "/v1/tokenize",
        json={"messages": messages, "max_tokens": 2, "max_total_tokens": limit},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    planned = response.json()
    assert planned["count"] == fitted.usage.prompt_tokens  # /v1/tokenize shows the fit
    assert planned["image_tokens"] < counted["image_tokens"]
    # below the text and the image at its floor: refused with the deficit
    floor = counted["text_tokens"] + 2
    with pytest.raises(openai.BadRequestError) as caught:
        chat(floor)
    error = error_of(caught, 400)
    assert error["code"] == "context_length_exceeded"
    assert f"over max_total_tokens={floor}" in error["message"]
    assert "every image and video at its floor" in error["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(
            model=directory.name,
            messages=messages,
            max_tokens=8,
            extra_body={"max_total_tokens": 8},
        )
    assert error_of(caught, 400)["param"] == "max_tokens"
