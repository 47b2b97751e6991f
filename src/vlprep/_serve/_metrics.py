"""Prometheus metrics of one app, on a registry of its own (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Every metric ``vlprep-serve`` exports (names prefixed ``vlprep_serve_``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "vlprep_serve_requests", "HTTP requests answered", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "vlprep_serve_request_seconds",
            "Request wall time (to the last byte)",
            ["endpoint"],
            buckets=_SECONDS,
            registry=r,
        )
        self.errors = Counter("vlprep_serve_errors", "Error answers by code", ["code"], registry=r)
        self.rejected = Counter(
            "vlprep_serve_rejected", "Requests answered 429 (queue full)", registry=r
        )
        self.in_flight = Gauge(
            "vlprep_serve_in_flight", "Requests admitted and not finished", registry=r
        )
        self.prompt_tokens = Counter(
            "vlprep_serve_prompt_tokens", "Prompt tokens of answered requests", registry=r
        )
        self.completion_tokens = Counter(
            "vlprep_serve_completion_tokens", "Generated tokens", registry=r
        )
        self.vision_tokens = Counter(
            "vlprep_serve_vision_tokens", "Vision placeholder tokens", ["modality"], registry=r
        )
        self.media_items = Counter(
            "vlprep_serve_media_items", "Images and videos received", ["modality"], registry=r
        )
        self.preprocess = Histogram(
            "vlprep_serve_preprocess_seconds",
            "Fetch, decode and input building per request",
            buckets=_SECONDS,
            registry=r,
        )
        self.first_token = Histogram(
            "vlprep_serve_time_to_first_token_seconds",
            "Request start to the first text",
            buckets=_SECONDS,
            registry=r,
        )
        self.upstream = Counter(
            "vlprep_serve_upstream_responses",
            "Gateway: upstream answers by status",
            ["status"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
