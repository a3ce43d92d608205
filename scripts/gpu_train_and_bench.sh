#!/usr/bin/env bash
# On a CUDA machine: train the default tiny model with the tiny recipe (bigger batches, more
# steps than on CPU) and benchmark the sd2 preset against diffusers. Everything goes to $OUT.
#   OUT=gpu_out TRAIN_SECONDS=380 scripts/gpu_train_and_bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
TRAIN_SECONDS=${TRAIN_SECONDS:-380}
WORKERS=${WORKERS:-14}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)'

if [ -z "${SKIP_SMOKE:-}" ]; then
echo "== smoke: every stage a few steps on CUDA"
timeout 120 "$PY" -m metricgold_core.cli train --config training/configs/tiny_cpu.yaml \
  --config training/configs/debug.yaml output_dir=/tmp/smoke device=cuda log.progress=false \
  > "$OUT/smoke.log" 2>&1
echo "smoke exit $?"; tail -5 "$OUT/smoke.log"
fi

echo "== train: tiny recipe, batch 32, $TRAIN_SECONDS s budget"
start=$(date +%s)
timeout "$TRAIN_SECONDS" "$PY" -m metricgold_core.cli train --config training/configs/tiny_cpu.yaml \
  output_dir=/tmp/gpu_run device=cuda log.progress=false log.every=50 \
  data.micro_batch=32 data.num_workers="$WORKERS" val.every=400 checkpoint.every=400 \
  stages.0.max_steps=${STEPS0:-700} stages.0.optim.decay_steps=${STEPS0:-700} \
  stages.1.max_steps=${STEPS1:-300} stages.1.optim.decay_steps=${STEPS1:-300} \
  stages.2.max_steps=${STEPS2:-1200} stages.2.optim.decay_steps=${STEPS2:-1200} \
  stages.3.max_steps=${STEPS3:-600} stages.3.optim.decay_steps=${STEPS3:-600} \
  > "$OUT/train.log" 2>&1
echo "train exit $? after $(( $(date +%s) - start )) s"
grep -E "validation|exported|stage |Error|error" "$OUT/train.log" | tail -40
find /tmp/gpu_run -name metrics.jsonl | while read -r f; do d=$(basename "$(dirname "$f")"); cp "$f" "$OUT/metrics_$d.jsonl"; done
last=$(ls -d /tmp/gpu_run/*/model 2>/dev/null | sort | tail -1)
if [ -n "$last" ]; then
  echo "== newest export: $last (stored as float16 to travel and ship small)"
  "$PY" -c "import sys, torch; from metricgold_core.model import MetricGoldModel as M; m = M.load(sys.argv[1]); m.unet.half(); m.vae.half(); m.save('/tmp/export/model')" "$last"
  tar -C /tmp/export -czf "$OUT/model.tgz" model
  ls -la "$OUT/model.tgz"
fi

[ -n "${SKIP_BENCH:-}" ] && exit 0
echo "== bench: sd2 preset (random weights) on CUDA, fp16, 480x640, 1 step"
timeout 150 "$PY" -m metricgold_core.cli bench --preset sd2 --device cuda --dtype float16 \
  --repeats 5 --json "$OUT/bench_sd2_cuda.json"
echo "== bench: sd2 preset, fast mode (untrained light decoder head: speed only)"
timeout 150 "$PY" -m metricgold_core.cli bench --preset sd2 --device cuda --dtype float16 \
  --mode fast --repeats 5 --json "$OUT/bench_sd2_cuda_fast.json"
echo "== bench: tiny preset on this machine's CPU, 2 threads"
timeout 90 "$PY" -m metricgold_core.cli bench --preset tiny --device cpu --threads 2 \
  --repeats 5 --json "$OUT/bench_tiny_cpu2.json"
