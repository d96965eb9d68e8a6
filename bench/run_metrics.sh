#!/bin/bash
# Benchmark (not a test): the evaluation metrics' networks, optvq vs PyTorch CPU
# on the same 2 threads (and on 1, for reference): pytorch-fid's InceptionV3 feature extraction (B images
# resized to 299x299) and pyiqa's LPIPS-Alex (B pairs), random weights, median of
# REPS runs after a warm-up in each of ROUNDS processes per side, the sides
# alternating (a shared machine's load then hits both alike), the best median
# reported; peak RSS of each process. Writes bench/results/metrics.md.
#   bash bench/run_metrics.sh [REPS] [B] [S] [ROUNDS]   (from the repository root, after make)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/torch_malloc.sh"
REPS=${1:-3}
B=${2:-8}
S=${3:-256}
ROUNDS=${4:-3}
BUILD=${BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -O2 -march=native -Iinclude -Isrc bench/bench_metrics.c "$BUILD/liboptvq.a" \
    -lopenblas -lyaml -lcjson -lpng -ljpeg -lz -lm -fopenmp -o "$tmp/bench_metrics"
echo "inputs: $B images (pairs for LPIPS) of 3 x $S x $S, best of $ROUNDS medians of $REPS after a warm-up"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
NPROC=$(nproc) # before OMP_NUM_THREADS is set (nproc honours it)
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $NPROC cores"
mkdir -p bench/results
{
    echo "| $B images of $S x $S | threads | optvq s | PyTorch s | speedup | optvq MiB | PyTorch MiB |"
    echo "|---|---|---|---|---|---|---|"
    for run in "fid 2" "lpips 2" "fid 1" "lpips 1"; do
        set -- $run
        kind=$1
        export OMP_NUM_THREADS=$2 TORCH_THREADS=$2
        ot=; om=; tt=; tm=
        for _ in $(seq "$ROUNDS"); do
            read -r a b _ < <("$tmp/bench_metrics" "$kind" "$B" "$S" "$REPS")
            read -r c d _ < <(torch_py bench/metrics_torch.py "$kind" "$B" "$S" "$REPS")
            ot=$(awk -v x="$a" -v y="$ot" 'BEGIN {print (y == "" || x < y) ? x : y}')
            tt=$(awk -v x="$c" -v y="$tt" 'BEGIN {print (y == "" || x < y) ? x : y}')
            om=$b
            tm=$d
        done
        name=$([ "$kind" = fid ] && echo "Inception features (FID), resize to 299" || echo "LPIPS-Alex v0.1, $B pairs")
        echo "| $name | $2 | $ot | $tt | $(awk -v a="$ot" -v b="$tt" 'BEGIN {printf "%.2fx", b / a}') | $om | $tm |"
    done
    echo
    echo "optvq $("$BUILD/optvq" --version | cut -d' ' -f2), PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)');" \
        "peak RSS of the whole process (weights included)."
    echo "Shared $NPROC-core machine: load average $LOAD0 before the runs, $(cut -d' ' -f1-3 /proc/loadavg) after" \
        "(1, 5, 15 min); best of $ROUNDS alternating process runs per side, each the median of $REPS."
    torch_malloc_line
} | tee bench/results/metrics.md
