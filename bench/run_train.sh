#!/bin/bash
# Benchmark (not a test): seconds per training step and per Fashion-MNIST
# epoch (60000 images), optvq vs PyTorch, same recipe and model, 2 threads.
# Both sides train on the first LIMIT images at batch BATCH; the first step of
# each is a warm-up; an epoch is 60000/BATCH steps of the measured mean.
#   bash bench/run_train.sh [LIMIT] [BATCH]      (after make)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/torch_malloc.sh"
LIMIT=${1:-8192}
BATCH=${2:-1024}
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2
STEPS_EPOCH=$(( 60000 / BATCH ))  # the last partial batch is dropped, as the reference does
echo "inputs: Fashion-MNIST, first $LIMIT training images, batch $BATCH, 2 threads; epoch = $STEPS_EPOCH steps"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
mkdir -p bench/results
{
echo "| config | optvq s/step | torch s/step | speedup | optvq s/epoch | torch s/epoch | optvq peak MiB | torch peak MiB |"
echo "|---|---|---|---|---|---|---|---|"
for cfg in optvq vqbase; do
    sed 's/use_initiate: kmeans/use_initiate: null/' "configs/fashion-mnist/$cfg.yaml" > "$tmp/$cfg.yaml"
    /usr/bin/time -f "%M" -o "$tmp/rss" "$BIN" train --config "$tmp/$cfg.yaml" --out "$tmp/run_$cfg" --epochs 1 \
        --limit "$LIMIT" --batch-size "$BATCH" --val-limit 0 --threads 2 >/dev/null 2>&1
    ours=$(grep '"lr"' "$tmp/run_$cfg/metrics.jsonl" | tail -n +2 | sed 's/.*"seconds": \([0-9.]*\).*/\1/' \
           | awk '{s += $1; n++} END {printf "%.4f", s / n}')
    orss=$(awk '{printf "%.0f", $1 / 1024}' "$tmp/rss")
    read -r _ theirs _ trss < <(torch_py bench/train_torch.py "$cfg" "$LIMIT" "$BATCH")
    awk -v c="$cfg" -v a="$ours" -v b="$theirs" -v e="$STEPS_EPOCH" -v r1="$orss" -v r2="$trss" \
        'BEGIN {printf "| %s | %.3f | %.3f | %.2fx | %.0f | %.0f | %s | %s |\n", c, a, b, b / a, a * e, b * e, r1, r2}'
done
echo
torch_malloc_line
openblas_line
} | tee bench/results/train.md
