"""Video preparation benchmark: vlprep._video.fetch_video vs qwen-vl-utils' fetch_video.

Usage::

    python benchmarks/video.py [--repeat N] [--out docs/performance.md] [--cases a b c]
        [--methods ...] [--section video]

Same generated H.264 clips for every method (``_video_media``, cached in
``benchmarks/out/video``). Every (method, clip, repeat) runs in a fresh child process
(``--child``) that imports the libraries first, then records its resident memory, times one
``fetch_video`` call with ``time.perf_counter`` and reports the peak RSS
(``getrusage().ru_maxrss``). Runs are round-robin over the methods, start rotated per
repeat. Reported: median (min) wall seconds, the maximum peak RSS over the repeats, and the
working memory (peak minus the RSS after imports). Ratios are against the fastest
qwen-vl-utils backend: ``reference_median / this_median`` (> 1: faster) and
``this_peak / reference_peak`` (< 1: less memory). The faster modes (keyframe seeking,
the decoder's scaler) also get their time ratio against ``vlprep exact`` in the same run.
A run of some cases or methods can go to its own marked section (``--section``) so the full
table is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib
import importlib.metadata as md
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _report
from _report import cpu_model, version
from _video_media import CLIPS, ClipSpec, ensure_clips

HERE = Path(__file__).resolve().parent
PATCH_SIZE = 14
COMMAND = ".venv/bin/python benchmarks/video.py --out docs/performance.md"
CLIP_DIR = HERE / "out" / "video"
CHILD_TIMEOUT_S = 600
TARGET_CASE, TARGET_SPEEDUP, TARGET_PEAK = "a", 1.8, 0.5

QWEN_DECORD, QWEN_TORCHCODEC = "qwen decord", "qwen torchcodec"
VLPREP_EXACT, VLPREP_FAST, VLPREP_DECORD = "vlprep exact", "vlprep fast", "vlprep decord"
VLPREP_DECODER, VLPREP_KEYFRAME = "vlprep decoder", "vlprep keyframe"
VLPREP_KEYFRAME_DECODER = "vlprep keyframe+decoder"
METHODS = (
    QWEN_DECORD,
    QWEN_TORCHCODEC,
    VLPREP_EXACT,
    VLPREP_FAST,
    VLPREP_DECORD,
    VLPREP_DECODER,
    VLPREP_KEYFRAME,
    VLPREP_KEYFRAME_DECODER,
)
QWEN_METHODS = (QWEN_DECORD, QWEN_TORCHCODEC)
# Other frames than the plan (the nearest keyframes): same shape, own indices and sample fps.
KEYFRAME_METHODS = (VLPREP_KEYFRAME, VLPREP_KEYFRAME_DECODER)
FAST_MODES = (VLPREP_FAST, VLPREP_DECODER, VLPREP_KEYFRAME, VLPREP_KEYFRAME_DECODER)
DESCRIPTIONS = {
    QWEN_DECORD: "qwen-vl-utils `fetch_video`, decord reader forced",
    QWEN_TORCHCODEC: "qwen-vl-utils `fetch_video`, torchcodec reader forced "
    "(`num_ffmpeg_threads` 8, its default)",
    VLPREP_EXACT: "`vlprep._video.fetch_video`, default `VideoOptions()`",
    VLPREP_FAST: '`VideoOptions(resize="fast")`',
    VLPREP_DECORD: '`VideoOptions(backend="decord")` (same decoder as the reference)',
    VLPREP_DECODER: '`VideoOptions(resize="decoder")`: swscale bicubic on the YUV planes in '
    "the PyAV backend, then RGB at the target size",
    VLPREP_KEYFRAME: '`VideoOptions(seek="keyframe")`: each planned frame moved to the nearest '
    "keyframe, one seek and one decoded frame per keyframe (exact resize)",
    VLPREP_KEYFRAME_DECODER: (
        '`VideoOptions.long_video()` = `VideoOptions(seek="keyframe", resize="decoder")`'
    ),
}
# Decoder module each method's child imports before the timed call (never timed).
DECODER_MODULES = {
    QWEN_DECORD: ("decord",),
    QWEN_TORCHCODEC: ("torchcodec.decoders",),
    VLPREP_EXACT: ("av",),
    VLPREP_FAST: ("av",),
    VLPREP_DECORD: ("decord",),
    VLPREP_DECODER: ("av",),
    VLPREP_KEYFRAME: ("av",),
    VLPREP_KEYFRAME_DECODER: ("av",),
}
COMMON_MODULES = ("numpy", "torch", "torchvision", "qwen_vl_utils.vision_process", "vlprep._video")
TORCHCODEC_MISSING = "torchcodec: not installed (needs system FFmpeg)"

Json = dict[str, Any]


# --------------------------------------------------------------------------- child side


def _rss_mib() -> float:
    """Current resident set size of this process, MiB (``/proc/self/statm``)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    """Peak resident set size of this process so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_and_faults() -> tuple[float, int]:
    """User + system CPU seconds and minor page faults of this process so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt


def _import_all(method: str, threads: int) -> None:
    torch = importlib.import_module("torch")
    torch.set_num_threads(threads)
    for name in (*COMMON_MODULES, *DECODER_MODULES.get(method, ())):
        importlib.import_module(name)


def _qwen_call(backend: str) -> Callable[[Json], Any]:
    qvp = importlib.import_module("qwen_vl_utils.vision_process")
    # The FORCE env var is read at import and the choice is lru-cached: replace the chooser.
    qvp.get_video_reader_backend = lambda: backend

    def call(ele: Json) -> Any:
        return qvp.fetch_video(
            ele,
            image_patch_size=PATCH_SIZE,
            return_video_sample_fps=True,
            return_video_metadata=True,
        )

    return call


def _vlprep_call(**options: str) -> Callable[[Json], Any]:
    fetch_video = importlib.import_module("vlprep._video").fetch_video
    video_options = importlib.import_module("vlprep._decode.video").VideoOptions(**options)

    def call(ele: Json) -> Any:
        return fetch_video(
            ele,
            PATCH_SIZE,
            return_video_sample_fps=True,
            return_video_metadata=True,
            options=video_options,
        )

    return call


def build_call(method: str) -> Callable[[Json], Any]:
    """The ``fetch_video`` call of ``method``; returns ``((video, metadata), sample_fps)``."""
    builders: dict[str, Callable[[], Callable[[Json], Any]]] = {
        QWEN_DECORD: lambda: _qwen_call("decord"),
        QWEN_TORCHCODEC: lambda: _qwen_call("torchcodec"),
        VLPREP_EXACT: _vlprep_call,
        VLPREP_FAST: lambda: _vlprep_call(resize="fast"),
        VLPREP_DECORD: lambda: _vlprep_call(backend="decord"),
        VLPREP_DECODER: lambda: _vlprep_call(resize="decoder"),
        VLPREP_KEYFRAME: lambda: _vlprep_call(seek="keyframe"),
        VLPREP_KEYFRAME_DECODER: lambda: _vlprep_call(seek="keyframe", resize="decoder"),
    }
    return builders[method]()


def _indices_digest(indices: Sequence[int]) -> str:
    text = json.dumps([int(i) for i in indices])
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def child_run(method: str, clip: str, threads: int) -> Json:
    """Import, measure the baseline, time one call, report wall / RSS / shape / indices."""
    import gc

    _import_all(method, threads)
    call = build_call(method)
    gc.collect()
    baseline, import_peak = _rss_mib(), _peak_mib()
    cpu0, faults0 = _cpu_and_faults()
    start = time.perf_counter()
    (video, metadata), sample_fps = call({"video": clip})
    wall = time.perf_counter() - start
    peak = _peak_mib()
    cpu1, faults1 = _cpu_and_faults()
    return {
        "method": method,
        "wall_s": wall,
        "cpu_s": cpu1 - cpu0,
        "minor_faults": faults1 - faults0,
        "peak_mib": peak,
        "baseline_mib": baseline,
        "import_peak_mib": import_peak,
        "shape": list(video.shape),
        "dtype": str(video.dtype),
        "sample_fps": float(sample_fps),
        "indices_sha1": _indices_digest(metadata["frames_indices"]),
        "n_indices": len(metadata["frames_indices"]),
        "backend": str(metadata.get("video_backend")),
        "threads": importlib.import_module("torch").get_num_threads(),
    }


def _abs_diff(reference: Any, other: Any) -> Json:
    """Mean / max absolute difference and share of equal values, frame by frame."""
    if tuple(reference.shape) != tuple(other.shape):
        return {"shape_differs": [list(reference.shape), list(other.shape)]}
    total, peak, equal = 0.0, 0.0, 0
    for ref_frame, frame in zip(reference, other, strict=True):
        diff = (ref_frame - frame).abs()
        total += float(diff.sum(dtype=importlib.import_module("torch").float64))
        peak = max(peak, float(diff.max()))
        equal += int((diff == 0).sum())
    count = reference.numel()
    return {"mean": total / count, "max": peak, "equal_share": equal / count}


def child_diff(clip: str, threads: int, others: Sequence[str]) -> Json:
    """Pixel differences of ``others`` against qwen decord on one clip (not timed)."""
    for method in (QWEN_DECORD, *others):
        _import_all(method, threads)
    (reference, _), _ = build_call(QWEN_DECORD)({"video": clip})
    diffs = {}
    for method in others:
        (video, _), _ = build_call(method)({"video": clip})
        diffs[method] = _abs_diff(reference, video)
        del video
    return {"reference": QWEN_DECORD, "diffs": diffs}


def child_probe_torchcodec(clip: str) -> Json:
    """Whether torchcodec imports *and* decodes (it imports without FFmpeg, then fails)."""
    try:
        decoders = importlib.import_module("torchcodec.decoders")
        decoder = decoders.VideoDecoder(clip)
        decoder.get_frames_at(indices=[0])
    except ModuleNotFoundError as exc:
        return {"ok": False, "reason": "not installed", "error": repr(exc)[:300]}
    except Exception as exc:  # OSError/RuntimeError when FFmpeg's libraries are missing
        return {"ok": False, "reason": "unusable", "error": repr(exc)[:300]}
    try:
        ffmpeg = importlib.import_module("torchcodec._core").get_ffmpeg_library_versions()
        system_ffmpeg = str(ffmpeg.get("ffmpeg_version", "?"))
    except (ImportError, AttributeError, RuntimeError):
        system_ffmpeg = "?"
    return {"ok": True, "version": md.version("torchcodec"), "ffmpeg": system_ffmpeg}


def child_main(args: argparse.Namespace) -> int:
    if args.child == "run":
        result = child_run(args.method, args.clip, args.threads)
    elif args.child == "diff":
        result = child_diff(args.clip, args.threads, args.others)
    else:
        result = child_probe_torchcodec(args.clip)
    print(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- parent side


@dataclass(slots=True)
class Runs:
    """Child reports (successful runs) and errors of one method on one clip."""

    reports: list[Json] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def walls(self) -> list[float]:
        return [r["wall_s"] for r in self.reports]

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(r["cpu_s"] for r in self.reports)

    @property
    def peak(self) -> float:
        return max(r["peak_mib"] for r in self.reports)

    @property
    def working(self) -> float:
        return max(r["peak_mib"] - r["baseline_mib"] for r in self.reports)

    @property
    def baseline(self) -> float:
        return statistics.median(r["baseline_mib"] for r in self.reports)


@dataclass(slots=True)
class CaseResult:
    spec: ClipSpec
    path: Path
    runs: dict[str, Runs]
    diff: Json | None = None


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FORCE_QWENVL_VIDEO_READER"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    return env


def spawn(child_args: list[str]) -> Json:
    """Run this script as a child; its last stdout line is the JSON report."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *child_args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        env=_child_env(),
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"child exited {proc.returncode}: {tail[:300]}")
    return json.loads(lines[-1])


def run_one(method: str, clip: Path, threads: int) -> Json:
    report = spawn(["run", "--method", method, "--clip", str(clip), "--threads", str(threads)])
    expected = {QWEN_DECORD: "decord", QWEN_TORCHCODEC: "torchcodec", VLPREP_DECORD: "decord"}
    if method in expected and report["backend"] != expected[method]:
        raise RuntimeError(f"ran on backend {report['backend']!r}, not {expected[method]!r}")
    return report


def _log(started: float, message: str) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


def run_case(
    spec: ClipSpec, path: Path, methods: Sequence[str], repeat: int, threads: int, started: float
) -> CaseResult:
    """``repeat`` round-robin rounds over ``methods``, start rotated each round."""
    runs = {m: Runs() for m in methods}
    for r in range(repeat):
        shift = r % len(methods)
        for method in [*methods[shift:], *methods[:shift]]:
            try:
                report = run_one(method, path, threads)
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                runs[method].errors.append(str(exc))
                _log(started, f"{spec.key} #{r + 1} {method}: FAILED {exc}")
                continue
            runs[method].reports.append(report)
            _log(
                started,
                f"{spec.key} #{r + 1} {method}: {report['wall_s']:.2f} s, "
                f"peak {report['peak_mib']:.0f} MiB",
            )
    return CaseResult(spec, path, runs)


def probe_torchcodec(clip: Path) -> tuple[bool, str]:
    """(usable, note) for the torchcodec reader, decided by a child that decodes a frame."""
    try:
        result = spawn(["probe", "--clip", str(clip)])
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return False, f"torchcodec: probe failed ({exc})"
    if result["ok"]:
        return True, (
            f"torchcodec {result['version']}: usable (system FFmpeg {result.get('ffmpeg', '?')})"
        )
    if result["reason"] == "not installed":
        return False, TORCHCODEC_MISSING
    return False, (
        f"{TORCHCODEC_MISSING}. torchcodec {version('torchcodec')} is in the venv and imports, "
        "but its decoder cannot load FFmpeg's shared libraries (none on this system), so "
        f"{QWEN_TORCHCODEC} is skipped. qwen-vl-utils' automatic choice still picks torchcodec "
        "here (it only checks that the module exists), fails, and falls back to "
        "torchvision's `read_video`, which torchvision >= 0.26 no longer has: unforced, the "
        "reference does not load video at all in this environment"
    )


def run_diff(clip: Path, threads: int, methods: Sequence[str]) -> Json:
    same_frames = (VLPREP_EXACT, VLPREP_FAST, VLPREP_DECORD, VLPREP_DECODER)
    others = [m for m in same_frames if m in methods]
    try:
        return spawn(["diff", "--clip", str(clip), "--threads", str(threads), "--others", *others])
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}


# --------------------------------------------------------------------------- checks


def _keys(result: CaseResult, methods: Sequence[str]) -> set[tuple[Any, ...]]:
    return {
        (tuple(r["shape"]), r["indices_sha1"], round(r["sample_fps"], 9), r["dtype"])
        for method, runs in result.runs.items()
        if method in methods
        for r in runs.reports
    }


def consistency(result: CaseResult) -> tuple[bool, str]:
    """Same shape, frame indices and sample fps across every report of the case.

    Keyframe methods decode other frames than the plan: they must agree among themselves
    and have the plan's shape (the model's grid), with their own indices and sample fps.
    """
    planned = [m for m in result.runs if m not in KEYFRAME_METHODS]
    keyed = [m for m in result.runs if m in KEYFRAME_METHODS]
    keys, key_keys = _keys(result, planned), _keys(result, keyed)
    if len(keys) > 1 or len(key_keys) > 1:
        return False, f"NOT consistent: {sorted(keys)} {sorted(key_keys)}"
    texts = []
    if keys:
        shape, digest, fps, dtype = keys.pop()
        texts.append(
            f"all methods: shape {shape} {dtype}, same frame indices (sha1 {digest}), "
            f"sample fps {fps:g}"
        )
    if key_keys:
        kshape, kdigest, kfps, _ = key_keys.pop()
        if texts and kshape != shape:
            return False, f"NOT consistent: keyframe shape {kshape} differs from {shape}"
        texts.append(
            f"keyframe methods: shape {kshape}, keyframe indices (sha1 {kdigest}), "
            f"sample fps {kfps:.6g}"
        )
    return True, "; ".join(texts)


def fastest_qwen(result: CaseResult) -> str | None:
    done = [m for m in QWEN_METHODS if m in result.runs and result.runs[m].reports]
    return min(done, key=lambda m: result.runs[m].median) if done else None


def _speedup(result: CaseResult, reference: str, method: str) -> float:
    return result.runs[reference].median / result.runs[method].median


def _peak_ratio(result: CaseResult, reference: str, method: str) -> float:
    return result.runs[method].peak / result.runs[reference].peak


def _working_ratio(result: CaseResult, reference: str, method: str) -> float:
    return result.runs[method].working / result.runs[reference].working


def fast_mode_lines(result: CaseResult) -> list[str]:
    """Time ratios of the faster modes against vlprep exact and the fastest qwen backend."""
    exact = VLPREP_EXACT if result.runs.get(VLPREP_EXACT, Runs()).reports else None
    reference = fastest_qwen(result)
    lines = []
    for method in FAST_MODES:
        if not result.runs.get(method, Runs()).reports or method == VLPREP_FAST:
            continue
        parts = [
            f"{_speedup(result, base, method):.2f}x vs {base}"
            for base in (exact, reference)
            if base is not None
        ]
        if parts:
            lines.append(f"- {method}: " + ", ".join(parts))
    if lines:
        lines.insert(0, "Faster modes, time ratio (> 1: faster) in this run:")
    return lines


def target_lines(result: CaseResult) -> list[str]:
    """The issue's targets on the 720p clip, judged on vlprep exact (fast shown for context)."""
    reference = fastest_qwen(result)
    if reference is None or not result.runs.get(VLPREP_EXACT, Runs()).reports:
        return ["targets: not evaluated (a run failed)"]
    lines = []
    for method in (VLPREP_EXACT, VLPREP_FAST):
        if not result.runs.get(method, Runs()).reports:
            continue
        speed, peak = _speedup(result, reference, method), _peak_ratio(result, reference, method)
        tag = "target" if method == VLPREP_EXACT else "for reference"
        lines.append(
            f"- {method} ({tag}): speed {speed:.2f}x vs {reference} (target >= "
            f"{TARGET_SPEEDUP}x: **{'met' if speed >= TARGET_SPEEDUP else 'NOT met'}**); "
            f"peak RSS {peak:.2f} of {reference}'s (target <= {TARGET_PEAK}: "
            f"**{'met' if peak <= TARGET_PEAK else 'NOT met'}**)"
        )
    return lines


# --------------------------------------------------------------------------- report


def _ffmpeg_of_pyav() -> str:
    try:
        return str(importlib.import_module("av").ffmpeg_version_info)
    except (ImportError, AttributeError):
        return "?"


def environment_line(threads: int) -> str:
    versions = ", ".join(
        f"{d} {version(d)}" for d in ("numpy", "torch", "torchvision", "av", "decord")
    )
    return (
        f"{dt.date.today().isoformat()} · Python {platform.python_version()}, {versions} "
        f"(PyAV's FFmpeg {_ffmpeg_of_pyav()}), qwen-vl-utils {version('qwen-vl-utils')}, "
        f"vlprep {version('vlprep')}, torchcodec {version('torchcodec')} · "
        f"{cpu_model()}, {os.cpu_count()} cores visible, CPU only, "
        f"torch threads {threads} in every child, allocator: system default"
    )


def case_heading(result: CaseResult) -> str:
    spec, size = result.spec, result.path.stat().st_size
    mbit = size * 8 / 1e6 / spec.seconds
    return (
        f"### ({spec.key}) {spec.label}: {spec.width}x{spec.height} @ {spec.fps} fps, "
        f"{spec.frames} frames, {size / 2**20:.1f} MiB ({mbit:.2f} Mbit/s)"
    )


def _row(result: CaseResult, method: str, reference: str | None) -> str:
    runs = result.runs[method]
    if not runs.reports:
        reason = runs.errors[0] if runs.errors else "not run"
        return f"| {method} | - | failed: {reason[:80]} | | | | | | | |"
    backend = runs.reports[0]["backend"]
    wall = f"{runs.median:.2f} ({min(runs.walls):.2f})"
    ratios = ["", "", ""]
    if reference is not None:
        ratios = [
            f"{_speedup(result, reference, method):.2f}x",
            f"{_peak_ratio(result, reference, method):.2f}",
            f"{_working_ratio(result, reference, method):.2f}",
        ]
    return (
        f"| {method} | {backend} | {wall} | {runs.cpu:.2f} | {runs.peak:,.0f} | {runs.working:,.0f} "
        f"| {runs.baseline:,.0f} | {' | '.join(ratios)} |"
    )


def case_table(result: CaseResult) -> str:
    reference = fastest_qwen(result)
    ref = reference or "qwen"
    rows = [
        f"| method | backend | wall s, median (min) | CPU s | peak RSS MiB | working MiB | after-import "
        f"RSS MiB | time: {ref} / this | peak: this / {ref} | working: this / {ref} |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    rows += [_row(result, method, reference) for method in result.runs]
    return "\n".join(rows)


def diff_line(diff: Json | None) -> str:
    if diff is None:
        return ""
    if "error" in diff:
        return f"pixel check failed: {diff['error']}"
    parts = []
    for method, d in diff["diffs"].items():
        if "shape_differs" in d:
            parts.append(f"{method}: shape differs {d['shape_differs']}")
        else:
            parts.append(
                f"{method}: mean abs diff {d['mean']:.4f}, max {d['max']:.0f}, "
                f"{100 * d['equal_share']:.2f}% of values equal"
            )
    return f"Pixels vs {diff['reference']} (values 0-255): " + "; ".join(parts) + "."


def _output_mib(result: CaseResult) -> float | None:
    for runs in result.runs.values():
        if runs.reports:
            t, c, h, w = runs.reports[0]["shape"]
            return t * c * h * w * 4 / 2**20
    return None


def render_case(result: CaseResult) -> list[str]:
    ok, text = consistency(result)
    output = _output_mib(result)
    lines = [case_heading(result), "", case_table(result), ""]
    lines.append(f"Consistency: {'yes' if ok else 'NO'} — {text}.")
    if output is not None:
        lines.append(f"The float32 output alone is {output:,.0f} MiB.")
    fast = fast_mode_lines(result)
    if fast:
        lines += ["", *fast]
    if result.diff is not None:
        lines += ["", diff_line(result.diff)]
    if result.spec.key == TARGET_CASE:
        lines += ["", "Targets (720p clip, against the fastest qwen-vl-utils backend):"]
        lines += target_lines(result)
    return [*lines, ""]


METHOD_TEXT = """Method: clips are generated once with PyAV + libx264 (`preset veryfast`, CRF 23, no
B-frames, a keyframe every 60 frames, yuv420p, MP4; a panning gradient field with grain,
moving sprites and temporal noise; fixed seed) and cached under `benchmarks/out/video/`.
Every method is called as `fetch_video({{"video": path}}, image_patch_size=14,
return_video_sample_fps=True, return_video_metadata=True)` with the default element
settings (fps 2). Each (method, clip, repeat) runs in a fresh child process: it imports
numpy, torch, torchvision, qwen-vl-utils, `vlprep._video` and the method's decoder module,
sets `torch.set_num_threads({threads})`, then records its RSS and times one call with
`time.perf_counter` (imports are not timed); CPU s is the call's user + system time
(median; above the wall time when decoding runs on both cores). Peak RSS is the child's
`ru_maxrss` (whole process); working memory is peak minus the RSS after imports. `--repeat {repeat}` rounds,
methods round-robin with the start rotated each round; wall time is median (min), memory
the maximum over the rounds. Ratios compare with the fastest qwen-vl-utils backend:
time = its median / this median (> 1: faster), peak and working = this / its (< 1: less).
qwen-vl-utils' backend is forced by replacing its cached `get_video_reader_backend` in the
child (the `FORCE_QWENVL_VIDEO_READER` variable is read at import).
Numbers from a shared 2-core VM: memory is stable to about 1%, but wall times drift with
the host's load; on the 720p clip the exact-mode time ratio read 1.04x, 1.41x (5 repeats)
and the value below in three runs, so read time ratios as ±0.3 and use `--repeat 7` or more
(about 1.3 min per repeat) to resolve smaller differences.

| method | what runs |
|---|---|
{rows}"""


def render(
    results: list[CaseResult],
    methods: Sequence[str],
    repeat: int,
    threads: int,
    torchcodec_note: str,
    elapsed: float,
    command: str = COMMAND,
) -> str:
    rows = "\n".join(f"| {m} | {DESCRIPTIONS[m]} |" for m in methods)
    lines = [
        f"Environment: {environment_line(threads)}",
        "",
        METHOD_TEXT.format(threads=threads, repeat=repeat, rows=rows),
        "",
        torchcodec_note + ".",
        "",
    ]
    for result in results:
        lines += render_case(result)
    lines += [
        f"Total run {elapsed:.0f} s (clip generation included when the cache was empty).",
        "Reproduce:",
        "",
        "```",
        command,
        "```",
    ]
    return "\n".join(lines)


def write_section(path: Path, body: str, section: str = "video") -> None:
    """Replace the ``section`` block of ``path`` (see ``_report.write_section``)."""
    heading = "Video" if section == "video" else f"Video ({section})"
    _report.write_section(path, section, heading, body)


# --------------------------------------------------------------------------- main


def reproduce_command(args: argparse.Namespace) -> str:
    """The command line of this run (the default one when nothing was narrowed)."""
    parts = [COMMAND]
    if args.section != "video":
        parts.append(f"--section {args.section}")
    if list(args.cases) != [c.key for c in CLIPS]:
        parts.append("--cases " + " ".join(args.cases))
    if list(args.methods) != list(METHODS):
        parts.append("--methods " + " ".join(f'"{m}"' for m in args.methods))
    if args.repeat != 3:
        parts.append(f"--repeat {args.repeat}")
    return " ".join(parts)


def default_threads() -> int:
    """The machine default: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3, help="child runs per method and clip")
    parser.add_argument("--out", type=Path, help="Markdown file whose video section to replace")
    keys = [c.key for c in CLIPS]
    parser.add_argument("--cases", nargs="+", choices=keys, default=keys, help="clips to run")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run"
    )
    parser.add_argument("--threads", type=int, default=default_threads(), help="torch threads")
    parser.add_argument(
        "--section",
        default="video",
        help="marked block of --out to replace (<!-- NAME:begin -->); use another name for a "
        "partial run so the full table stays",
    )
    parser.add_argument("--child", choices=("run", "diff", "probe"), help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--others", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


def select_methods(wanted: Sequence[str], torchcodec_ok: bool) -> list[str]:
    return [m for m in METHODS if m in wanted and (torchcodec_ok or m != QWEN_TORCHCODEC)]


def run_all(args: argparse.Namespace, started: float) -> tuple[list[CaseResult], list[str], str]:
    specs = tuple(c for c in CLIPS if c.key in args.cases)
    _log(started, f"clips: generating missing ones into {CLIP_DIR}")
    paths = ensure_clips(CLIP_DIR, specs)
    torchcodec_ok, note = probe_torchcodec(paths[specs[0].key])
    _log(started, note)
    methods = select_methods(args.methods, torchcodec_ok)
    results = []
    for spec in specs:
        result = run_case(spec, paths[spec.key], methods, args.repeat, args.threads, started)
        if spec.key == TARGET_CASE:
            _log(started, f"{spec.key}: pixel check")
            result.diff = run_diff(paths[spec.key], args.threads, methods)
        results.append(result)
    return results, methods, note


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child_main(args)
    started = time.perf_counter()
    results, methods, note = run_all(args, started)
    elapsed = time.perf_counter() - started
    body = render(
        results, methods, args.repeat, args.threads, note, elapsed, reproduce_command(args)
    )
    print(body)
    if args.out is not None:
        write_section(args.out, body, args.section)
    healthy = all(consistency(r)[0] for r in results) and all(
        runs.reports for r in results for runs in r.runs.values()
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
