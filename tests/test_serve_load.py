"""The bounded HTTP load test: 32 streaming ``openai`` clients against vlprep-serve on loopback.

The server runs in this process (``tests/serve_server.py``) on the batching engine; the
clients are ``benchmarks/serve_load.py``'s, which also measure throughput and the server's
RSS in a separate process (``--http``; figures in docs/performance.md). Here nothing is
timed: every request must complete or be refused with 429, never a 5xx or a broken stream.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tests.serve_server import running
from vlprep._serve import ServeSettings, create_app
from vlprep.testing import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _benchmark() -> Any:
    spec = importlib.util.spec_from_file_location(
        "serve_load", ROOT / "benchmarks" / "serve_load.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("max_queue", [64, 6])
def test_32_streaming_openai_clients(max_queue: int, tmp_path: Path) -> None:
    directory = save_checkpoint("qwen2-vl", tmp_path / "qwen2_vl")
    settings = ServeSettings(model=str(directory), device="cpu", max_queue=max_queue)
    with running(create_app(settings)) as base:
        row = _benchmark().http_clients(base, directory.name, clients=32, seconds=2.0, tokens=8)
    # every answer streamed to its end with its usage (an answer without is a failure)
    assert row["server_errors"] == 0 and row["failed"] == 0
    assert row["tokens"] >= row["requests"] > 0
    if max_queue < 32:
        assert row["refused"] > 0  # 429 with the OpenAI error body, retried by the client
    else:
        assert row["refused"] == 0 and row["requests"] >= 32  # every client's first one
