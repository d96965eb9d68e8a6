#!/usr/bin/python3
"""PyTorch side of bench/run_train.sh: the reference recipe (the same model,
AdamW groups, OneCycleLR, clipping, l1 + l2 + q) on the first LIMIT
Fashion-MNIST training images, batch BATCH, 2 threads. Prints
"torch SECONDS_PER_STEP STEPS PEAK_RSS_MIB" (the first step is a warm-up).

    train_torch.py CONFIG(optvq|vqbase) LIMIT BATCH
"""
import gzip
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from gen_model_ref import build  # noqa: E402
from gen_train_ref import optimizer, recipe_losses  # noqa: E402


def load(limit):
    with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)[:limit]
    x = (torch.from_numpy(raw.astype(np.float32)) / 255 - 0.5) / 0.5
    return F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)


def main():
    torch.set_num_threads(2)
    kind, limit, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if kind == "optvq":
        q = {"n_e": 1024, "e_dim": 8, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
             "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}
    else:
        q = {"n_e": 1024, "e_dim": 8, "beta": 0.25, "use_proj": True, "num_head": 1}
    model = build({"arch": "plain", "channels": 1, "batch": batch, "res": 32, "sinkhorn": kind == "optvq",
                   "quantize": q})
    x_all = load(limit)
    steps = (len(x_all) + batch - 1) // batch
    lr = 4.5e-6 * batch
    opt, sched = optimizer(model, lr, total_steps=steps + 1)
    perm = torch.randperm(len(x_all))
    times = []
    for s in range(steps):
        xb = x_all[perm[s * batch:(s + 1) * batch]]
        t0 = time.perf_counter()
        loss = recipe_losses(model, xb)[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        sched.step()
        times.append(time.perf_counter() - t0)
    per = sum(times[1:]) / max(1, len(times) - 1)
    print(f"torch {per:.4f} {steps} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
