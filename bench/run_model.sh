#!/bin/bash
# Benchmark (not a test): encode + decode of one 256x256 image with the f16 h4
# ImageNet architecture (72.9M parameters), optvq vs PyTorch CPU, same random
# weights, 2 threads, median of REPS runs after a warm-up, peak RSS of each
# process. Writes the table to bench/results/model.md.
#   bash bench/run_model.sh [REPS]          (from the repository root, after make)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/torch_malloc.sh"
REPS=${1:-3}
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2
echo "inputs: f16 h4 VQModel (ch 128, ch_mult 1,1,2,2,4, 2 res blocks, attention at 16, 16384 codes, 4 heads),"
echo "        1 x 3 x 256 x 256, Sinkhorn assignment, 2 threads, median of $REPS after a warm-up"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
/usr/bin/python3 bench/model_torch.py save "$tmp/m"
read -r _ ours peak oabs < <(build/bench/bench_model "$tmp/m" "$REPS")
read -r _ tt tm tabs < <(torch_py bench/model_torch.py run "$tmp/m" "$REPS")
echo "mean |output|: optvq $oabs, torch $tabs (same weights and input)"
mkdir -p bench/results
{
    echo "| encode+decode, f16 h4, 1 x 256 x 256 | seconds (median of $REPS) | peak RSS MiB |"
    echo "|---|---|---|"
    echo "| optvq $(build/optvq --version | cut -d' ' -f2) (optvq_model_reconstruct) | $ours | $peak |"
    echo "| PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') (no_grad) | $tt | $tm |"
    echo
    echo "speedup $(awk -v a="$ours" -v b="$tt" 'BEGIN {printf "%.2fx", b / a}'), memory $(awk -v a="$peak" -v b="$tm" 'BEGIN {printf "%.2fx less", b / a}')"
    torch_malloc_line
} | tee bench/results/model.md
