"""vlprep.fit: strategies, keys, errors and wiring (build_inputs, process_vision_info, Loader).

The random-conversation properties are in ``test_fit_properties.py``.
"""

from __future__ import annotations

import copy
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import vlprep
from vlprep.testing import make_processor


@pytest.fixture(scope="module")
def proc() -> Any:
    return make_processor("qwen2.5-vl")


def _photo(root: Path, name: str, width: int, height: int) -> str:
    path = root / f"{name}.png"
    Image.new("RGB", (width, height), (120, 60, 30)).save(path)
    return str(path)


def _chat(root: Path, turns: int = 4, size: tuple[int, int] = (448, 336)) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for t in range(turns):
        image = {"type": "image", "image": _photo(root, f"p{t}", *size)}
        messages.append({"role": "user", "content": [image, {"type": "text", "text": f"turn {t}"}]})
        messages.append({"role": "assistant", "content": "seen"})
    return messages


def _length(conversation: Any, proc: Any, **kw: Any) -> int:
    return int(vlprep.build_inputs(conversation, proc, **kw)["input_ids"].shape[1])


def test_build_inputs_max_total_tokens_fits_and_equals_the_fit(tmp_path: Path, proc: Any) -> None:
    chat = _chat(tmp_path)
    full = _length(chat, proc)
    (result,) = vlprep.fit(chat, full // 2, processor=proc)
    assert result.total_before == full and result.total <= full // 2 and result.shrunk
    assert _length(result.apply(chat), proc) == result.total
    assert _length(chat, proc, max_total_tokens=full // 2) == result.total
    assert _length(chat, proc, max_total_tokens=full) == full  # fits: nothing changes


def test_apply_copies_and_sets_keys(tmp_path: Path, proc: Any) -> None:
    chat = _chat(tmp_path)
    before = copy.deepcopy(chat)
    (result,) = vlprep.fit(chat, 300, processor=proc)
    applied = result.apply(chat)
    assert chat == before  # the input is not changed
    assert all("max_pixels" in applied[2 * t]["content"][0] for t in range(4))
    with pytest.raises(vlprep.InvalidInputError, match="vision elements"):
        result.apply(chat[:2])


def test_uniform_scales_every_item_recent_keeps_the_newest(tmp_path: Path, proc: Any) -> None:
    chat = _chat(tmp_path)
    full = _length(chat, proc)
    budget = full - 200
    (uniform,) = vlprep.fit(chat, budget, processor=proc, strategy="uniform")
    (recent,) = vlprep.fit(chat, budget, processor=proc, strategy="recent")
    assert all(item.shrunk for item in uniform.items)  # same photo, same scale
    assert len({item.tokens for item in uniform.items}) <= 2  # one scale, then one step
    assert recent.items[0].shrunk and not recent.items[-1].shrunk
    tokens = [item.tokens for item in recent.items]
    assert tokens == sorted(tokens)  # older turns never keep more than newer ones


def test_priority_and_min_tokens(tmp_path: Path, proc: Any) -> None:
    chat = _chat(tmp_path)
    chat[0]["content"][0]["priority"] = 5  # the oldest photo matters most
    chat[2]["content"][0]["min_tokens"] = 100
    (free,) = vlprep.fit(chat, 10**6, processor=proc)
    assert free.text_tokens is not None
    floors = sum(item.floor_tokens for item in free.items[1:])  # item 1's: >= 100
    budget = free.text_tokens + free.items[0].before_tokens + floors + 3
    (result,) = vlprep.fit(chat, budget, processor=proc, strategy="recent")
    first, second = result.items[0], result.items[1]
    assert not first.shrunk
    assert second.tokens >= 100 and second.floor_tokens >= 100
    assert all(item.tokens <= item.floor_tokens + 3 for item in result.items[2:])


def test_budget_error_text_fixed_floors(tmp_path: Path, proc: Any) -> None:
    chat = _chat(tmp_path)
    (free,) = vlprep.fit(chat, 10**6, processor=proc)
    text = free.text_tokens
    assert text is not None
    with pytest.raises(vlprep.BudgetError) as exc:
        vlprep.fit(chat, text - 5, processor=proc)
    assert exc.value.binding == "text" and exc.value.deficit == exc.value.needed - (text - 5)
    fixed = copy.deepcopy(chat)
    fixed[0]["content"][0].update(resized_height=448, resized_width=448)  # 256 tokens
    with pytest.raises(vlprep.BudgetError) as exc:
        vlprep.fit(fixed, text + 100, processor=proc)
    assert exc.value.binding == "fixed"
    with pytest.raises(vlprep.BudgetError) as exc:
        vlprep.fit(chat, text + 5, processor=proc)  # four photos at >= 2 tokens each
    assert exc.value.binding == "floors" and exc.value.deficit == exc.value.needed - text - 5
    assert isinstance(exc.value, vlprep.ResourceLimitError) and isinstance(exc.value, ValueError)
    again = pickle.loads(pickle.dumps(exc.value))
    assert (again.deficit, again.binding, str(again)) == (
        exc.value.deficit,
        exc.value.binding,
        str(exc.value),
    )
    (tight,) = vlprep.fit(chat, exc.value.needed, processor=proc)
    assert tight.total == exc.value.needed


def test_reserve_keeps_room(tmp_path: Path, proc: Any) -> None:
    chat = _chat(tmp_path)
    (result,) = vlprep.fit(chat, 600, processor=proc, reserve=128)
    assert result.total <= 600 - 128 and result.budget == 472


def test_preset_only_counts_placeholders(tmp_path: Path) -> None:
    chat = _chat(tmp_path)
    (result,) = vlprep.fit(chat, 200, preset="qwen2.5-vl")
    assert result.text_tokens is None
    assert result.total == sum(item.tokens for item in result.items) <= 200


def test_process_vision_info_and_loader_fit(tmp_path: Path, proc: Any) -> None:
    chat = _chat(tmp_path)
    (result,) = vlprep.fit(chat, 400, processor=proc)
    images, _ = vlprep.process_vision_info(chat, max_total_tokens=400, processor=proc)
    assert [im.size[::-1] for im in images] == [item.size for item in result.items]
    loader = vlprep.Loader(preset="qwen2.5-vl")
    assert loader.fit(chat, 400, processor=proc) == [result]
    images, _ = loader.process_vision_info(chat, max_total_tokens=400, processor=proc)
    assert [im.size[::-1] for im in images] == [item.size for item in result.items]
    (drop_in,) = vlprep.fit(chat, 120, preset="qwen2.5-vl")  # placeholders only
    images, _ = vlprep.process_vision_info(chat, max_total_tokens=120)
    assert [im.size[::-1] for im in images] == [item.size for item in drop_in.items]


def test_drop_media_first_removes_whole_items_oldest_first(
    tmp_path: Path, proc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    chat = _chat(tmp_path)
    full = _length(chat, proc)
    with pytest.raises(vlprep.ResourceLimitError, match="max_length"):
        vlprep.build_inputs(chat, proc, max_length=full - 1)
    with caplog.at_level(logging.WARNING, logger="vlprep._fit"):
        built = vlprep.build_inputs(chat, proc, max_length=full - 1, truncation="drop-media-first")
    assert built["input_ids"].shape[1] <= full - 1
    assert built["image_grid_thw"].shape[0] == 3  # one photo gone, the others whole
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "message 0" in dropped[0].getMessage()
    with pytest.raises(vlprep.ResourceLimitError, match="without any image"):
        vlprep.build_inputs(chat, proc, max_length=20, truncation="drop-media-first")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100, "reserve": 100}, "reserve"),
        ({"max_tokens": 100, "strategy": "fair"}, "strategy"),
    ],
)
def test_bad_arguments(tmp_path: Path, proc: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(vlprep.InvalidInputError, match=match):
        vlprep.fit(_chat(tmp_path, 1), processor=proc, **kwargs)


def test_bad_element_keys_and_combinations(tmp_path: Path, proc: Any) -> None:
    chat = _chat(tmp_path, 1)
    chat[0]["content"][0]["min_tokens"] = -1
    with pytest.raises(vlprep.InvalidInputError, match="min_tokens"):
        vlprep.fit(chat, 1000, processor=proc)
    chat[0]["content"][0]["min_tokens"] = 1
    chat[0]["content"][0]["priority"] = "high"
    with pytest.raises(vlprep.InvalidInputError, match="priority"):
        vlprep.fit(chat, 1000, processor=proc)
    with pytest.raises(vlprep.InvalidInputError):
        vlprep.fit(chat, 1000)  # neither processor nor preset
    chat[0]["content"][0]["priority"] = 1
    plan = vlprep.plan(chat, proc)
    with pytest.raises(vlprep.InvalidInputError, match="plan"):
        vlprep.build_inputs(chat, proc, plan=plan, max_total_tokens=100)
    with pytest.raises(vlprep.InvalidInputError, match="truncation"):
        vlprep.build_inputs(chat, proc, truncation="cut")  # type: ignore[arg-type]


def test_fit_keys_are_valid_element_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ele = {"type": "image", "image": _photo(tmp_path, "k", 64, 64), "min_tokens": 4}
    with caplog.at_level(logging.WARNING, logger="vlprep._specs"):
        vlprep.process_vision_info([{"role": "user", "content": [{**ele, "priority": 2}]}])
    assert not [r for r in caplog.records if "not one vlprep reads" in r.getMessage()]
