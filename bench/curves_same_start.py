#!/usr/bin/python3
"""Diagnostic, not a test: the PyTorch side of bench/curves_side_by_side.sh
(bench/curves_torch.py's recipe) started from optvq's initial weights and fed
optvq's batch order (optvq's xoshiro256** shuffle of each epoch, reimplemented
here), so that the two trainings differ only by float rounding. Prints each
step's losses beside optvq's metrics.jsonl of the same seed, then the
held-out evaluation after STEPS steps.

    # optvq's initial weights (the run's config and seed, no training) and its run:
    optvq train --config CFG --out init --epochs 0 --seed 42 --val-limit 0
    optvq train --config CFG --out run --epochs 3 --seed 42 --val-limit 10000
    /usr/bin/python3 bench/curves_same_start.py init/model.safetensors run/metrics.jsonl 42 58 [EPOCHS]

EPOCHS (3) sets the OneCycle schedule's length, as the optvq run's.

    /usr/bin/python3 bench/curves_same_start.py --summarize LOG...

reads saved outputs of this script: per log, the first step where the two
sides' losses differ by more than 0.1%, the largest gradient norm (before
clipping) on either side, and PyTorch's held-out evaluation at the end.

    /usr/bin/python3 bench/curves_same_start.py --pairs RESULTS LOG...

pairs runs that started from the same weights, after epoch 1: each LOG
(named seedS.log, PyTorch from optvq's draw of seed S) beside optvq's `null`
run of that seed in RESULTS (bench/curves_side_by_side.sh's directory), and
each PyTorch run in RESULTS (`torch-sS`) beside optvq trained from its draw
(`torchinit-sS`); then the mean difference and its standard error."""
import json, re, struct, sys, os, time

if len(sys.argv) > 1 and sys.argv[1] == "--summarize":
    for path in sys.argv[2:]:
        first, max_gn, final = None, 0.0, "no evaluation (the run did not finish)"
        for line in open(path):
            m = re.match(r"step (\d+): torch loss ([\d.]+) .* gn ([\d.]+) \| optvq loss ([\d.]+) .* gn ([\d.]+)", line)
            if m:
                step, a, ga, b, gb = int(m[1]), float(m[2]), float(m[3]), float(m[4]), float(m[5])
                max_gn = max(max_gn, ga, gb)
                if first is None and abs(a - b) > 1e-3 * abs(a):
                    first = step
            elif line.startswith("epoch-end eval"):
                final = line.split(":", 1)[1].strip()
        print(f"{path}: losses first differ by more than 0.1% at step {first}; largest gradient norm {max_gn:.1f}; "
              f"PyTorch at the end: {final}")
    sys.exit(0)

if len(sys.argv) > 2 and sys.argv[1] == "--pairs":
    import ast, statistics
    results = sys.argv[2]
    def first_epoch(side, seed):
        path = os.path.join(results, f"{side}-s{seed}", "epochs.jsonl")
        return json.loads(open(path).readline()) if os.path.exists(path) else None
    rows = []
    for path in sys.argv[3:]:
        seed = int(re.search(r"seed(\d+)\.log$", path)[1])
        end = [l for l in open(path) if l.startswith("epoch-end eval")]
        mine = first_epoch("null", seed)
        if end and mine:
            theirs = ast.literal_eval(end[-1].split(":", 1)[1].strip())  # the dict this script printed
            rows.append(("optvq's", seed, mine, theirs))
    for name in sorted(os.listdir(results)):
        m = re.fullmatch(r"torch-s(\d+)", name)
        if m:
            mine, theirs = first_epoch("torchinit", m[1]), first_epoch("torch", m[1])
            if mine and theirs:
                rows.append(("PyTorch's", int(m[1]), mine, theirs))
    print("| start drawn by | seed | optvq after epoch 1: PSNR / perplexity | PyTorch after epoch 1: PSNR / perplexity | optvq - PyTorch |")
    print("|---|---|---|---|---|")
    for who, seed, o, t in rows:
        print(f"| {who} | {seed} | {o['val_psnr']:.2f} dB / {o['val_perplexity']:.0f} | "
              f"{t['val_psnr']:.2f} dB / {t['val_perplexity']:.0f} | {o['val_psnr'] - t['val_psnr']:+.2f} dB |")
    d = [o["val_psnr"] - t["val_psnr"] for _, _, o, t in rows]
    if len(d) > 1:
        sd = statistics.stdev(d)
        print(f"\nmean difference {statistics.mean(d):+.2f} dB, standard deviation {sd:.2f}, standard error "
              f"{sd / len(d) ** 0.5:.2f} ({len(d)} pairs); means: optvq {statistics.mean(o['val_psnr'] for _, _, o, _ in rows):.2f} dB, "
              f"PyTorch {statistics.mean(t['val_psnr'] for _, _, _, t in rows):.2f} dB; perplexity optvq "
              f"{statistics.mean(o['val_perplexity'] for _, _, o, _ in rows):.0f}, PyTorch "
              f"{statistics.mean(t['val_perplexity'] for _, _, _, t in rows):.0f}")
    sys.exit(0)
import numpy as np, torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE); sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from curves_torch import load, QUANTIZE, LR_PER_SAMPLE, evaluate
from gen_model_ref import build
from gen_train_ref import optimizer, recipe_losses

M = (1 << 64) - 1
def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return x, z ^ (z >> 31)
class Rng:
    def __init__(self, seed):
        self.s = []
        x = seed & M
        for _ in range(4):
            x, v = splitmix(x); self.s.append(v)
    def u64(self):
        s = self.s
        rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & M
        res = (rotl((s[1] * 5) & M, 7) * 9) & M
        t = (s[1] << 17) & M
        s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45)
        return res
    def below(self, n):
        limit = M - M % n
        while True:
            r = self.u64()
            if r < limit: return r % n

def perm_for(seed, epoch, n):
    rng = Rng((seed * 0x9E3779B97F4A7C15 + epoch + 1) & M)
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1); p[i], p[j] = p[j], p[i]
    return p

def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); base = 8 + n
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(b[base + a:base + e], dtype=np.float32).reshape(v["shape"]).copy())
    return out

init, metrics, seed, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 3
torch.set_num_threads(2)
model = build({"arch": "plain", "channels": 1, "batch": 1024, "res": 32, "sinkhorn": True, "quantize": QUANTIZE})
sd = read_st(init)
own = model.state_dict()
missing = [k for k in own if k not in sd]
print("missing in optvq init:", missing, "extra:", [k for k in sd if k not in own])
model.load_state_dict({k: sd[k] for k in own}, strict=True)
x = load("train", 0)
spe = len(x) // 1024
opt, sched = optimizer(model, LR_PER_SAMPLE * 1024, total_steps=epochs * spe)
ours = [json.loads(l) for l in open(metrics) if '"lr"' in l]
model.train()
step = 0
for epoch in range(epochs):
    p = torch.tensor(perm_for(seed, epoch, len(x)))
    for s in range(spe):
        if step >= steps:
            print("epoch-end eval (10000 test images):", evaluate(model, load("t10k", 0), 1024), flush=True)
            sys.exit(0)
        xb = x[p[s * 1024:(s + 1) * 1024]]
        loss, l1, l2, q = recipe_losses(model, xb)[:4]
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); opt.zero_grad(); sched.step()
        o = ours[step]
        print(f"step {step+1}: torch loss {loss.item():.6f} l1 {l1.item():.6f} q {q.item():.6f} gn {gn.item():.5f} | optvq loss {o['loss']:.6f} l1 {o['l1']:.6f} q {o['q']:.6f} gn {o['grad_norm']:.5f}", flush=True)
        step += 1
