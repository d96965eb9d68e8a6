#!/bin/sh
# The models 'optvq serve' opens on when no --model is given: the two
# Fashion-MNIST configs (configs/fashion-mnist/{optvq,vqbase}.yaml, the
# reference's MNIST OptVQ and nearest-code baseline) trained at full length by
# scripts/fashion-mnist-full.sh (100 epochs of all 60,000 training images at
# batch 1024, seed 42; the baseline diverges and keeps its last checkpoint).
# That takes hours on 2 cores and resumes after an interruption; when RUNS_DIR
# already holds finished runs it only evaluates them again. Then copies
# config.json and model.safetensors of each into OUT (default models/) and runs
# 'optvq eval' there on all 10,000 test images (OUT/*/eval.json).
#   sh scripts/serve-models.sh [RUNS_DIR] [OUT] [THREADS]      (after make)
set -eu
RUNS=${1:-runs/fashion-mnist-full}
OUT=${2:-models}
THREADS=${3:-$(nproc)}
BIN=${OPTVQ_BIN:-build/optvq}
OPTVQ_BIN=$BIN bash scripts/fashion-mnist-full.sh "$RUNS" "$THREADS"
for cfg in optvq vqbase; do
    name=fashion-mnist-$cfg
    mkdir -p "$OUT/$name"
    cp "$RUNS/$cfg/config.json" "$RUNS/$cfg/model.safetensors" "$OUT/$name/"
    "$BIN" eval --model "$OUT/$name" --data fashion-mnist --threads "$THREADS" --json "$OUT/$name/eval.json" >/dev/null
    echo "wrote $OUT/$name ($(grep -c '"epoch_end"' "$RUNS/$cfg/metrics.jsonl") epochs)"
done
