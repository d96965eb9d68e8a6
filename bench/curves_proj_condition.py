#!/usr/bin/python3
"""The initial codebook geometry of each seed, beside its epoch-1 result
(bench/curves_side_by_side.sh).

With 4 heads of dimension 2, the Fashion-MNIST OptVQ config's effective
codebook starts as proj(E) = E W^T + b: 1024 N(0,1) points through a random
2x2 matrix W (N(0, 1/2) entries, as the reference's quantizer draws them).
The condition number of a random 2x2 matrix has a heavy tail: now and then a
draw nearly flattens the codes onto a line. This prints, per seed and side,
W's singular values and condition number, and the held-out PSNR and
perplexity after epoch 1 where the curves' results directory has them: of
the PyTorch run and of optvq trained from the same draw (`--sides torchinit`)
for PyTorch's draws.

    bench/curves_proj_condition.py [--results DIR] [--optvq BIN] [--draws N] SEED...

--draws N also draws optvq's W for the N seeds 1000..1000+N-1 and prints the
share above each condition beside the share for exact N(0, 1/2) matrices: a
check that optvq's draws follow the reference's distribution.

optvq's draws come from `optvq train --epochs 0` (the initial weights of a
run), PyTorch's from curves_torch.py --save-init (needs python3-torch).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIG = os.path.join(ROOT, "configs", "fashion-mnist", "optvq.yaml")


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + a:8 + n + b], dtype=np.float32).reshape(v["shape"])
    return out


def optvq_draw(binary, seed, tmp):
    run = os.path.join(tmp, f"optvq-{seed}")
    # --limit: the initial weights do not depend on the data, and reading all of it takes 2 s
    subprocess.run([binary, "train", "--config", CONFIG, "--epochs", "0", "--seed", str(seed), "--out", run,
                    "--threads", "1", "--limit", "1024", "--val-limit", "0"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = read_safetensors(os.path.join(run, "model.safetensors"))
    return t["quantize.proj.weight"]


def torch_draw(seed, tmp):
    import torch
    path = os.path.join(tmp, f"torch-{seed}.pth")
    subprocess.run([sys.executable, os.path.join(HERE, "curves_torch.py"), tmp, str(seed), "--save-init", path],
                   check=True, stdout=subprocess.DEVNULL)
    sd = torch.load(path, map_location="cpu")
    key = next(k for k in sd if k.endswith("proj.weight"))
    return sd[key].numpy()


def epoch1(results, side, seed):
    path = os.path.join(results, f"{side}-s{seed}", "epochs.jsonl")
    if not os.path.exists(path):
        return None
    for line in open(path):
        d = json.loads(line)
        if d.get("epoch") == 1:
            return d
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seeds", nargs="+", type=int)
    ap.add_argument("--results", default=os.path.join(ROOT, "runs", "curves"))
    ap.add_argument("--optvq", default=os.path.join(ROOT, "build", "optvq"))
    ap.add_argument("--draws", type=int, default=0)
    a = ap.parse_args()
    print(f"inputs: {CONFIG}, seeds {' '.join(map(str, a.seeds))}, results {a.results}")
    sample = np.random.default_rng(0).normal(0, 2 ** -0.5, (200000, 2, 2))
    sv = np.linalg.svd(sample, compute_uv=False)
    cond = sv[:, 0] / sv[:, 1]
    print("share of 2x2 N(0, 1/2) matrices with condition above 5 / 10 / 20 / 100 (200,000 draws): "
          + " / ".join(f"{(cond > k).mean():.3f}" for k in (5, 10, 20, 100)))
    if a.draws > 0:
        with tempfile.TemporaryDirectory() as tmp:
            c = []
            for seed in range(1000, 1000 + a.draws):
                s = np.linalg.svd(optvq_draw(a.optvq, seed, tmp).astype(np.float64), compute_uv=False)
                c.append(s[0] / s[1])
            c = np.array(c)
        print(f"share of optvq's draws (seeds 1000..{999 + a.draws}) with condition above 5 / 10 / 20 / 100: "
              + " / ".join(f"{(c > k).mean():.3f}" for k in (5, 10, 20, 100))
              + f"; its median {np.median(c):.2f}, N(0, 1/2)'s {np.median(cond):.2f}")
    print("| draw | seed | singular values of W | condition | run | epoch-1 PSNR | epoch-1 perplexity |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        # (draw, how to draw, the runs that start from it: results side, label)
        sides = (("optvq", lambda s: optvq_draw(a.optvq, s, tmp), (("null", "optvq"),)),
                 ("PyTorch", lambda s: torch_draw(s, tmp), (("torch", "PyTorch"), ("torchinit", "optvq"))))
        for side, draw, runs in sides:
            for seed in a.seeds:
                w = draw(seed)
                s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
                for result_side, label in runs:
                    e = epoch1(a.results, result_side, seed)
                    psnr = f"{e['val_psnr']:.2f} dB" if e else "-"
                    ppl = f"{e['val_perplexity']:.0f}" if e else "-"
                    print(f"| {side} | {seed} | {s[0]:.3f}, {s[1]:.3f} | {s[0] / s[1]:.1f} | {label} | {psnr} | {ppl} |")


if __name__ == "__main__":
    main()
