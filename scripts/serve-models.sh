#!/bin/sh
# The models 'optvq serve' opens on when no --model is given: the two
# Fashion-MNIST configs (configs/fashion-mnist/{optvq,vqbase}.yaml, the
# reference's MNIST OptVQ and nearest-code baseline) trained on the short
# schedule of 'optvq demo' (5 epochs of the first 20,000 training images at
# batch 256, the reference's absolute learning rate 4.5e-6 x 1024, seed 42),
# not the 100 epochs of scripts/fashion-mnist-full.sh (hours on 2 cores).
# Then 'optvq eval' on all 10,000 test images. Keeps config.json,
# model.safetensors and eval.json of each under OUT (default models/).
#   sh scripts/serve-models.sh [OUT] [THREADS]          (after make)
set -eu
OUT=${1:-models}
THREADS=${2:-0}
BIN=${OPTVQ_BIN:-build/optvq}
RUNS=${RUNS:-$(mktemp -d)}
EPOCHS=${EPOCHS:-5}
LIMIT=${LIMIT:-20000}
BATCH=256
LR=1.8e-05 # 4.5e-6 x 1024 / 256
for cfg in optvq vqbase; do
    name=fashion-mnist-$cfg
    echo "== $name: $EPOCHS epochs of $LIMIT images, batch $BATCH"
    "$BIN" train --config "configs/fashion-mnist/$cfg.yaml" --out "$RUNS/$cfg" --force --epochs "$EPOCHS" \
        --limit "$LIMIT" --batch-size "$BATCH" --lr "$LR" --seed 42 --threads "$THREADS"
    mkdir -p "$OUT/$name"
    cp "$RUNS/$cfg/config.json" "$RUNS/$cfg/model.safetensors" "$OUT/$name/"
    "$BIN" eval --model "$OUT/$name" --data fashion-mnist --threads "$THREADS" --json "$OUT/$name/eval.json"
done
echo "wrote $OUT/fashion-mnist-optvq and $OUT/fashion-mnist-vqbase"
