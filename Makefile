# Two entry points that work on a fresh machine:
#   make demo  - own venv (.venv-demo, CPU torch 2.14.1 + torchvision 0.29.1: transformers'
#                Qwen-VL processors need torchvision), runs the main job on bundled media
#   make test  - own venv (.venv, torch 2.14.1 + torchvision 0.29.1 for the qwen-vl-utils oracle),
#                runs lint, type checks and the test suite
#   make compat - the conformance tests against a matrix of transformers releases, one venv
#                each (.venv-compat/), table into docs/compatibility.md
# Every venv installs with `-c constraints.txt`: the exact versions of every package the tests,
# the demo, the fuzzer and the benchmarks use. Changing one is a deliberate commit (make lock).
# torch is always pinned and installed first, so pip never resolves a bare "torch" into a
# multi-GB CUDA download.

PYTHON ?= python3
TEST_VENV := .venv
DEMO_VENV := .venv-demo
FUZZ_VENV := .venv-fuzz
# make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS="image video": each target runs FUZZ_SECONDS, one
# after another; findings land in $(FUZZ_WORK)/artifacts-<target>/ (see docs/security.md).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= image data_uri url video
FUZZ_WORK ?= .fuzz-work
# make fuzz-messages FUZZ_EXAMPLES=30000: the Hypothesis fuzz of hostile chat messages through
# process_vision_info and build_inputs (tests/test_fuzz_messages.py, which runs a few hundred
# in the suite), from a random seed, in the test venv. Every distinct escape (a non-vlprep
# exception, or a message that breaks the conventions) is written to
# $(FUZZ_WORK)/messages-escapes.jsonl and the target fails if there is one.
FUZZ_EXAMPLES ?= 30000
TEST_TORCH := torch==2.14.1 torchvision==0.29.1
DEMO_TORCH := torch==2.14.1 torchvision==0.29.1
PIP_FLAGS := --quiet --disable-pip-version-check
LOCK := constraints.txt
PIN := $(PIP_FLAGS) -c $(LOCK)
# make compat COMPAT_VERSIONS="5.3.0 5.25.0": transformers releases to test (5.3 is the lowest
# claimed; the newest is the one constraints.txt pins).
COMPAT_VERSIONS ?= 5.3.0 5.9.0 5.14.1 5.24.0 5.25.0

.PHONY: demo test lint typecheck pytest bench fuzz fuzz-messages compat lock clean

$(TEST_VENV)/.ready: pyproject.toml $(LOCK)
	test -x $(TEST_VENV)/bin/python || $(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install $(PIN) $(TEST_TORCH)
	$(TEST_VENV)/bin/pip install $(PIN) -e '.[dev,heif,video,ray,serve]'
	touch $@

$(DEMO_VENV)/.ready: pyproject.toml $(LOCK)
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install $(PIN) $(DEMO_TORCH)
	$(DEMO_VENV)/bin/pip install $(PIN) -e '.[heif,video,runner]'
	touch $@

$(FUZZ_VENV)/.ready: pyproject.toml $(LOCK)
	test -x $(FUZZ_VENV)/bin/python || $(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/pip install $(PIN) $(DEMO_TORCH)
	$(FUZZ_VENV)/bin/pip install $(PIN) -e '.[fuzz,video]'
	touch $@

demo: $(DEMO_VENV)/.ready
	$(DEMO_VENV)/bin/python examples/demo.py

lint: $(TEST_VENV)/.ready
	$(TEST_VENV)/bin/ruff check src tests tests_gpu benchmarks examples fuzz scripts

typecheck: $(TEST_VENV)/.ready
	$(TEST_VENV)/bin/mypy --strict src

pytest: $(TEST_VENV)/.ready
	$(TEST_VENV)/bin/python -m pytest

test: lint typecheck pytest

fuzz: $(FUZZ_VENV)/.ready
	FUZZ_PYTHON=$(FUZZ_VENV)/bin/python FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_WORK=$(FUZZ_WORK) \
		sh fuzz/campaign.sh $(FUZZ_TARGETS)
	cat $(FUZZ_WORK)/campaign.log

fuzz-messages: $(TEST_VENV)/.ready
	mkdir -p $(FUZZ_WORK)
	rm -f $(FUZZ_WORK)/messages-escapes.jsonl
	VLPREP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) VLPREP_FUZZ_COLLECT=$(FUZZ_WORK)/messages-escapes.jsonl \
		$(TEST_VENV)/bin/python -m pytest tests/test_fuzz_messages.py -p no:cacheprovider \
		-o timeout=0 -q --hypothesis-show-statistics
	@if test -s $(FUZZ_WORK)/messages-escapes.jsonl; then \
		cat $(FUZZ_WORK)/messages-escapes.jsonl; exit 1; fi

bench: $(TEST_VENV)/.ready
	$(TEST_VENV)/bin/pip install $(PIN) -e '.[bench]'
	$(TEST_VENV)/bin/python benchmarks/images.py --out docs/performance.md
	$(TEST_VENV)/bin/python benchmarks/throughput.py --out docs/performance.md --plots docs/images
	$(TEST_VENV)/bin/python benchmarks/bf16.py --repeat 9 --out docs/performance.md

compat: $(TEST_VENV)/.ready
	$(TEST_VENV)/bin/python scripts/compat.py --versions "$(COMPAT_VERSIONS)" --out docs/compatibility.md

# Rewrites constraints.txt from the test venv (plus the demo/fuzz/bench-only extras): run it
# after changing a version in pyproject.toml, then make test and make compat, and commit.
lock: $(TEST_VENV)/.ready
	$(TEST_VENV)/bin/python scripts/lock.py --venv $(TEST_VENV) --extra atheris matplotlib --out $(LOCK)

clean:
	rm -rf $(TEST_VENV) $(DEMO_VENV) $(FUZZ_VENV) .venv-compat $(FUZZ_WORK) .mypy_cache .ruff_cache .pytest_cache .hypothesis
