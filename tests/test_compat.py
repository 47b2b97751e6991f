"""What vlprep reads from the processor in hand, pinned per transformers release.

``make compat`` runs this file (with the conformance tests) in one venv per transformers
version of its matrix; in the pinned test venv it checks the locked release. A release
outside the table below fails the newest row's expectation if transformers changed the form
again, which is the point: the table and ``docs/compatibility.md`` get a new row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import transformers
from packaging.version import Version

from tests.hf_fixtures import FAMILIES, Family, load_processor, make_processor
from vlprep import InvalidInputError
from vlprep._processor_forms import _FORMS, qwen3_video_form

# Measured with `make compat` on 5.3.0, 5.9.0, 5.14.1, 5.24.0 and 5.25.0; the boundaries in
# between come from reading each release's `processing_qwen3_vl.py` (5.10.1 is the first to
# expand through `ProcessorMixin.get_text_with_replacements`, 5.25.0 the first to collapse
# the template's pair there).
QWEN3_VIDEO_FORMS: list[tuple[str, str | None, str]] = [
    ("5.3.0", "5.10.0", "unwrapped"),
    ("5.10.0", "5.25.0", "wrapped"),
    ("5.25.0", None, "unwrapped"),
]


def expected_form(version: str) -> str:
    v = Version(version)
    for low, high, form in QWEN3_VIDEO_FORMS:
        if v >= Version(low) and (high is None or v < Version(high)):
            return form
    raise AssertionError(f"transformers {version} is outside the claimed range (5.3 and up)")


def test_pinned_releases() -> None:
    """The two releases the 5.25 drift was about, as the issue states them."""
    assert expected_form("5.24.0") == "wrapped"
    assert expected_form("5.25.0") == "unwrapped"


def test_detected_form_is_the_releases(tmp_path: Path) -> None:
    _FORMS.clear()
    processor = load_processor("qwen3-vl", tmp_path)
    assert qwen3_video_form(processor) == expected_form(transformers.__version__)


def test_detection_is_cached_per_class() -> None:
    processor = make_processor("qwen3-vl")
    _FORMS.clear()
    form = qwen3_video_form(processor)
    assert {type(processor): form} == _FORMS
    assert qwen3_video_form(make_processor("qwen3-vl")) == form


def test_detection_does_not_leave_warnings_or_log_level() -> None:
    import logging
    import warnings

    processor = make_processor("qwen3-vl")
    _FORMS.clear()
    before = logging.getLogger("transformers").level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qwen3_video_form(processor)
    assert caught == []
    assert logging.getLogger("transformers").level == before


class _NotAProcessor:
    tokenizer: Any = None
    video_processor: Any = None


def test_unprobeable_processor_is_a_typed_error() -> None:
    with pytest.raises(InvalidInputError, match="qwen3_video_text='wrapped'") as info:
        qwen3_video_form(_NotAProcessor())
    assert isinstance(info.value, ValueError)
    assert _NotAProcessor not in _FORMS


@pytest.mark.parametrize("family", FAMILIES)
def test_cap_pixels_per_frame_leaves_unresized_output_alone(family: Family, tmp_path: Path) -> None:
    """cap_pixels_per_frame changes only the processor's own resize, which vlprep never runs.

    build_inputs sizes frames itself (qwen-vl-utils' per-frame budget) and the reference
    calls the processor with do_resize=False, so either cap setting gives the same output
    where the release has it.
    """
    processor = load_processor(family, tmp_path)
    video_processor = processor.video_processor
    if not hasattr(video_processor, "cap_pixels_per_frame"):  # added in 5.16.0
        assert Version(transformers.__version__) < Version("5.16.0")
        return
    import numpy as np
    from transformers.video_utils import VideoMetadata

    side = 32 if family == "qwen3-vl" else 28
    clip = np.random.default_rng(0).integers(0, 255, (4, 2 * side, 3 * side, 3), dtype=np.uint8)
    metadata = VideoMetadata(total_num_frames=4, fps=2.0, frames_indices=[0, 1, 2, 3])
    outs = [
        processor(
            text=["<|vision_start|><|video_pad|><|vision_end|>"],
            videos=[clip],
            video_metadata=[metadata],
            do_resize=False,
            do_sample_frames=False,
            cap_pixels_per_frame=cap,
            return_tensors="pt",
        )
        for cap in (True, False)
    ]
    for key in outs[0]:
        assert (outs[0][key] == outs[1][key]).all(), key
