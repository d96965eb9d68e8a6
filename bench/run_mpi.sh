#!/bin/bash
# Benchmark (not a test): data-parallel training on this machine, 1 process x
# 2 threads against 2 MPI ranks x 1 thread on the same global batch, with the
# reference's recipe under PyTorch DDP (gloo, bench/mpi_torch.py) beside it for
# the Fashion-MNIST config, for
#   - the Fashion-MNIST OptVQ config (global batch 1024), and
#   - the tests' reduced taming VQGAN + PatchGAN (global batch 4, 64x64 crops);
# per step: the time (mean of the steps after the first), the time this
# process spent in reductions over the ranks, and the bytes it handed to them
# (gradients, the adaptive weight's last-layer gradients, losses, the code
# histogram; a ring allreduce sends and receives about twice that per rank).
# With --f16 also the ImageNet f16 h4 VQGAN at 256x256 with LPIPS (random
# weights written by bench/train_gan_torch.py, which needs python3-torch) and
# the PatchGAN, global batch 2: the figures docs/distributed.md projects from.
#   bash bench/run_mpi.sh [--f16] [STEPS]        (after make; STEPS default 6)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/torch_malloc.sh"
F16=0
[ "${1:-}" = --f16 ] && { F16=1; shift; }
STEPS=${1:-6}
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "inputs: $STEPS steps each (the first a warm-up); 1 process x 2 threads vs mpirun -np 2 x 1 thread"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mpi:    $(mpirun --version 2>/dev/null | head -1)"

# mean over the steps after the first of a metrics.jsonl field (0 when absent)
field_mean() { # FILE FIELD
    grep '"lr"' "$1" | tail -n +2 | sed -n "s/.*\"$2\": \([0-9.e+-]*\).*/\1/p" |
        awk '{s += $1; n++} END {if (n) printf "%.4g", s / n; else printf "0"}'
}

run_pair() { # NAME GLOBAL_BATCH ARGS...
    local name=$1 global=$2
    shift 2
    OMP_NUM_THREADS=2 "$BIN" train "$@" --batch-size "$global" --threads 2 --out "$tmp/one" >"$tmp/log" 2>&1 ||
        { cat "$tmp/log"; exit 1; }
    OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe "$BIN" train "$@" --batch-size $((global / 2)) --threads 1 \
        --out "$tmp/two" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
    local s1 s2 c2 b2
    s1=$(field_mean "$tmp/one/metrics.jsonl" seconds)
    s2=$(field_mean "$tmp/two/metrics.jsonl" seconds)
    c2=$(field_mean "$tmp/two/metrics.jsonl" comm_seconds)
    b2=$(field_mean "$tmp/two/metrics.jsonl" comm_bytes)
    echo "| $name, global batch $global | 1 x 2 threads | $s1 | - | - |"
    echo "| | 2 ranks x 1 thread | $s2 | $c2 ($(awk -v c="$c2" -v s="$s2" 'BEGIN {printf "%.1f%%", 100 * c / s}')) | $(awk -v b="$b2" 'BEGIN {printf "%.2f MB", b / 1e6}') |"
    rm -rf "$tmp/one" "$tmp/two"
}

torch_pair() { # NAME GLOBAL_BATCH
    local t1 t2
    t1=$(OMP_NUM_THREADS=2 torch_py bench/mpi_torch.py 1 2 "$2" "$STEPS" | awk '{print $2}')
    t2=$(OMP_NUM_THREADS=1 torch_py bench/mpi_torch.py 2 1 $(($2 / 2)) "$STEPS" | awk '{print $2}')
    echo "| $1, PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') | 1 x 2 threads | $t1 | - | - |"
    echo "| | DDP 2 x 1 thread (gloo) | $t2 | (overlapped) | - |"
}

sed 's/loss_p_weight: 3.0/loss_p_weight: 0.0/' tests/ref/gan_train/config.yaml >"$tmp/gan.yaml"
mkdir "$tmp/imgs"
cp tests/ref/image/*.png tests/ref/image/*.jpg "$tmp/imgs/"
mkdir -p bench/results
{
echo "| workload | processes | seconds per step | of which in reductions | bytes reduced per step and rank |"
echo "|---|---|---|---|---|"
run_pair "Fashion-MNIST OptVQ" 1024 --config configs/fashion-mnist/optvq.yaml --epochs 1 --limit $((1024 * STEPS)) \
    --val-limit 0 --seed 1
torch_pair "Fashion-MNIST OptVQ" 1024
run_pair "taming VQGAN + PatchGAN (tests)" 4 --config "$tmp/gan.yaml" --data "$tmp/imgs" --epochs $(( (STEPS * 4 + 13) / 14 )) \
    --val-limit 0 --seed 1
if [ "$F16" = 1 ]; then
    /usr/bin/python3 bench/train_gan_torch.py save "$tmp" >/dev/null
    sed 's/use_initiate: kmeans/use_initiate: null/; s/disc_start: 150000/disc_start: 0/' \
        configs/imagenet/optvq_256_f16_h4.yaml >"$tmp/f16.yaml"
    run_pair "ImageNet f16 h4 + LPIPS + PatchGAN, 256x256" 2 --config "$tmp/f16.yaml" --data "$tmp/x.npy" \
        --lpips "$tmp/lpips.pth" --epochs 1 --limit $((2 * (STEPS < 3 ? STEPS : 3))) --val-limit 0 --seed 1
fi
echo
echo "PyTorch DDP row: $(torch_malloc_line)"
} | tee bench/results/mpi.md
