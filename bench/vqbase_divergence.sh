#!/bin/bash
# Not a test: does the vanilla-VQ baseline (configs/fashion-mnist/vqbase.yaml)
# diverge under the reference recipe in PyTorch too, as it does in optvq?
# Runs bench/vqbase_gradnorm_torch.py (the first STEPS steps of the 100-epoch
# schedule, 1 thread: about 7 s a step) and prints its pre-clipping gradient
# norm, code loss and codes used next to those logged by an optvq run of the
# same config (RUN/metrics.jsonl), every 10 steps.
#   bash bench/vqbase_divergence.sh RUN_DIR [STEPS] [TORCH_LOG]
# TORCH_LOG reuses the output of an earlier vqbase_gradnorm_torch.py run.
set -euo pipefail
RUN=${1:?usage: bench/vqbase_divergence.sh RUN_DIR [STEPS] [TORCH_LOG]}
STEPS=${2:-150}
[ -f "$RUN/metrics.jsonl" ] || { echo "vqbase_divergence: $RUN/metrics.jsonl: no such file" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "${3:-}" ]; then
    cp "$3" "$tmp/torch.log"
else
    /usr/bin/python3 bench/vqbase_gradnorm_torch.py "$STEPS" 1 > "$tmp/torch.log"
fi
mkdir -p bench/results
python3 - "$RUN/metrics.jsonl" "$tmp/torch.log" "$STEPS" <<'PY' | tee bench/results/vqbase_divergence.md
import json, sys
ours = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if "lr" in d:
        ours[d["step"]] = d
torch = {}
for line in open(sys.argv[2]):
    f = line.split()
    if line.startswith("inputs:"):
        print("torch " + line.strip())
    elif f and f[0].isdigit():
        torch[int(f[0])] = {"lr": float(f[1]), "q": float(f[5]), "grad_norm": float(f[6]), "codes_used": int(f[7]),
                            "x_norm": float(f[8])}
steps = int(sys.argv[3])
print(f"optvq: {sys.argv[1]}\n")
print("| step | lr | optvq grad norm | torch grad norm | optvq q | torch q | optvq codes | torch codes | torch feature norm |")
print("|---|---|---|---|---|---|---|---|---|")
for s in sorted(set(ours) & set(torch)):
    if s <= steps and (s == 1 or s % 10 == 0 or s == max(torch)):
        a, b = ours[s], torch[s]
        print(f"| {s} | {a['lr']:.3g} | {a['grad_norm']:.3g} | {b['grad_norm']:.3g} | {a['q']:.3f} | {b['q']:.3f} "
              f"| {a['codes_used']} | {b['codes_used']} | {b['x_norm']:.3g} |")
last = max(ours)
print(f"\noptvq's run went on to step {last}: grad norm {ours[last]['grad_norm']:.3g}, "
      f"{ours[last]['codes_used']} codes used")
PY
