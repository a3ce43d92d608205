#!/usr/bin/env bash
# One GPU loan (15 min): (a) train the packaged model's successor on the GPU from a pre-rendered
# scene cache (training/configs/tiny_canonical.yaml's single-step stage, bigger batch, optional
# larger training size / processing resolution) and score it and today's model on the held-out
# procedural scenes; (b) measure the paper recipe's training step (scripts/paper_step_bench.py).
# Everything goes to $OUT: *.json figures, logs, and the successor as model.tgz (float16).
#   OUT=gpu_out scripts/gpu_successor_and_paper_step.sh
#   DRY_RUN=1 OUT=/tmp/x scripts/gpu_successor_and_paper_step.sh   # CPU check, tiny sizes
# Knobs: HEIGHT WIDTH (training size; processing resolution = WIDTH, canonical focal scaled so the
# 70 deg training FOV stays), STEPS, BATCH, LR, SCENES (cache size), TRAIN_SECONDS (a stop that
# still exports: the run is resumed with max_steps = the step reached), SKIP_TRAIN, SKIP_PAPER.
# Whether a larger HEIGHT/WIDTH keeps `make demo` >= 2 Hz must be measured on the CPU first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${DRY_RUN:-}" ]; then
  DEVICE=cpu; HEIGHT=${HEIGHT:-32}; WIDTH=${WIDTH:-32}; STEPS=${STEPS:-4}; BATCH=${BATCH:-2}
  SCENES=${SCENES:-16}; EVAL=(--count 2 --size 48 64); PAPER=(--dry-run --steps 1)
  WORK=${WORK:-$OUT/work}; TRAIN_SECONDS=${TRAIN_SECONDS:-300}
else
  DEVICE=cuda; HEIGHT=${HEIGHT:-96}; WIDTH=${WIDTH:-128}; STEPS=${STEPS:-3000}
  BATCH=${BATCH:-64}; SCENES=${SCENES:-8000}; EVAL=(--count 64 --size 480 640); PAPER=()
  WORK=${WORK:-/tmp/successor}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
LR=${LR:-2e-4}
TRAIN_SECONDS=${TRAIN_SECONDS:-420}
FOCAL=$("$PY" -c "print(round(91.4 * $WIDTH / 128, 3))")
RUN="$WORK/run"

if [ -z "${SKIP_PAPER:-}" ]; then
  echo "== (b) paper recipe step: bf16, micro-batch 2 x 16, gradient checkpointing on / off"
  "$PY" scripts/paper_step_bench.py --out "$OUT" "${PAPER[@]}" --timeout 200 \
    > "$OUT/paper_step.log" 2>&1
  echo "paper step exit $?"; cat "$OUT/paper_step.log"
fi

[ -n "${SKIP_TRAIN:-}" ] && exit 0
echo "== (a) successor: ${HEIGHT}x${WIDTH}, batch $BATCH, $STEPS steps, lr $LR, $TRAIN_SECONDS s"
TRAIN=("$PY" -m metricgold_core.cli train --config training/configs/tiny_canonical.yaml
  output_dir="$RUN" device="$DEVICE" log.progress=false log.every=50 val.every=500
  checkpoint.every=250 data.height="$HEIGHT" data.width="$WIDTH" data.micro_batch="$BATCH"
  model.processing_resolution="$WIDTH" model.canonical_focal_px="$FOCAL"
  data.train.0.length="$SCENES" data.train.0.cache="$WORK/cache_${SCENES}_${HEIGHT}x${WIDTH}"
  optim.lr="$LR" stages.0.optim.decay_steps="$STEPS")
start=$(date +%s)
timeout -s TERM "$TRAIN_SECONDS" "${TRAIN[@]}" stages.0.max_steps="$STEPS" > "$OUT/train.log" 2>&1
echo "train exit $? after $(( $(date +%s) - start )) s"
if [ ! -d "$RUN/0_single_step/model" ]; then  # stopped by the time limit: export what it has
  reached=$(ls -d "$RUN"/0_single_step/checkpoints/step_* 2>/dev/null | sort | tail -1)
  if [ -n "$reached" ]; then
    reached=$((10#${reached##*_}))
    echo "stopped at step $reached: exporting it"
    "${TRAIN[@]}" stages.0.max_steps="$reached" >> "$OUT/train.log" 2>&1
  fi
fi
grep -E "validation|exported|Error|error" "$OUT/train.log" | tail -20
cp "$RUN/0_single_step/metrics.jsonl" "$OUT/metrics_successor.jsonl" 2>/dev/null

echo "== held-out procedural scenes (seeds from 5,000,000): today's model and the successor"
for name in today successor; do
  ck=(); [ "$name" = successor ] && ck=(--checkpoint "$RUN/0_single_step/model")
  "$PY" -m metricgold_core.cli evaluate "${ck[@]}" --device "$DEVICE" --dataset procedural \
    "${EVAL[@]}" --scene-seed 5000000 --alignment none median --no-progress \
    --output "$WORK/eval_$name" > "$OUT/eval_$name.log" 2>&1
  echo "$name: exit $?"
  cp "$WORK/eval_$name/summary.json" "$OUT/eval_$name.json" 2>/dev/null
done
if [ -d "$RUN/0_single_step/model" ]; then
  "$PY" -c "import sys; from metricgold_core.model import MetricGoldModel as M; \
m = M.load(sys.argv[1]); m.unet.half(); m.vae.half(); m.save(sys.argv[2])" \
    "$RUN/0_single_step/model" "$WORK/export/model"
  tar -C "$WORK/export" -czf "$OUT/model.tgz" model && ls -la "$OUT/model.tgz"
fi
