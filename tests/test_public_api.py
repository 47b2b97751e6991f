"""The public API is a contract: pin ``__all__`` and the signatures users call."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import vlprep

HOPPER = str(Path(__file__).resolve().parents[1] / "fixtures" / "hopper.jpg")
EXPECTED = [
    "BackendUnavailableError",
    "BudgetError",
    "CacheStats",
    "CallLimits",
    "DecodeError",
    "FAMILIES",
    "Family",
    "FetchError",
    "FetchPolicy",
    "FetchTimeoutError",
    "FetchTooLargeError",
    "FitResult",
    "GenerationError",
    "GroundingParseError",
    "ImageHeader",
    "ImageOptions",
    "InvalidInputError",
    "ItemFit",
    "LoadedVideo",
    "Loader",
    "MediaCache",
    "MediaEstimate",
    "Plan",
    "Preset",
    "QWEN2_5_VL",
    "QWEN2_VL",
    "QWEN3_VL",
    "QWEN_VL",
    "QueueFullError",
    "ResourceLimitError",
    "SourceNotAllowedError",
    "SourceNotFoundError",
    "TokenEstimate",
    "UnsupportedFormatError",
    "VideoMetadata",
    "VideoOptions",
    "VlprepError",
    "__version__",
    "build_inputs",
    "count_tokens",
    "element_for",
    "estimate_image",
    "estimate_video",
    "extract_vision_info",
    "fetch_image",
    "fetch_image_for",
    "fetch_video",
    "fit",
    "get_preset",
    "inspect",
    "load_clip",
    "load_image",
    "patchify_images",
    "patchify_videos",
    "plan",
    "preset_from_processor",
    "probe_header",
    "process_vision_info",
    "rope_index",
    "smart_nframes",
    "smart_resize",
    "tokens_for_size",
]


def test_all_is_pinned_and_sorted() -> None:
    assert vlprep.__all__ == EXPECTED
    assert vlprep.__all__ == sorted(vlprep.__all__)
    for name in vlprep.__all__:
        assert hasattr(vlprep, name), name


def test_public_names_are_exactly_all() -> None:
    public = {
        n
        for n in vars(vlprep)
        if not n.startswith("_")
        and not inspect.ismodule(getattr(vlprep, n))
        and n != "annotations"  # the __future__ feature flag
    }
    assert public | {"__version__"} == set(EXPECTED)


def test_signatures_match_qwen_vl_utils() -> None:
    def params(fn: object) -> list[tuple[str, object]]:
        sig = inspect.signature(fn)  # type: ignore[arg-type]
        return [
            (p.name, p.default)
            for p in sig.parameters.values()
            if p.kind is not inspect.Parameter.KEYWORD_ONLY
        ]

    assert params(vlprep.smart_resize) == [
        ("height", inspect.Parameter.empty),
        ("width", inspect.Parameter.empty),
        ("factor", 28),
        ("min_pixels", None),
        ("max_pixels", None),
    ]
    assert params(vlprep.fetch_image) == [
        ("ele", inspect.Parameter.empty),
        ("image_patch_size", 14),
    ]
    assert params(vlprep.smart_nframes) == [
        ("ele", inspect.Parameter.empty),
        ("total_frames", inspect.Parameter.empty),
        ("video_fps", inspect.Parameter.empty),
    ]
    assert params(vlprep.process_vision_info) == [
        ("conversations", inspect.Parameter.empty),
        ("return_video_kwargs", False),
        ("return_video_metadata", False),
        ("image_patch_size", 14),
    ]
    assert params(vlprep.extract_vision_info) == [("conversations", inspect.Parameter.empty)]
    assert params(vlprep.fetch_video) == [
        ("ele", inspect.Parameter.empty),
        ("image_patch_size", 14),
        ("return_video_sample_fps", False),
        ("return_video_metadata", False),
    ]
    assert params(vlprep.build_inputs)[:2] == [
        ("conversations", inspect.Parameter.empty),
        ("processor", inspect.Parameter.empty),
    ]
    build = inspect.signature(vlprep.build_inputs).parameters
    assert all(build[name].kind is inspect.Parameter.KEYWORD_ONLY for name in list(build)[2:])
    assert build["padding_side"].default == "left"
    assert build["add_generation_prompt"].default is True
    assert build["qwen3_video_text"].default == "auto"
    import typing

    from vlprep._inputs import Qwen3VideoText

    assert typing.get_args(Qwen3VideoText) == ("auto", "wrapped", "unwrapped", "transformers")
    assert params(vlprep.count_tokens) == [("grid_thw", inspect.Parameter.empty), ("merge_size", 2)]


def test_error_tree() -> None:
    e = vlprep
    assert issubclass(e.InvalidInputError, (e.VlprepError, ValueError))
    assert issubclass(e.SourceNotAllowedError, e.InvalidInputError)
    assert issubclass(vlprep._errors.GroundingParseError, e.InvalidInputError)
    assert issubclass(e.FetchError, OSError) and issubclass(e.FetchError, e.VlprepError)
    assert issubclass(e.FetchTimeoutError, (e.FetchError, TimeoutError))
    assert issubclass(e.FetchTimeoutError, TimeoutError)
    assert issubclass(e.FetchTooLargeError, e.FetchError)
    assert issubclass(e.SourceNotFoundError, FileNotFoundError)
    assert issubclass(e.DecodeError, ValueError) and issubclass(e.DecodeError, e.VlprepError)
    assert issubclass(e.UnsupportedFormatError, e.DecodeError)
    assert issubclass(e.ResourceLimitError, ValueError)
    assert issubclass(e.BackendUnavailableError, ImportError)
    assert issubclass(e.BudgetError, (e.ResourceLimitError, ValueError))


def test_import_is_light_and_reads_no_environment() -> None:
    code = (
        "import os, sys\n"
        "class Env(dict):\n"
        "    def __getitem__(self, k): raise SystemExit('env read at import: ' + k)\n"
        "    def get(self, k, d=None): raise SystemExit('env read at import: ' + k)\n"
        "import vlprep\n"
        "heavy = [m for m in ('transformers', 'av', 'decord', 'torchvision', 'pillow_heif', 'requests', 'ray', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr


def test_import_vlprep_inspect_leaves_the_function() -> None:
    # A vlprep/inspect.py submodule would be bound over the function by `import vlprep.inspect`
    # (autodoc, pkgutil walks, users). Fresh interpreter: sys.modules starts empty there.
    code = (
        "import importlib, inspect, pkgutil\n"
        "import vlprep, vlprep.inspect\n"
        "import vlprep.inspect as alias\n"
        "from vlprep._estimates import inspect as function\n"
        "assert vlprep.inspect is function and alias is function, vlprep.inspect\n"
        "module = importlib.import_module('vlprep.inspect')\n"
        "assert inspect.signature(module) == inspect.signature(function)\n"
        f"assert module({HOPPER!r}) == function({HOPPER!r})\n"
        "assert 'inspect' not in {m.name for m in pkgutil.iter_modules(vlprep.__path__)}\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert inspect.signature(vlprep.inspect).parameters["preset"].default is vlprep.QWEN2_5_VL
