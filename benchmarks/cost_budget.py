"""Cost budget: what one ``process_vision_info`` / ``build_inputs`` call costs, measured.

Usage::

    python benchmarks/cost_budget.py [--out docs/security.md] [--only CASE ...]

The inputs are generated here into a temporary folder (no network: the slow URLs are
served by a loopback ``http.server`` in this process, 0.5 s per answer). Each case runs in
a fresh child process (``multiprocessing`` "spawn") that imports vlprep, builds its
messages from those files, then makes one call under one of two settings:

* ``default``: no arguments (``FetchPolicy()``, ``ImageOptions()``, ``VideoOptions()``,
  ``CallLimits()``);
* ``strict``: the "Running vlprep behind a server" recipe of ``docs/security.md``:
  ``FetchPolicy.strict(local_root=<the media folder>)`` with 10 s / 60 s deadlines and a
  128 MiB video cap, ``ImageOptions(decode_timeout=10, max_decode_bytes=512 MiB)``,
  ``VideoOptions(isolate=True, isolate_memory=2 GiB, isolate_timeout=60, max_duration=1800)``
  and ``CallLimits.strict()``. The slow-URL cases use the same options with the default
  ``FetchPolicy`` address rules (the strict policy refuses loopback before connecting).

Reported per case: the outcome (``returned``, or the vlprep error and the setting its
message names), the call's wall time, the child's peak RSS growth (``VmHWM`` from
``/proc/self/status`` after the call minus before it; not ``ru_maxrss``, which Linux
carries over from a forking parent), the largest peak RSS of a decoder child process
(``decode_timeout`` / ``isolate``; its ``VmHWM`` sampled every 20 ms, which the caller's
figure does not include) and the size of what the call returned (a Pillow RGB image is
stored at 4 bytes a pixel; tensors by ``nbytes``). One run per case: the times are noisy
on a shared machine, the memory figures much less so.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.server
import multiprocessing
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _report  # noqa: E402

COMMAND = "python benchmarks/cost_budget.py --out docs/security.md"
MIB = 1 << 20
SLOW_DELAY = 0.5
CASE_TIMEOUT_S = 300.0
SAMPLE_S = 0.02

# The 9459 x 9459 JPEG: 89,472,681 pixels, just under ImageOptions.max_source_pixels.
LARGEST_SIDE = 9459
OUTPUT_KEYS = {"min_pixels": 1 << 25, "max_pixels": 1 << 25}  # at ImageOptions.max_output_pixels


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    setting: str  # "default" | "strict" | "strict-loopback"
    what: str  # how the inputs are described in the table
    media: str  # "photo" | "frames" | "largest" | "tiny" | "slow"
    count: int
    call: str = "process_vision_info"
    limits: dict[str, Any] = field(default_factory=dict)  # CallLimits.replace(...) changes


CASES = [
    Case(
        "photo200-default", "default", "200 x one 46 KB JPEG `data:` URI (1024x768)", "photo", 200
    ),
    Case("photo200-strict", "strict", "200 x one 46 KB JPEG `data:` URI (1024x768)", "photo", 200),
    Case(
        "photo200-build-default",
        "default",
        "200 x one 46 KB JPEG `data:` URI (1024x768)",
        "photo",
        200,
        call="build_inputs",
    ),
    Case(
        "photo200-build-strict",
        "strict",
        "200 x one 46 KB JPEG `data:` URI (1024x768)",
        "photo",
        200,
        call="build_inputs",
    ),
    Case(
        "blocky200-default",
        "default",
        "200 x one 48 KB PNG `data:` URI (2600x2600 blocks, resized to 2604x2604)",
        "blocky",
        200,
    ),
    Case(
        "frames16-default", "default", "frame list: 16 x one 9400x9400 PNG (280 KB)", "frames", 16
    ),
    Case("frames16-strict", "strict", "frame list: 16 x one 9400x9400 PNG (280 KB)", "frames", 16),
    Case(
        "largest-default",
        "default",
        "one 9459x9459 JPEG (89.5 MP), `min_pixels` = `max_pixels` = 2^25",
        "largest",
        1,
    ),
    Case(
        "largest-strict",
        "strict",
        "one 9459x9459 JPEG (89.5 MP), `min_pixels` = `max_pixels` = 2^25",
        "largest",
        1,
    ),
    Case("items1024-default", "default", "1024 x a 64x64 PNG `data:` URI", "tiny", 1024),
    Case("items1025-default", "default", "1025 x a 64x64 PNG `data:` URI", "tiny", 1025),
    Case("items128-strict", "strict", "128 x a 64x64 PNG `data:` URI", "tiny", 128),
    Case("items129-strict", "strict", "129 x a 64x64 PNG `data:` URI", "tiny", 129),
    Case(
        "slow40-nodeadline",
        "strict-loopback",
        "40 loopback URLs, 0.5 s each; `deadline=None`",
        "slow",
        40,
        limits={"deadline": None},
    ),
    Case(
        "slow40-deadline3",
        "strict-loopback",
        "40 loopback URLs, 0.5 s each; `deadline=3.0`",
        "slow",
        40,
        limits={"deadline": 3.0},
    ),
]


# ---------------------------------------------------------------------------- the inputs


def write_media(folder: Path) -> dict[str, Path]:
    """The case inputs, written once into ``folder``."""
    paths = {
        name: folder / f"{name}.{ext}"
        for name, ext in (
            ("photo", "jpg"),
            ("blocky", "png"),
            ("frames", "png"),
            ("largest", "jpg"),
            ("tiny", "png"),
            ("slow", "png"),
        )
    }
    # A noisy 1024x768 photo-like JPEG of about 46 KB (the red team's data: URI).
    gradient = Image.linear_gradient("L").resize((1024, 768))
    noise = Image.effect_noise((1024, 768), 32).filter(ImageFilter.GaussianBlur(2))
    photo = Image.merge(
        "RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    )
    photo.save(paths["photo"], "JPEG", quality=75)
    # The red team's 48 KB PNG: 65x65 random cells blown up to 2600x2600 (6.8 MP each).
    cells = Image.merge("RGB", [Image.effect_noise((65, 65), 96) for _ in range(3)])
    cells.resize((2600, 2600), Image.Resampling.NEAREST).save(paths["blocky"], "PNG")
    # A solid-colour 9400x9400 PNG: 280 KB on disk, 88 M pixels decoded.
    Image.new("RGB", (9400, 9400), (200, 30, 60)).save(paths["frames"], "PNG", compress_level=9)
    # The largest source the default and strict image options accept: a smooth JPEG.
    side = LARGEST_SIDE
    ramp = Image.linear_gradient("L").resize((side, side), Image.Resampling.BILINEAR)
    big = Image.merge(
        "RGB",
        (
            ramp,
            ramp.transpose(Image.Transpose.ROTATE_90),
            ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        ),
    )
    big.save(paths["largest"], "JPEG", quality=90)
    del big, ramp
    tiny = Image.effect_noise((64, 64), 40).convert("RGB")
    tiny.save(paths["tiny"], "PNG")
    tiny.save(paths["slow"], "PNG")
    return paths


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server: SlowServer = self.server  # type: ignore[assignment]
        server.requests += 1
        if server.stop.wait(SLOW_DELAY):
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(server.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(server.body)


class SlowServer(http.server.ThreadingHTTPServer):
    """Loopback only: answers every GET with ``body`` after ``SLOW_DELAY`` seconds."""

    daemon_threads = True

    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.body = body
        self.stop = threading.Event()
        self.requests = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client past its deadline hangs up on purpose


@contextmanager
def serving(body: bytes) -> Iterator[SlowServer]:
    server = SlowServer(body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------- the child


def _hwm(pid: int | str = "self") -> int:
    """Peak resident set (``VmHWM``) of a process, bytes; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _is_decoder(pid: str) -> bool:
    """Whether ``pid`` runs a vlprep decoder child, exec done (before ``exec`` a forked child
    still shows its parent's memory)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"vlprep._decode" in fh.read()
    except OSError:
        return False


class ChildPeaks:
    """Samples the ``VmHWM`` of this process's decoder children (``decode_timeout``, ``isolate``)."""

    def __init__(self) -> None:
        self.peak = 0
        self.count = 0
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(SAMPLE_S):
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid != me or not _is_decoder(entry):
                    continue
                pid = int(entry)
                if pid not in self._seen:
                    self._seen.add(pid)
                    self.count += 1
                self.peak = max(self.peak, _hwm(pid))


def _data_uri(path: Path) -> str:
    kind = "jpeg" if path.suffix == ".jpg" else "png"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _elements(case: Case, paths: dict[str, str], url: str | None) -> list[dict[str, Any]]:
    if case.media in ("photo", "blocky", "tiny"):
        uri = _data_uri(Path(paths[case.media]))
        return [{"type": "image", "image": uri} for _ in range(case.count)]
    if case.media == "frames":
        return [{"type": "video", "video": [_data_uri(Path(paths["frames"]))] * case.count}]
    if case.media == "largest":
        return [{"type": "image", "image": paths["largest"], **OUTPUT_KEYS}]
    if case.media == "slow":
        return [{"type": "image", "image": f"{url}/{i}.png"} for i in range(case.count)]
    raise ValueError(case.media)


def _settings(case: Case, folder: str) -> dict[str, Any]:
    from vlprep import CallLimits, FetchPolicy, ImageOptions, VideoOptions

    if case.setting == "default":
        return {"policy": None, "image": None, "video": None, "limits": CallLimits()}
    base = (
        FetchPolicy.strict(local_root=folder)
        if case.setting == "strict"
        else FetchPolicy()  # strict-loopback: the strict policy refuses 127.0.0.1
    )
    return {
        "policy": base.replace(image_deadline=10.0, video_deadline=60.0, max_video_bytes=128 * MIB),
        "image": ImageOptions(decode_timeout=10.0, max_decode_bytes=512 * MIB),
        "video": VideoOptions(
            isolate=True, isolate_memory=2 << 30, isolate_timeout=60.0, max_duration=1800.0
        ),
        "limits": CallLimits.strict().replace(**case.limits),
    }


def _output_bytes(result: Any) -> int:
    import torch

    if isinstance(result, Image.Image):
        return result.width * result.height * 4  # Pillow stores RGB as 4 bytes a pixel
    if isinstance(result, torch.Tensor):
        return result.nbytes
    if isinstance(result, dict) or (hasattr(result, "data") and isinstance(result.data, dict)):
        values = result.values() if isinstance(result, dict) else result.data.values()
        return sum(_output_bytes(v) for v in values)
    if isinstance(result, (list, tuple)):
        return sum(_output_bytes(v) for v in result)
    return 0


_SETTING = re.compile(r"\((?:[^()]*?)((?:CallLimits|ImageOptions|VideoOptions|FetchPolicy)\.\w+)")


def run_case(case: Case, paths: dict[str, str], url: str | None, conn: Any) -> None:
    """In the child: one call, its outcome, time and memory sent back over ``conn``."""
    import vlprep
    from vlprep._errors import VlprepError
    from vlprep._pool import default_workers

    settings = _settings(case, str(Path(paths["tiny"]).parent))
    messages = [
        {"role": "user", "content": [*_elements(case, paths, url), {"type": "text", "text": "?"}]}
    ]
    processor = None
    if case.call == "build_inputs":
        from vlprep.testing import make_processor

        processor = make_processor("qwen2.5-vl")
    before = _hwm()
    start = time.perf_counter()
    outcome, output = "returned", 0
    with ChildPeaks() as children:
        try:
            if case.call == "build_inputs":
                result = vlprep.build_inputs(
                    messages,
                    processor,
                    policy=settings["policy"],
                    image_options=settings["image"],
                    video_options=settings["video"],
                    limits=settings["limits"],
                )
            else:
                result = vlprep.process_vision_info(
                    messages,
                    policy=settings["policy"],
                    options=settings["image"],
                    video_options=settings["video"],
                    limits=settings["limits"],
                )
            output = _output_bytes(result)
        except VlprepError as exc:
            named = _SETTING.search(str(exc))
            outcome = type(exc).__name__ + (f" ({named.group(1)})" if named else "")
        seconds = time.perf_counter() - start
    conn.send(
        {
            "outcome": outcome,
            "seconds": seconds,
            "grown": _hwm() - before,
            "child_peak": children.peak,
            "children": children.count,
            "output": output,
            "workers": default_workers(),
        }
    )
    conn.close()


def spawn(case: Case, paths: dict[str, Path], url: str | None) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=run_case, args=(case, {k: str(v) for k, v in paths.items()}, url, send)
    )
    proc.start()
    send.close()
    try:
        if not receive.poll(CASE_TIMEOUT_S):
            return {"outcome": f"no answer in {CASE_TIMEOUT_S:g} s"}
        return receive.recv()
    except EOFError:
        return {"outcome": "child died"}
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        if proc.exitcode not in (0, None) and proc.exitcode < 0:
            print(f"  {case.name}: child exit code {proc.exitcode}", file=sys.stderr)


# ---------------------------------------------------------------------------- the report


def _mib(value: float | None) -> str:
    if not value:
        return "-"
    return f"{value / MIB:.1f}" if value < 10 * MIB else f"{value / MIB:,.0f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.1f}"


def render(rows: list[tuple[Case, dict[str, Any]]], load: tuple[float, float]) -> str:
    from importlib import metadata

    workers = next((r.get("workers") for _, r in rows if r.get("workers")), "?")
    lines = [
        f"`{COMMAND}` ({dt.date.today().isoformat()}; {_report.cpu_model()}, "
        f"{os.cpu_count()} cores, default workers = {workers}, load average {load[0]:.1f} "
        f"before and {load[1]:.1f} after; Python {platform.python_version()}, "
        f"Pillow {metadata.version('pillow')}, torch {metadata.version('torch')}). One run "
        "each, each in a fresh process: wall times depend on what else runs, memory much "
        'less. "RSS +" is the '
        "calling process's peak RSS growth during the call (`VmHWM` after minus before), "
        '"decoder child" the largest peak RSS of one `decode_timeout` / `isolate` child '
        '(it runs beside the caller: not in "RSS +"), "output" what the call returned.',
        "",
        "| case | setting | call | outcome | wall s | RSS + MiB | decoder child MiB | output MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, r in rows:
        seconds = r.get("seconds")
        child = r.get("child_peak")
        children = r.get("children", 0)
        plural = "child" if children == 1 else "children"
        child_text = f"{_mib(child)} ({children} {plural})" if child else "-"
        lines.append(
            f"| {case.what} | {case.setting} | `{case.call}` | {r['outcome']} | "
            f"{_seconds(seconds)} | {_mib(r.get('grown'))} | "
            f"{child_text} | {_mib(r.get('output'))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out",
        type=Path,
        action="append",
        default=[],
        help="Markdown file whose cost-budget section to replace (repeatable: "
        "docs/security.md and docs/performance.md)",
    )
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not args.only or c.name in args.only]
    total = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vlprep-cost-") as tmp:
        paths = write_media(Path(tmp))
        with serving(paths["slow"].read_bytes()) as server:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            rows = []
            for case in cases:
                print(f"{case.name} ...", file=sys.stderr, flush=True)
                result = spawn(case, paths, url)
                if case.media == "slow":
                    result["outcome"] += f"; {server.requests} requests served"
                    server.requests = 0
                print(f"  {result}", file=sys.stderr, flush=True)
                rows.append((case, result))
    body = render(rows, (load_before, os.getloadavg()[0]))
    print(body)
    print(f"total {time.perf_counter() - total:.0f} s", file=sys.stderr)
    for out in args.out:
        _report.write_section(
            out,
            "cost-budget",
            "What one call can cost (cost budget)",
            body,
            header="# Security\n",
        )


if __name__ == "__main__":
    main()
