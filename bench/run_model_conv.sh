#!/bin/bash
# Benchmark (not a test): encode + decode of one 256x256 image with the f16 h4
# ImageNet architecture, five ways in one run: optvq with the direct
# convolutions (OPTVQ_CONV=direct), optvq with Winograd F(4x4, 3x3) for the
# 3x3 stride-1 convolutions (the default, fp32), optvq --precision bf16 (the
# decoder's convolutions in bf16) and bf16-all (the encoder's too), and
# PyTorch. Same random weights and input; each process times REPS runs after
# a warm-up and reports the median; the five are repeated ROUNDS times,
# interleaved, and the table gives each round, then the min and median over
# rounds. Then the quality of the bf16 paths against fp32 (last round): the
# share of tokens equal to fp32's and the reconstruction's PSNR against
# fp32's (both mapped to [0, 1]). Output: stdout and
# bench/results/model_conv.md.
#   bash bench/run_model_conv.sh [ROUNDS] [REPS]   (repository root, after make and make bench)
#   BUILD=build-x bash bench/run_model_conv.sh     (binaries from another build folder)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/torch_malloc.sh"
ROUNDS=${1:-3}
REPS=${2:-3}
BUILD=${BUILD:-build}
BENCH=$BUILD/bench/bench_model
[ -x "$BENCH" ] || { echo "run_model_conv.sh: $BENCH is missing: make BUILD=$BUILD bench" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2
mkdir -p bench/results
exec > >(tee bench/results/model_conv.md)
echo "inputs: f16 h4 VQModel (ch 128, ch_mult 1,1,2,2,4, 2 res blocks, attention at 16, 16384 codes, 4 heads),"
echo "        1 x 3 x 256 x 256, Sinkhorn assignment, 2 threads; per process the median of $REPS after a warm-up;"
echo "        $ROUNDS rounds of (direct, winograd, bf16, bf16-all, torch); AVX512-BF16: $(grep -qw avx512_bf16 /proc/cpuinfo && echo yes || echo no)"
echo "torch:  $(torch_malloc_line)"
echo "blas:   $(openblas_line)"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 bench/model_torch.py save "$tmp/m"
: >"$tmp/rows"
for r in $(seq 1 "$ROUNDS"); do
    read -r _ td pd ad < <(OPTVQ_CONV=direct "$BENCH" "$tmp/m" "$REPS")
    read -r _ tw pw aw < <(OPTVQ_CONV=winograd "$BENCH" "$tmp/m" "$REPS" fp32 "$tmp/fp32")
    read -r _ tb pb _ < <(OPTVQ_CONV=winograd "$BENCH" "$tmp/m" "$REPS" bf16 "$tmp/bf16")
    read -r _ ta pa _ < <(OPTVQ_CONV=winograd "$BENCH" "$tmp/m" "$REPS" bf16-all "$tmp/bf16-all")
    read -r _ tt pt at < <(torch_py bench/model_torch.py run "$tmp/m" "$REPS")
    echo "$r $td $tw $tt $pd $pw $pt $ad $aw $at $tb $ta $pb $pa" >>"$tmp/rows"
done
awk -v reps="$REPS" '
function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function mn(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] < m) m = a[i]; return m }
BEGIN { print "| round | optvq direct s | optvq winograd s | optvq bf16 s | optvq bf16-all s | PyTorch s | torch/winograd | torch/bf16 | torch/bf16-all | winograd/bf16-all | peak RSS MiB d / w / b / ba / t |"
        print "|---|---|---|---|---|---|---|---|---|---|---|" }
{ n++; d[n] = $2; w[n] = $3; t[n] = $4; b[n] = $11; a[n] = $12
  printf "| %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | %.2fx | %s / %s / %s / %s / %s |\n", $1, $2, $3, $11, $12, $4, $4 / $3, $4 / $11, $4 / $12, $3 / $12, $5, $6, $13, $14, $7
  abs = sprintf("mean |output|: direct %s, winograd %s, torch %s", $8, $9, $10) }
END { md = med(d, n); mw = med(w, n); mt = med(t, n); mb = med(b, n); ma = med(a, n)
      printf "| min | %.3f | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | %.2fx | |\n", mn(d, n), mn(w, n), mn(b, n), mn(a, n), mn(t, n), mn(t, n) / mn(w, n), mn(t, n) / mn(b, n), mn(t, n) / mn(a, n), mn(w, n) / mn(a, n)
      printf "| median | %.3f | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | %.2fx | |\n", md, mw, mb, ma, mt, mt / mw, mt / mb, mt / ma, mw / ma
      print ""; print abs " (last round; same weights and input)" }' "$tmp/rows"
echo
echo "bf16 against fp32 (winograd), last round:"
/usr/bin/python3 - "$tmp" <<'PY'
import sys
import numpy as np
d = sys.argv[1]
ref_t = np.load(f"{d}/fp32.tokens.npy")
ref_r = np.clip((np.load(f"{d}/fp32.recon.npy") + 1) / 2, 0, 1)
print("| precision | tokens equal to fp32 | reconstruction PSNR vs fp32 | target |")
print("|---|---|---|---|")
for p in ("bf16", "bf16-all"):
    t = np.load(f"{d}/{p}.tokens.npy")
    r = np.clip((np.load(f"{d}/{p}.recon.npy") + 1) / 2, 0, 1)
    mse = float(np.mean((r - ref_r) ** 2))
    psnr = 10 * np.log10(1 / mse) if mse > 0 else float("inf")
    print(f"| {p} | {(t == ref_t).mean() * 100:.2f}% of {t.size} | {psnr:.2f} dB | >= 99% and >= 40 dB |")
PY
