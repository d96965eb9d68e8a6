#!/bin/bash
# Benchmark (not a test): one training step of the ImageNet recipe
# (AELossWithDisc: L1 + L2 + 3 x LPIPS-VGG16 + q + the adaptive-weight
# generator term, then the PatchGAN's hinge step) on the f16 h4 VQGAN at
# 256x256, optvq vs PyTorch, the same random LPIPS weights and images, 2
# threads; mean of the steps after the first, peak RSS of each process.
#   bash bench/run_train_gan.sh [BATCH] [STEPS]      (after make)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/torch_malloc.sh"
BATCH=${1:-2}
STEPS=${2:-3}
BIN=${OPTVQ_BIN:-build/optvq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2
echo "inputs: f16 h4 VQModel (72.9M parameters, 16384 codes, 4 heads) + LPIPS VGG16 + PatchGAN (ndf 64, 3 layers),"
echo "        batch $BATCH x 3 x 256 x 256, disc_start 0, $STEPS steps (first one a warm-up), 2 threads"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
/usr/bin/python3 bench/train_gan_torch.py save "$tmp"
# the shipped config, without the k-means start (timing only) and with the generator term on from step 0
sed 's/use_initiate: kmeans/use_initiate: null/; s/disc_start: 150000/disc_start: 0/' \
    configs/imagenet/optvq_256_f16_h4.yaml >"$tmp/f16.yaml"
/usr/bin/time -f "%M" -o "$tmp/rss" "$BIN" train --config "$tmp/f16.yaml" --data "$tmp/x.npy" \
    --limit $((BATCH * STEPS)) --batch-size "$BATCH" --epochs 1 --val-limit 0 --threads 2 \
    --lpips "$tmp/lpips.pth" --out "$tmp/run" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
ours=$(grep '"lr"' "$tmp/run/metrics.jsonl" | tail -n +2 | sed 's/.*"seconds": \([0-9.]*\).*/\1/' |
       awk '{s += $1; n++} END {printf "%.3f", s / n}')
orss=$(awk '{printf "%.0f", $1 / 1024}' "$tmp/rss")
read -r _ theirs trss < <(torch_py bench/train_gan_torch.py run "$tmp" "$BATCH" "$STEPS")
mkdir -p bench/results
{
echo "| f16 h4 ae_disc step, batch $BATCH x 256x256 | seconds per step | peak RSS MiB |"
echo "|---|---|---|"
echo "| optvq $("$BIN" --version | cut -d' ' -f2) | $ours | $orss |"
echo "| PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') | $theirs | $trss |"
echo
echo "speedup $(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.2fx", b / a}'), memory $(awk -v a="$orss" -v b="$trss" 'BEGIN {printf "%.2fx less", b / a}')"
torch_malloc_line
openblas_line
} | tee bench/results/train_gan.md
