"""vlprep-serve as a gateway: a loopback recorder (and a second vlprep-serve) as the upstream.

The recorder keeps every request body and answers with canned chunks, so the test sees what
an upstream such as vLLM receives (each image as a PNG ``data:`` URI at exactly vlprep's
planned size, EXIF orientation applied) and that the streamed answer reaches the ``openai``
client unchanged.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.conftest import MEDIA, photo
from tests.media_server import MediaServer, serving
from tests.serve_server import running
from vlprep import FetchPolicy, ImageOptions, Loader, fit
from vlprep._serve import ServeSettings, create_app
from vlprep.testing import save_checkpoint, save_processor

LOOPBACK = FetchPolicy.strict().replace(
    allow_private_networks=True, allowed_hosts=frozenset({"127.0.0.1"})
)
ROTATED = (MEDIA / "images" / "hopper_orientation_6.jpg").read_bytes()
VIDEO = (MEDIA / "videos" / "h265_video.mp4").read_bytes()
CHUNKS = [
    {
        "id": "up-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
    },
    {
        "id": "up-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "delta": {"content": "Grace "}, "finish_reason": None}],
    },
    {
        "id": "up-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [
            {"index": 0, "delta": {"content": "Hopper \u00e9\u00e8"}, "finish_reason": None}
        ],
    },
    {
        "id": "up-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    },
]
ANSWER = {
    "id": "up-2",
    "object": "chat.completion",
    "created": 2,
    "model": "up",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "A portrait."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
}


def rotated_photo() -> bytes:
    """A 200x120 (w x h) JPEG stored sideways with EXIF orientation 6 (shown 120x200)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    photo(200, 120, seed=3).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


class Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.status = 200

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(
            200,
            json.dumps(
                {
                    "object": "list",
                    "data": [{"id": "up", "object": "model", "created": 0, "owned_by": "test"}],
                }
            ).encode(),
        )

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        if self.server.status != 200:
            error = {
                "error": {
                    "message": "upstream says no",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "upstream_no",
                }
            }
            self._send(self.server.status, json.dumps(error).encode())
            return
        if not body.get("stream"):
            self._send(200, json.dumps(ANSWER).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in CHUNKS:
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    big = io.BytesIO()
    photo(1200, 900, seed=5).save(big, format="JPEG", quality=90)
    files = {
        "hopper6.jpg": ROTATED,
        "sideways.jpg": rotated_photo(),
        "big.jpg": big.getvalue(),
        "clip.mp4": VIDEO,
    }
    with serving(files) as server:
        yield server


@pytest.fixture(scope="module", params=["qwen2.5-vl", "qwen3-vl"])
def gateway(
    request: pytest.FixtureRequest, recorder: Recorder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Any]]:
    directory = save_processor(request.param, tmp_path_factory.mktemp("proc"))
    settings = ServeSettings(
        upstream=recorder.base, processor=str(directory), policy=LOOPBACK, max_total_tokens=8192
    )
    app = create_app(settings)
    with running(app) as base:
        yield base, app


def data_image(url: str) -> Image.Image:
    head, payload = url.split(",", 1)
    assert head == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    assert image.format == "PNG"
    return image


def test_images_reach_upstream_at_the_planned_size_upright(
    gateway: tuple[str, Any], recorder: Recorder, media: MediaServer
) -> None:
    base, app = gateway
    preset = app.state.server.backend.preset
    parts = [
        {"type": "image_url", "image_url": {"url": media.url("f", "hopper6.jpg")}},
        {
            "type": "image_url",
            "image_url": {"url": media.url("f", "sideways.jpg")},
            "max_pixels": 2 * preset.image_min_pixels,
        },
    ]
    messages = [{"role": "user", "content": [*parts, {"type": "text", "text": "Who?"}]}]
    planned = httpx.post(base + "/v1/tokenize", json={"messages": messages}).json()["items"]
    with openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as api:
        chunks = list(api.chat.completions.create(model="up", messages=messages, stream=True))
    # the stream reaches the client unchanged
    assert [c.model_dump(exclude_none=True) for c in chunks] == [
        openai.types.chat.ChatCompletionChunk.model_validate(c).model_dump(exclude_none=True)
        for c in CHUNKS
    ]
    sent = recorder.bodies[-1]
    assert sent["model"] == "up" and sent["stream"] is True
    forwarded = sent["messages"][0]["content"]
    assert forwarded[2] == {"type": "text", "text": "Who?"}
    loader = Loader(policy=LOOPBACK, preset=preset)
    sideways = Loader(policy=LOOPBACK, preset=preset, image=ImageOptions(exif_transpose=False))
    for part, plan, original in zip(forwarded[:2], planned, parts, strict=True):
        assert set(part) == {"type", "image_url"} and part["type"] == "image_url"
        image = data_image(part["image_url"]["url"])
        assert [image.height, image.width] == plan["size"]
        element = {
            "image": original["image_url"]["url"],
            **{k: v for k, v in original.items() if k not in ("type", "image_url")},
        }
        expected = loader.fetch_image(element)
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(expected))
        unrotated = sideways.fetch_image(element)
        assert not np.array_equal(np.asarray(image.convert("RGB")), np.asarray(unrotated))
    # the sideways photo is sent upright: taller than wide
    tall = data_image(forwarded[1]["image_url"]["url"])
    assert tall.height > tall.width


def test_requests_are_fitted_before_forwarding(
    gateway: tuple[str, Any], recorder: Recorder, media: MediaServer
) -> None:
    """A request over its max_total_tokens reaches the upstream with every image at the
    size vlprep.fit chose: /v1/tokenize with the same budget shows those sizes."""
    base, app = gateway
    processor = app.state.server.backend.processor
    parts = [
        {"type": "image_url", "image_url": {"url": media.url("f", name)}}
        for name in ("hopper6.jpg", "big.jpg")
    ]
    messages = [{"role": "user", "content": [*parts, {"type": "text", "text": "Who?"}]}]
    full = httpx.post(base + "/v1/tokenize", json={"messages": messages}).json()
    limit = full["count"] + 4 - full["image_tokens"] // 2  # half the image tokens must go
    response = httpx.post(
        base + "/v1/tokenize",
        json={"messages": messages, "max_tokens": 4, "max_total_tokens": limit},
    )
    assert response.status_code == 200, response.text
    fitted = response.json()
    assert fitted["count"] + 4 <= limit < full["count"]
    with openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as api:
        api.chat.completions.create(
            model="up", messages=messages, max_tokens=4, extra_body={"max_total_tokens": limit}
        )
    sent = recorder.bodies[-1]
    assert "max_total_tokens" not in sent  # vlprep's field is not forwarded
    forwarded = sent["messages"][0]["content"][:2]
    sizes = [list(data_image(p["image_url"]["url"]).size[::-1]) for p in forwarded]
    assert sizes == [item["size"] for item in fitted["items"]]
    assert sizes != [item["size"] for item in full["items"]]
    # the forwarded request, as the upstream's processor counts it, is within the budget
    (result,) = fit(
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": p["image_url"]["url"]} for p in forwarded]
                + [{"type": "text", "text": "Who?"}],
            }
        ],
        limit,
        processor=processor,
        reserve=4,
    )
    assert result.total == result.total_before == fitted["count"]


def test_non_stream_answer_and_upstream_errors(
    gateway: tuple[str, Any], recorder: Recorder, media: MediaServer
) -> None:
    base, _ = gateway
    messages = [{"role": "user", "content": "hello"}]
    with openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as api:
        answer = api.chat.completions.create(model="up", messages=messages, max_tokens=5)
        assert answer.model_dump(
            exclude_none=True
        ) == openai.types.chat.ChatCompletion.model_validate(ANSWER).model_dump(exclude_none=True)
        assert recorder.bodies[-1]["max_tokens"] == 5
        assert [m.id for m in api.models.list().data] == ["up"]
        recorder.status = 400
        try:
            with pytest.raises(openai.BadRequestError) as caught:
                api.chat.completions.create(model="up", messages=messages)
        finally:
            recorder.status = 200
        assert caught.value.response.json()["error"]["code"] == "upstream_no"
        # a refused source never reaches the upstream
        count = len(recorder.bodies)
        with pytest.raises(openai.BadRequestError) as refused:
            api.chat.completions.create(
                model="up",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.jpg"}}
                        ],
                    }
                ],
            )
        assert refused.value.response.json()["error"]["code"] == "source_not_allowed"
        assert len(recorder.bodies) == count


def test_video_forwarded_as_planned_frames(
    gateway: tuple[str, Any], recorder: Recorder, media: MediaServer
) -> None:
    base, _ = gateway
    part = {"type": "video_url", "video_url": {"url": media.url("f", "clip.mp4")}, "fps": 4}
    messages = [{"role": "user", "content": [part, {"type": "text", "text": "What happens?"}]}]
    planned = httpx.post(base + "/v1/tokenize", json={"messages": messages}).json()["items"][0]
    with openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as api:
        api.chat.completions.create(model="up", messages=messages)
    video = recorder.bodies[-1]["messages"][0]["content"][0]
    assert video["type"] == "video"
    assert len(video["video"]) == planned["frames"]
    assert [video["resized_height"], video["resized_width"]] == planned["size"]
    assert video["sample_fps"] == pytest.approx(planned["sample_fps"])
    for url in video["video"]:
        frame = data_image(url)
        assert [frame.height, frame.width] == planned["size"]


def test_video_forwarded_as_its_bytes_without_a_decode(
    recorder: Recorder, media: MediaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """upstream_video="bytes": the fetched container goes upstream as a data: URI, and the
    count comes from its index: no frame is decoded for a video the upstream decodes."""
    import vlprep._serve._gateway as gateway_module

    def no_decode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a video forwarded as bytes was decoded")

    monkeypatch.setattr(gateway_module, "load_element", no_decode)
    settings = ServeSettings(
        upstream=recorder.base,
        processor=str(save_processor("qwen2.5-vl", tmp_path)),
        policy=LOOPBACK,
        upstream_video="bytes",
    )
    part = {"type": "video_url", "video_url": {"url": media.url("f", "clip.mp4")}, "fps": 4}
    messages = [{"role": "user", "content": [part, {"type": "text", "text": "What happens?"}]}]
    with running(create_app(settings)) as base:
        counted = httpx.post(base + "/v1/tokenize", json={"messages": messages}).json()
        with openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as api:
            api.chat.completions.create(model="up", messages=messages)
    sent = recorder.bodies[-1]["messages"][0]["content"][0]
    assert sent["type"] == "video_url"
    head, payload = sent["video_url"]["url"].split(",", 1)
    assert head.startswith("data:video/") and head.endswith(";base64")
    assert base64.b64decode(payload) == VIDEO
    assert counted["video_tokens"] > 0 and counted["items"][0]["frames"] > 0


def test_upstream_down_is_502(tmp_path: Path) -> None:
    directory = save_processor("qwen2-vl", tmp_path)
    settings = ServeSettings(
        upstream="http://127.0.0.1:9/v1", processor=str(directory), upstream_connect_timeout=2
    )
    with running(create_app(settings)) as base:
        answer = httpx.post(
            base + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_unreachable"


def test_chained_to_a_second_vlprep_serve(tmp_path: Path, media: MediaServer) -> None:
    """gateway -> vlprep-serve (model mode, strict policy: it only sees data: URIs); the
    upstream's prompt count equals the gateway's own /v1/tokenize count."""
    checkpoint = save_checkpoint("qwen2.5-vl", tmp_path / "ckpt")
    upstream_app = create_app(ServeSettings(model=str(checkpoint), device="cpu"))
    with running(upstream_app) as upstream:
        gateway_app = create_app(
            ServeSettings(upstream=upstream + "/v1", processor=str(checkpoint), policy=LOOPBACK)
        )
        with running(gateway_app) as base:
            messages = [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": media.url("f", "sideways.jpg")}},
                        {"type": "text", "text": "Describe."},
                    ],
                }
            ]
            counted = httpx.post(base + "/v1/tokenize", json={"messages": messages}).json()
            with openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as api:
                answer = api.chat.completions.create(model="ckpt", messages=messages, max_tokens=4)
                streamed = list(
                    api.chat.completions.create(
                        model="ckpt", messages=messages, max_tokens=4, stream=True
                    )
                )
    assert answer.usage is not None and answer.usage.prompt_tokens == counted["count"]
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == answer.choices[0].message.content
