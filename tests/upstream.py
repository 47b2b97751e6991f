"""Known differences of older transformers releases, measured with ``make compat``.

vlprep claims transformers 5.3 and up. Where an older release's own processor or model
behaves differently (a bug since fixed there, or arithmetic it later changed), the tests
say so here, once, with the release range measured, instead of loosening every assertion:

- a difference vlprep does not mirror is an ``xfail(strict=True, raises=...)`` on exactly
  the releases named, so the test still runs there and fails the day the release matches;
- a difference that can be stated exactly is asserted as such (see ``ROPE_TRUNCATES``).

The measured releases are the ``make compat`` matrix (5.3.0, 5.9.0, 5.14.1, 5.24.0,
5.25.0); a boundary between two of them was read from the release's source.
"""

from __future__ import annotations

import pytest
import transformers
from packaging.version import Version

installed = Version(transformers.__version__)

# 5.3.0: the Qwen2.5-VL and Qwen3-VL models' get_rope_index raise StopIteration on a
# prompt holding an image and a video (Qwen2.5-VL draws a second_per_grid_ts for every
# vision item, images too; Qwen3-VL one video grid per timestamp block), with the
# processor's own inputs as well as vlprep's. Fixed by 5.9.0.
MIXED_MEDIA_MODEL_BUG = installed < Version("5.9.0")
# 5.3.0: the PIL image backend rescales and normalises in separate float32 steps, one ulp
# (max 2.4e-7) away from the fused arithmetic vlprep shares with later releases.
PIL_NOT_BIT_EXACT = installed < Version("5.9.0")
# 5.3.0: the models' video positions follow neither rule vlprep implements (the temporal
# axis stays flat across frames); vlprep does not mirror it.
ROPE_DIFFERS = installed < Version("5.9.0")
# Before 5.18.0 Qwen2.5-VL's get_rope_index truncates second_per_grid_ts with int()
# (a 0.5 s step becomes 0): equal to vlprep's "transformers" rule on truncated inputs.
ROPE_TRUNCATES = installed < Version("5.18.0")
# 5.24.0 renamed the models' ``past_key_values`` argument to ``cache`` (read from the
# wheels' source; 5.14.1 and 5.24.0 measured).
CACHE_KEYWORD = "cache" if installed >= Version("5.24.0") else "past_key_values"


def mixed_media_model_bug(family: str) -> pytest.MarkDecorator:
    """The xfail for a model call on an image + video prompt, where 5.3 breaks."""
    return pytest.mark.xfail(
        MIXED_MEDIA_MODEL_BUG and family in ("qwen2.5-vl", "qwen3-vl"),
        reason=f"transformers {installed}: {family} get_rope_index raises StopIteration "
        "on image + video prompts (processor inputs too; fixed by 5.9)",
        raises=StopIteration,
        strict=True,
    )


def rope_differs() -> pytest.MarkDecorator:
    return pytest.mark.xfail(
        ROPE_DIFFERS,
        reason=f"transformers {installed}: video positions follow neither rope rule "
        "(and image + video prompts raise StopIteration in Qwen2.5-VL / Qwen3-VL)",
        raises=(AssertionError, StopIteration),
        strict=True,
    )
