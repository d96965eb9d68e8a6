#!/usr/bin/env python3
"""Projected data-parallel step time of a workload measured by bench/run_mpi.sh
on 8 and 64 processes over a 25 Gb/s and a 100 Gb/s network (not a
measurement: arithmetic on measured figures, printed with its inputs).

    python3 bench/project_mpi.py [bench/results/mpi.md] [WORKLOAD-PREFIX]

Model (no overlap of the reduction with the backward pass, which is what
optvq does today): a step is the compute time of one process plus a ring
allreduce of the bytes each process reduces per step,
    t_comm(N) = 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * buckets * latency
with buckets = ceil(bytes / 16 MB) (optvq reduces gradients in buckets of 4M
floats) and a per-message latency of 20 us. The compute time is the measured
2-process step time less its measured reduction time (per-process batch held
fixed: weak scaling). Efficiency = compute / (compute + t_comm)."""
import math
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "bench/results/mpi.md"
prefix = sys.argv[2] if len(sys.argv) > 2 else "ImageNet f16 h4"
rows = [l.strip().strip("|").split("|") for l in open(path) if l.startswith("|")]
name = None
for cells in rows:
    cells = [c.strip() for c in cells]
    if cells[0]:
        name = cells[0]
    if name and name.startswith(prefix) and cells[1].startswith("2 ranks"):
        step = float(cells[2])
        comm = float(cells[3].split()[0])
        mb = float(cells[4].split()[0])
        break
else:
    sys.exit(f"project_mpi: no 2-rank row for '{prefix}' in {path} (run bench/run_mpi.sh --f16 first)")

compute = step - comm
nbytes = mb * 1e6
latency = 20e-6
buckets = math.ceil(nbytes / (4 * (1 << 22)))
print(f"inputs ({path}): {name}: 2-process step {step:.3g} s, of which {comm:.3g} s reductions "
      f"-> compute {compute:.3g} s per process; {mb:.1f} MB reduced per step and process ({buckets} buckets); "
      f"latency {latency * 1e6:.0f} us per message (assumed)")
print()
print("| processes | network | allreduce per step | projected step | efficiency |")
print("|---|---|---|---|---|")
for n in (8, 64):
    for gbit in (25, 100):
        bw = gbit * 1e9 / 8
        t = 2 * (n - 1) / n * nbytes / bw + 2 * (n - 1) * buckets * latency
        print(f"| {n} | {gbit} Gb/s | {t:.3f} s | {compute + t:.3f} s | {100 * compute / (compute + t):.1f}% |")
