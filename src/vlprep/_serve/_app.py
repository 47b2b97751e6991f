"""The FastAPI app: routes, the front middleware (auth, body cap, admission, metrics,
access log) and the two backends' chat paths."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from vlprep._errors import FetchTimeoutError
from vlprep._limits import CallBudget
from vlprep._messages import extract_vision_info
from vlprep._plans import plan
from vlprep._serve import _budget
from vlprep._serve._count import PromptCount, count_prompt
from vlprep._serve._gateway import Gateway
from vlprep._serve._http_errors import ApiError, from_exception
from vlprep._serve._metrics import CONTENT_TYPE_LATEST, Metrics
from vlprep._serve._models import ChatRequest, TokenizeRequest, parse_body
from vlprep._serve._runner_backend import RunnerBackend
from vlprep._serve._settings import ServeSettings
from vlprep._serve._translate import Translated, translate
from vlprep._version import __version__
from vlprep.runner import Sampling

__all__ = ["create_app"]

access_log = logging.getLogger("vlprep.serve.access")
logger = logging.getLogger("vlprep.serve")
T = TypeVar("T")

_ENDPOINTS = {
    "/health",
    "/metrics",
    "/v1/models",
    "/v1/tokenize",
    "/v1/chat/completions",
}
_ADMITTED = {"/v1/chat/completions", "/v1/tokenize"}
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Front:
    """Pure ASGI middleware (streaming and disconnects pass through untouched): the API key,
    the declared body size, admission to the bounded queue, then metrics and one access-log
    line per request (no message text, no media)."""

    def __init__(self, app: Any, settings: ServeSettings, metrics: Metrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics
        self.key = None if settings.api_key is None else settings.api_key.encode()
        self.admitted = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        path = scope.get("path", "")
        endpoint = path if path in _ENDPOINTS else "other"
        info: dict[str, Any] = {
            "request_id": uuid.uuid4().hex[:16],
            "started": started,
            "deadline": started + self.settings.deadline,
            "cleanup": [],
        }
        scope.setdefault("state", {})["info"] = info
        status = [0]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", []).append(
                    (b"x-request-id", info["request_id"].encode())
                )
            await send(message)

        admitted = False
        try:
            error = self._refusal(scope, path)
            if error is None and path in _ADMITTED and scope.get("method") == "POST":
                if self.admitted >= self.settings.max_queue:
                    self.metrics.rejected.inc()
                    error = ApiError(
                        429,
                        f"the server is busy ({self.admitted} requests in progress, the "
                        "limit); retry shortly",
                        "rate_limit_error",
                        "queue_full",
                        headers={"Retry-After": "1"},
                    )
                else:
                    admitted = True
                    self.admitted += 1
                    self.metrics.in_flight.inc()
            if error is not None:
                info["error"] = error.code
                await _send_error(sending, error)
                return
            await self.app(scope, receive, sending)
        finally:
            for cleanup in info["cleanup"]:
                cleanup()
            if admitted:
                self.admitted -= 1
                self.metrics.in_flight.dec()
            elapsed = time.monotonic() - started
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(elapsed)
            if info.get("error"):
                self.metrics.errors.labels(str(info["error"])).inc()
            self._log(scope, info, status[0], elapsed)

    def _refusal(self, scope: Scope, path: str) -> ApiError | None:
        headers = dict(scope.get("headers") or [])
        if self.key is not None and path.startswith("/v1/"):
            given = headers.get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                return ApiError(
                    401,
                    "a valid API key is needed: send 'Authorization: Bearer <key>'",
                    "authentication_error",
                    "invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return ApiError(400, "Content-Length is not a number", code="invalid_request")
            if declared > self.settings.max_body_bytes:
                return _too_large(self.settings.max_body_bytes)
        return None

    def _log(self, scope: Scope, info: dict[str, Any], status: int, elapsed: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        record = {
            "request_id": info["request_id"],
            "method": scope.get("method"),
            "path": scope.get("path", "")[:100],
            "status": status,
            "ms": round(elapsed * 1000, 1),
            "client": client[0] if client else None,
        }
        for key in (
            "model",
            "stream",
            "images",
            "videos",
            "prompt_tokens",
            "completion_tokens",
            "finish_reason",
            "error",
        ):
            if key in info:
                record[key] = info[key]
        access_log.info(json.dumps(record, separators=(",", ":")))


def _too_large(cap: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than {cap:,} bytes (the server's max_body_bytes); send "
        "media by URL or smaller",
        code="body_too_large",
    )


async def _read_body(request: Request, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _too_large(cap)
        chunks.append(chunk)
    return b"".join(chunks)


def _error_response(request: Request, exc: BaseException, param: str | None = None) -> Response:
    error = from_exception(exc, param)
    request.state.info["error"] = error.code
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _usage(count: PromptCount, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": count.total,
        "completion_tokens": completion,
        "total_tokens": count.total + completion,
        "prompt_tokens_details": {
            "cached_tokens": 0,
            "text_tokens": count.text,
            "image_tokens": count.image,
            "video_tokens": count.video,
        },
    }


class _Server:
    """The state shared by the routes: settings, backend, pool, metrics, HTTP client."""

    def __init__(self, settings: ServeSettings, backend: RunnerBackend | Gateway) -> None:
        self.settings = settings
        self.backend = backend
        self.metrics = Metrics()
        self.pool = ThreadPoolExecutor(
            settings.preprocess_workers, thread_name_prefix="vlprep-serve-prep"
        )
        self.client: httpx.AsyncClient | None = None
        if isinstance(backend, Gateway):
            headers = {}
            if settings.upstream_api_key:
                headers["Authorization"] = f"Bearer {settings.upstream_api_key}"
            self.client = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(
                    settings.upstream_timeout, connect=settings.upstream_connect_timeout
                ),
            )

    async def in_pool(self, info: dict[str, Any], work: Callable[[], T]) -> T:
        """``work()`` on the preprocessing pool, within the request's deadline."""
        left = info["deadline"] - time.monotonic()
        future = asyncio.get_running_loop().run_in_executor(self.pool, work)
        try:
            return await asyncio.wait_for(future, timeout=max(0.0, left))
        except asyncio.TimeoutError:
            raise self.deadline_error() from None
        except FetchTimeoutError:
            # The call deadline is the request's: its expiry is the server's 408, a slow
            # source within it the client's 400.
            if time.monotonic() >= info["deadline"] - 0.05:
                raise self.deadline_error() from None
            raise

    def deadline_error(self) -> ApiError:
        return ApiError(
            408,
            f"the request took longer than the server's deadline of {self.settings.deadline:g} s",
            "timeout_error",
            "deadline_exceeded",
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if isinstance(self.backend, RunnerBackend):
            self.backend.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ shared steps

    def translate(self, messages: list[Any], info: dict[str, Any]) -> Translated:
        translated = translate(
            messages,
            self.backend.preset,
            max_images=self.settings.max_images,
            max_videos=self.settings.max_videos,
        )
        info["images"], info["videos"] = translated.images, translated.videos
        self.metrics.media_items.labels("image").inc(translated.images)
        self.metrics.media_items.labels("video").inc(translated.videos)
        return translated

    def max_new_tokens(self, request: ChatRequest) -> int:
        wanted = request.answer_tokens or self.settings.default_max_tokens
        if wanted > self.settings.max_tokens_limit:
            raise ApiError(
                400,
                f"max_tokens {wanted} is above this server's limit of "
                f"{self.settings.max_tokens_limit}",
                param="max_tokens",
                code="invalid_parameter",
            )
        return wanted

    def ceiling(self, requested: int | None) -> int | None:
        backend = self.backend
        server = (
            backend.server_ceiling()
            if isinstance(backend, RunnerBackend)
            else self.settings.max_total_tokens
        )
        return _budget.ceiling(requested, server)

    def tokenize(
        self, translated: Translated, limit: int | None, max_new: int, deadline: float
    ) -> dict[str, Any]:
        """Fit (``limit`` not ``None``), then plan every item (headers and container
        indices, no pixels) and count: what a chat request with these messages and
        ``max_tokens=max_new`` would load."""
        backend = self.backend
        elements = extract_vision_info([translated.conversation])
        CallBudget(self.settings.limits).counted(elements)
        conversation = _budget.fit_conversation(
            translated.conversation,
            limit,
            max_new,
            processor=backend.processor,
            preset=backend.preset,
            settings=self.settings,
            deadline=deadline,
        )
        planned = plan(
            [conversation],
            preset=backend.preset,
            policy=self.settings.policy,
            image_options=self.settings.image_options,
            video_options=self.settings.video_options,
        )
        items = list(planned.elements)
        count = count_prompt(conversation, backend.processor, backend.preset, items)
        described = []
        for where, item in zip(translated.parts, items, strict=True):
            entry: dict[str, Any] = {
                "message": where.message,
                "part": where.part,
                "kind": item.kind,
                "size": list(item.size),
                "grid": list(item.grid),
                "tokens": item.tokens,
            }
            if item.kind == "video":
                entry["frames"] = len(item.indices or ())
                entry["sample_fps"] = item.sample_fps
            described.append(entry)
        return {"count": count, "items": described}


def create_app(settings: ServeSettings, *, runner: Any = None, processor: Any = None) -> FastAPI:
    """The ASGI app of ``vlprep-serve`` for ``settings``.

    Args:
        settings: the configuration (a model or an upstream).
        runner: an already loaded :class:`vlprep.runner.Runner` for the model mode (tests,
            embedding); ``None`` loads ``settings.model``.
        processor: the gateway's processor object; ``None`` loads ``settings.processor``.
    """
    backend: RunnerBackend | Gateway = (
        RunnerBackend(settings, runner)
        if settings.model is not None
        else Gateway(settings, processor)
    )
    server = _Server(settings, backend)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await server.close()

    app = FastAPI(
        title="vlprep-serve",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.server = server
    app.add_middleware(_Front, settings=settings, metrics=server.metrics)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        if isinstance(backend, RunnerBackend):
            data = [
                {
                    "id": backend.name,
                    "object": "model",
                    "created": backend.created,
                    "owned_by": "vlprep",
                    "max_model_len": backend.server_ceiling(),
                }
            ]
            return JSONResponse({"object": "list", "data": data})
        assert server.client is not None
        try:
            answer = await server.client.get(f"{backend.base}/models")
        except httpx.HTTPError as exc:
            return _upstream_failure(request, exc)
        return Response(
            answer.content, status_code=answer.status_code, media_type="application/json"
        )

    @app.post("/v1/tokenize")
    async def tokenize(request: Request) -> Response:
        info = request.state.info
        try:
            body = await _read_body(request, settings.max_body_bytes)
            asked = parse_body(body, TokenizeRequest)
            translated = server.translate(asked.messages, info)
            limit = server.ceiling(asked.max_total_tokens)
            reserve = asked.max_tokens or 0
            result = await server.in_pool(
                info, lambda: server.tokenize(translated, limit, reserve, info["deadline"])
            )
        except Exception as exc:  # every failure answered in the OpenAI shape
            return _error_response(request, exc)
        count: PromptCount = result["count"]
        return JSONResponse(
            {
                "count": count.total,
                "prompt_tokens": count.total,
                "text_tokens": count.text,
                "image_tokens": count.image,
                "video_tokens": count.video,
                "max_total_tokens": limit,
                "items": result["items"],
            }
        )

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        info = request.state.info
        try:
            body = await _read_body(request, settings.max_body_bytes)
            asked = parse_body(body, ChatRequest)
            asked.check_supported()
            info["stream"] = asked.stream
            info["model"] = (asked.model or "")[:100]
            translated = server.translate(asked.messages, info)
            max_new = server.max_new_tokens(asked)
            limit = server.ceiling(asked.max_total_tokens)
            if isinstance(backend, RunnerBackend):
                if asked.model and asked.model != backend.name:
                    raise ApiError(
                        404,
                        f"model {asked.model[:100]!r} does not exist here; "
                        f"this server serves {backend.name!r}",
                        code="model_not_found",
                        param="model",
                    )
                return await _runner_chat(
                    server,
                    backend,
                    request,
                    asked,
                    translated=translated,
                    max_new=max_new,
                    limit=limit,
                )
            return await _gateway_chat(
                server,
                backend,
                request,
                body,
                asked=asked,
                translated=translated,
                max_new=max_new,
                limit=limit,
            )
        except Exception as exc:  # every failure answered in the OpenAI shape
            return _error_response(request, exc)

    return app


def _fitted(
    server: _Server,
    backend: RunnerBackend | Gateway,
    translated: Translated,
    *,
    limit: int | None,
    max_new: int,
    deadline: float,
) -> list[dict[str, Any]]:
    """The request's conversation fitted into ``limit`` with room for ``max_new`` tokens
    (:func:`vlprep._serve._budget.fit_conversation`), in the preprocessing pool."""
    return _budget.fit_conversation(
        translated.conversation,
        limit,
        max_new,
        processor=backend.processor,
        preset=backend.preset,
        settings=server.settings,
        deadline=deadline,
    )


# ---------------------------------------------------------------------- model mode


def _sampling(asked: ChatRequest, max_new: int) -> Sampling:
    temperature = asked.temperature
    greedy = temperature == 0 or (temperature is None and asked.top_p in (None, 1))
    return Sampling(
        max_new_tokens=max_new,
        do_sample=not greedy,
        temperature=temperature or 1.0,
        top_p=asked.top_p or 1.0,
        seed=asked.seed,
    )


async def _runner_chat(
    server: _Server,
    backend: RunnerBackend,
    request: Request,
    asked: ChatRequest,
    *,
    translated: Translated,
    max_new: int,
    limit: int | None,
) -> Response:
    info = request.state.info
    started = time.monotonic()

    def prepare() -> tuple[Any, PromptCount]:
        fitted = _fitted(
            server, backend, translated, limit=limit, max_new=max_new, deadline=info["deadline"]
        )
        return backend.prepare(fitted, info["deadline"])

    inputs, count = await server.in_pool(info, prepare)
    server.metrics.preprocess.observe(time.monotonic() - started)
    _budget.check(count, max_new, limit)
    stream = backend.engine.submit(inputs, _sampling(asked, max_new), stop=asked.stops)
    info["cleanup"].append(stream.cancel)
    info["prompt_tokens"] = count.total
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    if asked.stream:
        include_usage = bool(asked.stream_options and asked.stream_options.include_usage)
        return StreamingResponse(
            _sse(
                server,
                info,
                stream,
                count,
                completion_id=completion_id,
                created=created,
                model=backend.name,
                include_usage=include_usage,
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    pieces = await _collect(server, request, stream)
    result = stream.result
    if result is None or result.finish_reason == "cancelled":
        raise ApiError(
            503,
            "the generation was cancelled (the server is shutting down)",
            "server_error",
            "cancelled",
        )
    _account(server, info, count, result.generated_tokens, result.finish_reason)
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": backend.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces)},
                    "finish_reason": result.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(count, result.generated_tokens),
        }
    )


def _account(
    server: _Server, info: dict[str, Any], count: PromptCount, generated: int, reason: str
) -> None:
    info["completion_tokens"], info["finish_reason"] = generated, reason
    metrics = server.metrics
    metrics.prompt_tokens.inc(count.total)
    metrics.completion_tokens.inc(generated)
    metrics.vision_tokens.labels("image").inc(count.image)
    metrics.vision_tokens.labels("video").inc(count.video)


async def _disconnected(request: Request) -> None:
    """Returns when the client hangs up (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _collect(server: _Server, request: Request, stream: Any) -> list[str]:
    """Every text piece of ``stream``, within the deadline; the stream is cancelled when the
    client disconnects or time is up."""
    info = request.state.info

    async def gather() -> list[str]:
        pieces: list[str] = []
        async for piece in stream:
            if not pieces:
                server.metrics.first_token.observe(time.monotonic() - info["started"])
            pieces.append(piece)
        return pieces

    work = asyncio.ensure_future(gather())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        left = max(0.0, info["deadline"] - time.monotonic())
        done, _ = await asyncio.wait(
            {work, gone}, timeout=left, return_when=asyncio.FIRST_COMPLETED
        )
        if work in done:
            return work.result()
        stream.cancel()
        if gone in done:
            info["error"] = "client_disconnected"
            raise ApiError(499, "client disconnected", code="client_disconnected")
        raise server.deadline_error()
    finally:
        for task in (work, gone):
            if not task.done():
                task.cancel()


def _chunk(
    completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None
) -> bytes:
    data = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _sse(
    server: _Server,
    info: dict[str, Any],
    stream: Any,
    count: PromptCount,
    *,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """SSE chunks: the role, each text delta, the finish reason, the usage (when asked),
    ``[DONE]``. An error after the first byte ends the stream with an error event."""
    try:
        yield _chunk(completion_id, created, model, {"role": "assistant", "content": ""})
        pieces = stream.__aiter__()
        first = True
        while True:
            left = info["deadline"] - time.monotonic()
            try:
                piece = await asyncio.wait_for(pieces.__anext__(), timeout=max(0.0, left))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                stream.cancel()
                raise server.deadline_error() from None
            if first:
                server.metrics.first_token.observe(time.monotonic() - info["started"])
                first = False
            yield _chunk(completion_id, created, model, {"content": piece})
        result = stream.result
        if result is None or result.finish_reason == "cancelled":
            raise ApiError(503, "the generation was cancelled", "server_error", "cancelled")
        _account(server, info, count, result.generated_tokens, result.finish_reason)
        yield _chunk(completion_id, created, model, {}, result.finish_reason)
        if include_usage:
            usage = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(count, result.generated_tokens),
            }
            yield b"data: " + json.dumps(usage).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    except Exception as exc:  # headers are sent: the error travels as an event
        error = from_exception(exc)
        info["error"] = error.code
        yield b"data: " + json.dumps(error.body()).encode() + b"\n\n"
    finally:
        stream.cancel()


# ---------------------------------------------------------------------- gateway mode


def _upstream_failure(request: Request, exc: BaseException) -> Response:
    if isinstance(exc, httpx.TimeoutException):
        error = ApiError(
            504, "the upstream server did not answer in time", "upstream_error", "upstream_timeout"
        )
    else:
        error = ApiError(
            502,
            f"the upstream server could not be reached ({type(exc).__name__})",
            "upstream_error",
            "upstream_unreachable",
        )
    request.state.info["error"] = error.code
    return JSONResponse(error.body(), status_code=error.status)


def _upstream_payload(
    server: _Server,
    gateway: Gateway,
    body: bytes,
    *,
    asked: ChatRequest,
    translated: Translated,
    forwarded: list[dict[str, Any]],
    max_new: int,
) -> dict[str, Any]:
    """The client's request as the upstream gets it: the vision parts replaced by what
    vlprep loaded, vlprep's own fields removed, the model and answer length set."""
    payload: dict[str, Any] = json.loads(body)
    payload["messages"] = gateway.rebuild(payload["messages"], translated, forwarded)
    payload.pop("max_total_tokens", None)
    if server.settings.upstream_model:
        payload["model"] = server.settings.upstream_model
    if asked.answer_tokens is None:
        payload["max_tokens"] = max_new
    return payload


async def _gateway_chat(
    server: _Server,
    gateway: Gateway,
    request: Request,
    body: bytes,
    *,
    asked: ChatRequest,
    translated: Translated,
    max_new: int,
    limit: int | None,
) -> Response:
    info = request.state.info
    started = time.monotonic()

    def prepare() -> tuple[list[dict[str, Any]], PromptCount]:
        fitted = _fitted(
            server, gateway, translated, limit=limit, max_new=max_new, deadline=info["deadline"]
        )
        loaded = dataclasses.replace(translated, conversation=fitted)
        forwarded, plans = gateway.load(loaded, info["deadline"])
        count = count_prompt(fitted, gateway.processor, gateway.preset, plans)
        return forwarded, count

    forwarded, count = await server.in_pool(info, prepare)
    server.metrics.preprocess.observe(time.monotonic() - started)
    _budget.check(count, max_new, limit)
    payload = _upstream_payload(
        server,
        gateway,
        body,
        asked=asked,
        translated=translated,
        forwarded=forwarded,
        max_new=max_new,
    )
    info["prompt_tokens"] = count.total
    assert server.client is not None
    client = server.client
    url = f"{gateway.base}/chat/completions"
    left = max(0.001, info["deadline"] - time.monotonic())
    try:
        upstream = await asyncio.wait_for(
            client.send(client.build_request("POST", url, json=payload), stream=True),
            timeout=left,
        )
    except asyncio.TimeoutError:
        raise server.deadline_error() from None
    except httpx.HTTPError as exc:
        return _upstream_failure(request, exc)
    server.metrics.upstream.labels(str(upstream.status_code)).inc()
    loop = asyncio.get_running_loop()
    info["cleanup"].append(lambda: loop.create_task(upstream.aclose()) and None)
    if upstream.status_code != 200 or not asked.stream:
        try:
            content = await upstream.aread()
        except httpx.HTTPError as exc:
            return _upstream_failure(request, exc)
        finally:
            await upstream.aclose()
        if upstream.status_code >= 500:
            error = ApiError(
                502,
                f"the upstream server failed (HTTP {upstream.status_code})",
                "upstream_error",
                "upstream_failed",
            )
            info["error"] = error.code
            return JSONResponse(error.body(), status_code=502)
        return Response(
            content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "application/json"),
        )

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            error = ApiError(
                502,
                f"the upstream stream broke ({type(exc).__name__})",
                "upstream_error",
                "upstream_failed",
            )
            info["error"] = error.code
            yield b"data: " + json.dumps(error.body()).encode() + b"\n\n"
        finally:
            await upstream.aclose()

    return StreamingResponse(
        relay(),
        media_type=upstream.headers.get("content-type", "text/event-stream"),
        headers={"Cache-Control": "no-cache"},
    )
