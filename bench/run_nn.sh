#!/bin/bash
# nn engine benchmark: optvq (bench_nn) vs PyTorch CPU (torch_nn.py), same shapes,
# same thread count (2 by default), one run. Prints a markdown table and writes it to
# bench/results/nn.md. Usage: bench/run_nn.sh [path/to/bench_nn] [min_seconds]
# Run it on an otherwise idle machine: with other processes competing for the two
# cores, OpenMP barriers wait out scheduler time slices (~8 ms steps in the numbers).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/torch_malloc.sh"
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build/bench/bench_nn}
min_s=${2:-0.4}
threads=${OPTVQ_BENCH_THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OMP_NUM_THREADS=$threads OMP_PROC_BIND=${OMP_PROC_BIND:-false} "$bin" "$min_s" > "$tmp/c.tsv"
OPTVQ_BENCH_THREADS=$threads OMP_NUM_THREADS=$threads torch_py "$here/torch_nn.py" "$min_s" > "$tmp/t.tsv"
echo "# $(torch_malloc_line)" >> "$tmp/t.tsv"
echo "# $(openblas_line)" >> "$tmp/t.tsv"
load=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/python3 - "$tmp/c.tsv" "$tmp/t.tsv" "$threads" "$load" <<'PY' | tee "$here/results/nn.md"
import sys
def read(p):
    rows, notes = {}, []
    for line in open(p):
        if line.startswith("#"):
            notes.append(line.strip("# \n"))
            continue
        f = line.rstrip("\n").split("\t")
        rows[f[0]] = f[1:]
    return rows, notes
c, cn = read(sys.argv[1])
t, tn = read(sys.argv[2])
sg = float(c["sgemm_openblas_2048"][2])
print("# nn engine: optvq vs PyTorch CPU, %s threads (load average at the end of the run: %s)\n" % (sys.argv[3], sys.argv[4]))
for n in cn + tn:
    print("- " + n)
print("- OpenBLAS sgemm 2048^3 (its own %s threads): **%.1f GFLOP/s**; our OpenMP-split sgemm: %s GFLOP/s\n"
      % (sys.argv[3], sg, c.get("sgemm_nn_split_2048", ["", "", "?"])[2]))
print("| row | optvq fwd ms | torch fwd ms | optvq fwd+bwd ms | torch fwd+bwd ms | speed-up fwd+bwd (torch/optvq) | optvq GFLOP/s | torch GFLOP/s | optvq % of sgemm |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, v in c.items():
    if name.startswith("sgemm"):
        continue
    tv = t.get(name, ["nan", "nan", "-"])
    cf, cb, cg = float(v[0]), float(v[1]), v[2]
    tf, tb, tg = float(tv[0]), float(tv[1]), tv[2]
    pct = "%.0f%%" % (100 * float(cg) / sg) if cg != "-" else "-"
    print("| %s | %.3f | %.3f | %.3f | %.3f | %.2fx | %s | %s | %s |" % (name, cf, tf, cb, tb, tb / cb, cg, tg, pct))
PY
