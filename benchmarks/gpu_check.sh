#!/usr/bin/env bash
# The GPU half of the benchmark suite in one prepared run (about 5 minutes on one H100 or
# H200), for a session that is lent a GPU machine for a few minutes:
#
#   bash benchmarks/gpu_check.sh "$OUT"          # on the GPU machine, from the repo root
#   QUICK=1 bash benchmarks/gpu_check.sh /tmp/x  # a dry run of this script on a CPU
#
# It needs jax with CUDA, optax, chex, numpy, ml_dtypes and tqdm importable by python3
# (the lent machines have them; funcnet itself is used from this checkout, not installed).
# It runs: the cuDNN fused-attention test of tests/nn/test_attention.py; funcnet against
# raw JAX on the GPT-2-small bf16 workload, first checking both compute the same losses,
# at batch 16, batch 32 with full remat, and batch 64 with full remat and a chunked loss
# (docs/performance.md, "GPU"). It writes at most five files into OUT: log.txt (every
# command's output), env.txt, cudnn.txt, gpu.md (the tables of every configuration, one
# after another) and gpu-json.tar.gz (the JSON files), so that they all come back.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
quick=${QUICK:+--quick}
results=$(mktemp -d)
log="$out/log.txt"
start=$SECONDS
stamp() { echo "== [$((SECONDS - start)) s] $*" | tee -a "$log"; }

stamp "environment"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$py" -c 'import jax, jaxlib, optax, sys; print(sys.version); print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "optax", optax.__version__); print(jax.devices())'
} >"$out/env.txt" 2>&1
cat "$out/env.txt" >>"$log"

stamp "cuDNN fused attention (skipped on a CPU)"
timeout 300 "$py" -m pytest -p no:cacheprovider -o addopts= -q -rs \
  tests/nn/test_attention.py -k "cudnn or fused" >"$out/cudnn.txt" 2>&1
echo "pytest exit $?" >>"$out/cudnn.txt"
cat "$out/cudnn.txt" >>"$log"

run() {  # run NAME [--set FIELD=VALUE ...] [--verify]
  local name=$1
  shift
  stamp "gpt: $name"
  timeout 420 "$py" -m benchmarks.run --workloads gpt --impls raw,funcnet --reps 1 $quick \
    --out "$results/$name" "$@" >>"$log" 2>&1
  echo "exit $?" >>"$log"
  {
    echo "<!-- configuration: $name ($*) -->"
    cat "$results/$name"/latest-*.md 2>/dev/null || echo "(no table: see log.txt)"
    echo
  } >>"$out/gpu.md"
}

: >"$out/gpu.md"
run batch16 --verify
run batch32-remat --set batch=32 --set remat=full
run batch64-remat-chunks --set batch=64 --set remat=full --set loss_chunks=8

tar -czf "$out/gpu-json.tar.gz" -C "$results" $(cd "$results" && find . -name '*.json')
stamp "done"
