"""Every example of docs/serve.md marked ``<!-- serve-example -->`` runs against a real server.

The first marked block starts the server (``vlprep-serve`` run as ``python -m
vlprep.cli.serve``, so the test does not depend on the console script being installed) in a
subprocess on a free port, with a tiny random-weight Qwen2.5-VL checkpoint in a folder named
as in the docs and ``--allow-private-networks`` (the docs' ``https://example.com/photo.jpg``
is served from 127.0.0.1 here). The ``curl`` blocks then run in bash, the Python blocks in
the interpreter, each in a folder holding ``photo.jpg``; each must exit 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MEDIA, REPO
from tests.media_server import serving
from vlprep.testing import save_checkpoint

DOC = REPO / "docs" / "serve.md"
_BLOCK = re.compile(r"<!-- serve-example -->\n```(bash|python)\n(.*?)^```", re.S | re.M)
EXAMPLE_URL = "https://example.com/photo.jpg"
MODEL = "Qwen2.5-VL-3B-Instruct"


def examples() -> list[tuple[str, str]]:
    return _BLOCK.findall(DOC.read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, str]]:
    folder = tmp_path_factory.mktemp("docs")
    save_checkpoint("qwen2.5-vl", folder / MODEL)
    shutil.copy(MEDIA / "images" / "hopper.jpg", folder / "photo.jpg")
    kind, start = examples()[0]
    assert kind == "bash" and start.startswith("vlprep-serve --model")
    port = free_port()
    command = (
        start.strip()
        .replace("vlprep-serve", f"{sys.executable} -m vlprep.cli.serve", 1)
        .replace("8000", str(port))
        + " --allow-private-networks --device cpu --log-level warning"
    )
    with serving({"photo.jpg": (MEDIA / "images" / "hopper.jpg").read_bytes()}) as media:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=folder,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 50
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"the server did not start:\n{process.communicate()[0]}")
                time.sleep(0.2)
            yield folder, port, media.url("f", "photo.jpg")
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            if process.stdout is not None:
                process.stdout.close()


def test_the_page_has_its_examples() -> None:
    kinds = [kind for kind, _ in examples()]
    assert kinds[0] == "bash" and kinds.count("python") >= 1 and kinds.count("bash") >= 4


@pytest.mark.parametrize("index", range(1, len(examples())))
def test_example_runs(server: tuple[Path, int, str], index: int) -> None:
    folder, port, photo_url = server
    kind, code = examples()[index]
    code = code.replace("8000", str(port)).replace(EXAMPLE_URL, photo_url)
    command = (
        ["bash", "-c", "set -eo pipefail\n" + code]
        if kind == "bash"
        else [sys.executable, "-c", code]
    )
    result = subprocess.run(
        command, cwd=folder, env=_env(), capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    if "chat/completions" in code and '"stream": true' not in code:
        assert json.loads(output)["choices"][0]["message"]["role"] == "assistant"
    elif '"stream": true' in code:
        events = [line for line in output.splitlines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[-2][6:])["usage"]["completion_tokens"] >= 1
    elif "/v1/tokenize" in code:
        counted = json.loads(output)
        assert counted["items"][0]["tokens"] <= 256 and counted["count"] > counted["image_tokens"]
    else:
        assert output.strip()
