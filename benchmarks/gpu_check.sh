#!/usr/bin/env bash
# The GPU half of the benchmark suite in one prepared run (about 8 minutes on one H100 or
# H200, never more than BUDGET_S = 570 s, so it fits a 10-minute limit on one command):
#
#   bash benchmarks/gpu_check.sh "$OUT"          # on the GPU machine, from the repo root
#   QUICK=1 bash benchmarks/gpu_check.sh /tmp/x  # a dry run of this script on a CPU
#
# It needs jax with CUDA, optax, numpy, ml_dtypes, flatbuffers and tqdm importable by
# python3 (funcnet itself is used from this checkout, not installed). It runs: the cuDNN
# fused-attention test of tests/nn/test_attention.py; the export round trip (benchmarks/export_check.py: a model exported for cpu and cuda, run on
# the GPU in a fresh process against the CPU's outputs, and a CPU-only export refused);
# mixed precision (benchmarks/precision.py: float32, bf16 and fp16 train steps of the
# transformer and of the GPT-2-small workload); funcnet against raw JAX on the GPT-2-small
# bf16 workload, first checking both compute the same losses, at batch 16, batch 32 with
# full remat, and batch 64 with full remat and a chunked loss (docs/performance.md, "GPU").
# Every step has a time limit, cut to what is left of BUDGET_S; a step with no time left
# is skipped, said so in log.txt and gpu.md. It writes at most five files into OUT:
# log.txt (every command's output), env.txt, cudnn.txt, gpu.md (the export check and the
# tables of every configuration, one after another) and gpu-json.tar.gz (the JSON files).
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
budget=${BUDGET_S:-570}
stamp() { echo "== [$((SECONDS - start)) s] $*" | tee -a "$log"; }
limit() {  # limit CAP: seconds a step may run, CAP or what is left of the budget; 0: skip
  local left=$((budget - (SECONDS - start) - 10))
  ((left > $1)) && left=$1
  echo $((left >= 20 ? left : 0))
}
skipped() {  # skipped WHAT: a step the budget left no time for
  stamp "skipped, out of time: $*"
  echo "<!-- skipped, out of time (BUDGET_S=$budget): $* -->" >>"$out/gpu.md"
}

stamp "environment"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$py" -c 'import jax, jaxlib, optax, sys; print(sys.version); print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "optax", optax.__version__); print(jax.devices())'
} >"$out/env.txt" 2>&1
cat "$out/env.txt" >>"$log"

: >"$out/gpu.md"

t=$(limit 300)
if ((t)); then
  stamp "cuDNN fused attention (skipped on a CPU)"
  timeout "$t" "$py" -m pytest -p no:cacheprovider -o addopts= -q -rs \
    tests/nn/test_attention.py -k "cudnn or fused" >"$out/cudnn.txt" 2>&1
  echo "pytest exit $?" >>"$out/cudnn.txt"
  cat "$out/cudnn.txt" >>"$log"
else
  skipped "cuDNN fused attention"
fi

export_check() {  # the export round trip; its report goes into gpu.md
  local t
  t=$(limit 150)
  ((t)) || { skipped "export check"; return; }
  stamp "export check"
  timeout "$t" "$py" -m benchmarks.export_check $quick --out "$results/export" >>"$log" 2>&1
  echo "exit $?" >>"$log"
  cat "$results/export/export_check.md" >>"$out/gpu.md" 2>/dev/null ||
    echo "(no export report: see log.txt)" >>"$out/gpu.md"
  echo >>"$out/gpu.md"
}

precision() {  # precision WORKLOAD CAP: float32, bf16, fp16 train steps; the table into gpu.md
  local t
  t=$(limit "$2")
  ((t)) || { skipped "precision $1"; return; }
  stamp "mixed precision: $1"
  timeout "$t" "$py" -m benchmarks.precision --workloads "$1" --warmup 10 --rounds 3 $quick \
    --out "$results/precision-$1" >>"$log" 2>&1
  echo "exit $?" >>"$log"
  cat "$results/precision-$1"/precision-*.md >>"$out/gpu.md" 2>/dev/null ||
    echo "(no precision table for $1: see log.txt)" >>"$out/gpu.md"
  echo >>"$out/gpu.md"
}

run() {  # run NAME [--set FIELD=VALUE ...] [--verify]
  local name=$1 t
  shift
  t=$(limit 420)
  ((t)) || { skipped "gpt $name"; return; }
  stamp "gpt: $name"
  timeout "$t" "$py" -m benchmarks.run --workloads gpt --impls raw,funcnet --reps 1 $quick \
    --out "$results/$name" "$@" >>"$log" 2>&1
  echo "exit $?" >>"$log"
  {
    echo "<!-- configuration: $name ($*) -->"
    cat "$results/$name"/latest-*.md 2>/dev/null || echo "(no table: see log.txt)"
    echo
  } >>"$out/gpu.md"
}

export_check
precision transformer 120
precision gpt 300
run batch16 --verify
run batch32-remat --set batch=32 --set remat=full
run batch64-remat-chunks --set batch=64 --set remat=full --set loss_chunks=8

jsons=$(cd "$results" && find . -name '*.json')
if [ -n "$jsons" ]; then
  tar -czf "$out/gpu-json.tar.gz" -C "$results" $jsons
else
  echo "no JSON files to pack" >>"$log"
fi
stamp "done"
