#!/bin/bash
# Benchmark (not a test): one quantizer step as a whole fresh process on each
# side, the way a user runs it: `optvq quantize` (read the .npy inputs,
# Sinkhorn forward + backward of loss + sum(x_q * G), write indices, x_q, loss
# and gradients) against a fresh /usr/bin/python3 process doing the same with
# the reference's VectorQuantizerSinkhorn (bench/quant_process_torch.py:
# import torch, read, forward + backward, write). Same input files; process
# start-up, page faults of the cost matrix and file I/O are all counted.
# ROUNDS interleaved rounds; the table gives each round and the median, and
# checks that both sides chose the same codes.
#   bash bench/run_quant_process.sh [CONFIG] [ROUNDS]   (CONFIG imagenet | mnist; after make)
#   BUILD=build-x bash bench/run_quant_process.sh       (binary from another build folder)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/torch_malloc.sh"
CONFIG=${1:-imagenet}
ROUNDS=${2:-3}
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
BIN=$BUILD/optvq
PY=/usr/bin/python3
[ -x "$BIN" ] || { echo "run_quant_process.sh: $BIN is missing: make BUILD=$BUILD" >&2; exit 1; }
case "$CONFIG" in imagenet | mnist) ;; *) echo "run_quant_process.sh: CONFIG is imagenet or mnist" >&2; exit 2 ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
mkdir -p bench/results
exec > >(tee "bench/results/quant_process_$CONFIG.md")
"$PY" bench/quant_process_torch.py gen "$tmp/in" "$CONFIG"
shape=$("$PY" -c "import numpy as np; print('x', np.load('$tmp/in/x.npy').shape, 'codebook', np.load('$tmp/in/E.npy').shape)")
echo "# One quantizer step as a whole process: optvq quantize vs a fresh PyTorch process"
echo
echo "- config $CONFIG: $shape, 4 heads, use_proj, Sinkhorn (epsilon 10, 5 iterations, normalize all, argmax), l2 loss, beta 0.25"
echo "- each side: a fresh process that reads the same .npy files, runs forward + backward of loss + sum(x_q * G)"
echo "  and writes indices, x_q, loss and the gradients; wall, user and system seconds and peak RSS from /usr/bin/time"
echo "- $THREADS threads a side; $ROUNDS interleaved rounds; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs),"
echo "  $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg); optvq $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "- $(torch_malloc_line)"
echo
echo "| round | optvq wall s | user | sys | peak MiB | PyTorch wall s | user | sys | peak MiB | torch/optvq |"
echo "|---|---|---|---|---|---|---|---|---|---|"
: >"$tmp/rows"
for r in $(seq 1 "$ROUNDS"); do
    rm -rf "$tmp/o" "$tmp/t"
    /usr/bin/time -o "$tmp/time_o" -f "%e %U %S %M" "$BIN" quantize --input "$tmp/in/x.npy" --embedding "$tmp/in/E.npy" \
        --proj-weight "$tmp/in/W.npy" --proj-bias "$tmp/in/b.npy" --grad-out "$tmp/in/G.npy" --num-head 4 \
        --threads "$THREADS" --out "$tmp/o" >/dev/null
    /usr/bin/time -o "$tmp/time_t" -f "%e %U %S %M" "${TORCH_PY_CMD[@]}" bench/quant_process_torch.py run "$tmp/in" "$CONFIG" "$tmp/t" "$THREADS"
    read -r ow ou os om <"$tmp/time_o"
    read -r tw tu ts tm <"$tmp/time_t"
    echo "$r $ow $tw" >>"$tmp/rows"
    awk -v r="$r" -v ow="$ow" -v ou="$ou" -v os="$os" -v om="$om" -v tw="$tw" -v tu="$tu" -v ts="$ts" -v tm="$tm" \
        'BEGIN { printf "| %d | %.2f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f | %.0f | %.2fx |\n", r, ow, ou, os, om / 1024, tw, tu, ts, tm / 1024, tw / ow }'
done
sort -n -k2 "$tmp/rows" | awk '{ o[NR] = $2 } END { printf "%s ", (NR % 2 ? o[(NR + 1) / 2] : (o[NR / 2] + o[NR / 2 + 1]) / 2) }' >"$tmp/med"
sort -n -k3 "$tmp/rows" | awk '{ t[NR] = $3 } END { printf "%s\n", (NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2) }' >>"$tmp/med"
read -r mo mt <"$tmp/med"
awk -v mo="$mo" -v mt="$mt" 'BEGIN { printf "| median | %.2f | | | | %.2f | | | | %.2fx |\n", mo, mt, mt / mo }'
echo
"$PY" - "$tmp/o" "$tmp/t" <<'PY'
import sys
import numpy as np
o, t = sys.argv[1], sys.argv[2]
a, b = np.load(o + "/indices.npy"), np.load(t + "/indices.npy")
print(f"same codes (last round): {int((a == b).sum())} of {a.size}")
for f in ("x_q", "loss", "grad_x", "grad_embedding", "grad_proj_weight", "grad_proj_bias"):
    x, y = np.load(f"{o}/{f}.npy").astype(np.float64), np.load(f"{t}/{f}.npy").astype(np.float64)
    print(f"{f}: max |optvq - torch| {np.abs(x - y).max():.3g} (max |torch| {np.abs(y).max():.3g})")
PY
echo
echo "target (issue: >= 10x): $(awk -v mo="$mo" -v mt="$mt" 'BEGIN { print (mt / mo >= 10 ? "MET" : "NOT MET") }'); load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
