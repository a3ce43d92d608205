#!/usr/bin/env bash
# On a CUDA machine: fine-tune the packaged model with training/configs/tiny_robust_gpu.yaml for
# a wall-clock budget and pack the export (float16, like the packaged model) into $OUT.
#   OUT=gpu_out TRAIN_SECONDS=330 SECOND_SECONDS=240 scripts/gpu_robust_train.sh
# Wheels under .whl/ (diffusers and what it needs, where the machine lacks them) are installed
# into /tmp/site first. DRY_RUN=1 checks the same path on the CPU in a minute: small caches,
# 20 + 10 s budgets.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
TRAIN_SECONDS=${TRAIN_SECONDS:-330}
SECOND_SECONDS=${SECOND_SECONDS:-240}
PY=${PYTHON:-python3}
RUN=${RUN:-/tmp/robust_gpu}
CACHE=${CACHE:-/tmp/metricgold_cache}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
extra=(device=cuda)
if [ -n "${DRY_RUN:-}" ]; then
  TRAIN_SECONDS=20 SECOND_SECONDS=10
  extra=(device=cpu data.micro_batch=4 data.num_workers=0 val.every=0
         data.train.0.length=48 data.train.1.length=16 data.val_count=4)
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
"$PY" -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)' \
  || exit 1

small=(data.train.0.length=48 data.train.1.length=16 data.val_count=4)
if [ -z "${DRY_RUN:-}" ]; then
  echo "== smoke: the same recipe for 5 s on tiny caches, so a broken CUDA path fails early"
  "$PY" -m metricgold_core.cli train --config training/configs/tiny_robust_gpu.yaml \
    output_dir=/tmp/smoke max_seconds=5 data.train.0.cache=/tmp/smoke_cache/normal \
    data.train.1.cache=/tmp/smoke_cache/close "${small[@]}" "${extra[@]}" > "$OUT/smoke.log" 2>&1 \
    || { tail -30 "$OUT/smoke.log"; exit 1; }
  grep -E "ends at|exported" "$OUT/smoke.log"
fi

echo "== train: $TRAIN_SECONDS s budget (caches rendered first, not counted)"
start=$(date +%s)
"$PY" -m metricgold_core.cli train --config training/configs/tiny_robust_gpu.yaml \
  output_dir="$RUN" max_seconds="$TRAIN_SECONDS" \
  data.train.0.cache="$CACHE/normal" data.train.1.cache="$CACHE/close" "${extra[@]}" \
  > "$OUT/train.log" 2>&1
status=$?
echo "train exit $status after $(( $(date +%s) - start )) s"
grep -vE "^\s*$" "$OUT/train.log" | grep -E "validation|ends at|exported|Error|error|step [0-9]+0{3}:" | tail -30
cp "$RUN/metrics.jsonl" "$OUT/" 2>/dev/null
cat "$CACHE"/*/meta.json > "$OUT/caches.json" 2>/dev/null
[ "$status" -eq 0 ] && [ -d "$RUN/model" ] || exit 1

# The packaged model had a second pass: the same recipe again from the first pass's export at
# half the LR (a warm restart; SECOND_SECONDS=0 skips it).
if [ "$SECOND_SECONDS" -gt 0 ]; then
  echo "== second pass: $SECOND_SECONDS s from the first pass's export, lr 1e-4"
  "$PY" -m metricgold_core.cli train --config training/configs/tiny_robust_gpu.yaml \
    output_dir="$RUN-b" model.init="checkpoint:$RUN/model" max_seconds="$SECOND_SECONDS" \
    optim.lr=1.0e-4 optim.warmup_steps=50 val.at_start=false \
    data.train.0.cache="$CACHE/normal" data.train.1.cache="$CACHE/close" "${extra[@]}" \
    > "$OUT/train_b.log" 2>&1 || { tail -30 "$OUT/train_b.log"; exit 1; }
  grep -E "validation|ends at|exported" "$OUT/train_b.log" | tail -8
  cp "$RUN-b/metrics.jsonl" "$OUT/metrics_b.jsonl"
  RUN="$RUN-b"
fi

echo "== export as float16"
rm -rf /tmp/export && mkdir -p /tmp/export
"$PY" -c "
import sys
from metricgold_core.model import MetricGoldModel
m = MetricGoldModel.load(sys.argv[1])
m.unet.half(); m.vae.half()
m.save(sys.argv[2])" "$RUN/model" /tmp/export/model || exit 1
tar -C /tmp/export -czf "$OUT/model.tgz" model && ls -la "$OUT/model.tgz"
