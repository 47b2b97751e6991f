#!/usr/bin/env bash
# The whole GPU suite in one prepared run (about 8 minutes on one H200): the CUDA tests, then
# benchmarks/gpu.py and benchmarks/runner.py --config 2b, each table written to a file.
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh        # results in $OUT (default benchmarks/out/gpu)
#
# Expects a CUDA machine whose python3 has torch, torchvision and transformers (>= 5.3)
# already; packages it lacks (qwen-vl-utils, av, pytest-timeout, ...) can be carried as
# wheels in .whl/ (see the device tool's README) and are installed into /tmp/site first.
# vlprep itself is used from this checkout (src/ on PYTHONPATH), nothing is downloaded.
# Every step has its own timeout and the script goes on after a failure, so one run gives
# every figure it can; the exit status is the number of steps that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
failed=0
step() {  # step NAME SECONDS COMMAND...: run with a timeout, log to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local started=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - started)) s"
  tail -n 25 "$OUT/$name.log"
  [ "$rc" = 0 ] || failed=$((failed + 1))
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch, torchvision, transformers; print("torch", torch.__version__, "torchvision", torchvision.__version__, "transformers", transformers.__version__, "cuda", torch.version.cuda)'
} >"$OUT/card.txt" 2>&1
cat "$OUT/card.txt"
step cuda_tests 240 python3 -m pytest -q -s -p no:cacheprovider -o addopts="" tests_gpu/test_cuda.py
step gpu_bench 150 python3 benchmarks/gpu.py --repeat 10 --batch 16 --tokens 1280
step runner_2b 240 python3 benchmarks/runner.py --config 2b --out "$OUT/runner.md"
echo "steps failed: $failed (logs and tables in $OUT)"
exit "$failed"
