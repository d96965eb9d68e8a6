#!/bin/bash
# Benchmark (not a test): encode + decode of one 256x256 image with the f16 h4
# ImageNet architecture, three ways in one run: optvq with the direct
# convolutions (OPTVQ_CONV=direct), optvq with Winograd F(4x4, 3x3) for the
# 3x3 stride-1 convolutions (the default), and PyTorch. Same random weights
# and input; each process times REPS runs after a warm-up and reports the
# median; the three are repeated ROUNDS times, interleaved, and the table
# gives each round, then the min and median over rounds (stdout and
# bench/results/model_conv.md).
#   bash bench/run_model_conv.sh [ROUNDS] [REPS]   (repository root, after make and make bench)
#   BUILD=build-x bash bench/run_model_conv.sh     (binaries from another build folder)
set -euo pipefail
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
echo "        $ROUNDS rounds of (direct, winograd, torch)"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 bench/model_torch.py save "$tmp/m"
: >"$tmp/rows"
for r in $(seq 1 "$ROUNDS"); do
    read -r _ td pd ad < <(OPTVQ_CONV=direct "$BENCH" "$tmp/m" "$REPS")
    read -r _ tw pw aw < <(OPTVQ_CONV=winograd "$BENCH" "$tmp/m" "$REPS")
    read -r _ tt pt at < <(/usr/bin/python3 bench/model_torch.py run "$tmp/m" "$REPS")
    echo "$r $td $tw $tt $pd $pw $pt $ad $aw $at" >>"$tmp/rows"
done
awk -v reps="$REPS" '
function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function mn(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] < m) m = a[i]; return m }
BEGIN { print "| round | optvq direct s | optvq winograd s | PyTorch s | torch/direct | torch/winograd | direct/winograd | peak RSS MiB d / w / t |"
        print "|---|---|---|---|---|---|---|---|" }
{ n++; d[n] = $2; w[n] = $3; t[n] = $4
  printf "| %d | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | %s / %s / %s |\n", $1, $2, $3, $4, $4 / $2, $4 / $3, $2 / $3, $5, $6, $7
  abs = sprintf("mean |output|: direct %s, winograd %s, torch %s", $8, $9, $10) }
END { md = med(d, n); mw = med(w, n); mt = med(t, n)
      printf "| min | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | |\n", mn(d, n), mn(w, n), mn(t, n), mn(t, n) / mn(d, n), mn(t, n) / mn(w, n), mn(d, n) / mn(w, n)
      printf "| median | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | |\n", md, mw, mt, mt / md, mt / mw, md / mw
      print ""; print abs " (last round; same weights and input)" }' "$tmp/rows"
