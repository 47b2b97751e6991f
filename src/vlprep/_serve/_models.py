"""The request bodies, as pydantic models (FastAPI's), and the parsing of a body into one.

``messages`` are kept as plain JSON here and checked by :mod:`vlprep._serve._translate`,
which names the message and part at fault. Fields that would change the answer but that
this server does not implement (tools, logprobs, ``n > 1``, penalties) are refused, not
ignored.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlprep._serve._http_errors import ApiError

__all__ = ["ChatRequest", "StreamOptions", "TokenizeRequest", "parse_body"]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's fields that this server honours, plus
    ``max_total_tokens`` (prompt plus answer ceiling for this request)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[Any] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    max_total_tokens: int | None = Field(default=None, ge=2)
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    response_format: dict[str, Any] | None = None

    def check_supported(self) -> None:
        """Refuse what would change the answer and is not implemented.

        Raises:
            ApiError: 400 naming the field.
        """
        if self.n != 1:
            raise ApiError(400, "only n=1 is supported", param="n", code="unsupported_parameter")
        extra = self.model_extra or {}
        for name in ("tools", "tool_choice", "functions", "function_call", "audio", "modalities"):
            if extra.get(name) not in (None, [], "none"):
                raise ApiError(
                    400,
                    f"'{name}' is not supported by this server",
                    param=name,
                    code="unsupported_parameter",
                )
        if self.logprobs or extra.get("top_logprobs"):
            raise ApiError(
                400, "logprobs are not supported", param="logprobs", code="unsupported_parameter"
            )
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) not in (None, 0, 0.0):
                raise ApiError(
                    400,
                    f"'{name}' is not supported (only 0)",
                    param=name,
                    code="unsupported_parameter",
                )
        if extra.get("logit_bias"):
            raise ApiError(
                400,
                "'logit_bias' is not supported",
                param="logit_bias",
                code="unsupported_parameter",
            )
        if self.response_format is not None and self.response_format.get("type") != "text":
            raise ApiError(
                400,
                "only response_format {'type': 'text'} is supported",
                param="response_format",
                code="unsupported_parameter",
            )
        stops = self.stops
        if len(stops) > 4 or any(len(s) > 256 for s in stops):
            raise ApiError(
                400, "'stop' takes at most 4 strings of at most 256 characters", param="stop"
            )

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def answer_tokens(self) -> int | None:
        """``max_completion_tokens``, else ``max_tokens`` (``None``: the server's default)."""
        return self.max_completion_tokens or self.max_tokens


class TokenizeRequest(BaseModel):
    """``POST /v1/tokenize``: the messages to count (as for a chat request)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[Any] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_total_tokens: int | None = Field(default=None, ge=2)


def parse_body(body: bytes, model: type[Any]) -> Any:
    """``body`` (JSON) validated as ``model``.

    Raises:
        ApiError: 400 for text that is not JSON, or a field of the wrong type or range; the
            message names the field and the rule, never the value sent.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ApiError(
            400,
            f"{where or 'body'}: {first.get('msg', 'invalid')}",
            param=where,
            code="invalid_parameter",
        ) from None
