#!/usr/bin/python3
"""PyTorch side of bench/curves_side_by_side.sh: the reference's Fashion-MNIST
OptVQ recipe (configs/fashion-mnist/optvq.yaml: 1024 codes, 4 heads, batch
1024, AdamW groups, OneCycleLR over the whole schedule, clipping at 1.0,
loss l1 + l2 + q, codebook nn.Embedding's N(0,1) as the reference's train.py
leaves it) trained for EPOCHS epochs, evaluated after each epoch as the
reference's evaluate() does.

    curves_torch.py OUT_DIR SEED [--epochs 3] [--limit N] [--val-limit N]
                    [--batch 1024] [--threads 2]
    curves_torch.py OUT_DIR SEED --save-init FILE.pth
        writes the model's initial state dict (PyTorch's default draws for
        SEED) and exits: `optvq train --init-from FILE.pth --codebook
        FILE.pth` then trains optvq from PyTorch's initial weights, which
        separates the initialisation from the rest of the run

Data as the reference's DataLoader sees it: ToTensor, Normalize(0.5, 0.5),
then Resize(32) on the tensor; the training loader shuffles every epoch and
drops the last partial batch (drop_last=True: 58 steps of 1024 out of 60000),
the held-out loader keeps every image in batches of test_batch_size (1024),
and the quantizer runs Sinkhorn over each of those batches.

Per epoch it records the mean training loss (loss, l1, l2, q) and, on the
held-out images, codebook usage, perplexity (exp of the entropy of the code
histogram over all tokens), PSNR and SSIM as pyiqa computes them (tools/
gen_metrics_ref.py's transcription) on recover(x) = (x + 1) / 2 with the
reconstruction clamped to [0, 1].

Resumable: after each epoch OUT_DIR/state.pth (model, optimizer, scheduler,
results so far) and OUT_DIR/epochs.jsonl (one JSON object per finished epoch)
are replaced atomically; a restarted run continues after its last finished
epoch, and a run whose epochs are all done exits at once. The epoch's order
depends on (SEED, epoch) only, so a resumed run draws the same batches.
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from gen_metrics_ref import pyiqa_psnr, pyiqa_ssim  # noqa: E402
from gen_model_ref import build  # noqa: E402
from gen_train_ref import optimizer, recipe_losses  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
LR_PER_SAMPLE = 4.5e-6  # train.learning_rate of the config
QUANTIZE = {"n_e": 1024, "e_dim": 8, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
            "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}


def load(split, limit):
    """ToTensor, Normalize((0.5,), (0.5,)), Resize(32) as plain_preprocessor, on the whole set at once."""
    with gzip.open(os.path.join(DATA, f"{split}-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    if limit:
        raw = raw[:limit]
    x = torch.from_numpy(raw.astype(np.float32)) / 255.0
    x = (x - 0.5) / 0.5
    try:
        from torchvision import transforms
        return transforms.Resize(32)(x)
    except ImportError:  # upsampling: antialiasing does not apply, plain bilinear is the same
        return torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)


def evaluate(model, x_val, batch):
    """The reference's evaluate(): batches of test_batch_size, Sinkhorn over each."""
    n_e = QUANTIZE["n_e"]
    hist = torch.zeros(n_e, dtype=torch.float64)
    psnr, ssim = [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x_val), batch):
            x = x_val[i:i + batch]
            z = model.quant_conv(model.encoder(x))
            xq, _, idx, _ = model.quantize(z)
            rec = model.decoder(model.post_quant_conv(xq))
            hist += torch.bincount(idx.reshape(-1), minlength=n_e).double()
            xr = (x + 1) / 2
            rr = ((rec + 1) / 2).clamp(0.0, 1.0)
            psnr.append(pyiqa_psnr(xr, rr))
            ssim.append(pyiqa_ssim(xr, rr)[0])
    model.train()
    p = hist / hist.sum()
    nz = p[p > 0]
    return {"val_usage": float((hist > 0).sum()) / n_e, "val_perplexity": math.exp(float(-(nz * nz.log()).sum())),
            "val_psnr": float(torch.cat(psnr).double().mean()), "val_ssim": float(torch.cat(ssim).double().mean())}


def save_atomic(obj, path, as_json_lines=False):
    tmp = path + ".tmp"
    if as_json_lines:
        with open(tmp, "w") as f:
            for r in obj:
                f.write(json.dumps(r) + "\n")
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("seed", type=int)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="first N training images (0: all)")
    ap.add_argument("--val-limit", type=int, default=0, help="first N held-out images (0: all)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-init", metavar="FILE", help="write the initial state dict to FILE and exit")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    state_path = os.path.join(a.out, "state.pth")

    torch.manual_seed(a.seed)
    model = build({"arch": "plain", "channels": 1, "batch": a.batch, "res": 32, "sinkhorn": True,
                   "quantize": QUANTIZE})
    if a.save_init:
        torch.save(model.state_dict(), a.save_init)
        print(f"wrote {a.save_init}: PyTorch's initial weights for seed {a.seed}")
        return
    x_train, x_val = load("train", a.limit), load("t10k", a.val_limit)
    steps = len(x_train) // a.batch  # drop_last=True
    if steps == 0:
        sys.exit(f"curves_torch: {len(x_train)} training images are fewer than one batch of {a.batch}")
    opt, sched = optimizer(model, LR_PER_SAMPLE * a.batch, total_steps=a.epochs * steps)
    results, start = [], 0
    if os.path.exists(state_path):
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        results, start = st["results"], st["epoch"]
        print(f"resumed {a.out} after epoch {start}", flush=True)
    # a kill between the two atomic writes leaves epochs.jsonl one epoch behind the state
    save_atomic(results, os.path.join(a.out, "epochs.jsonl"), as_json_lines=True)
    print(f"inputs: {len(x_train)} training images, {steps} steps of {a.batch} per epoch, {len(x_val)} held-out "
          f"images, seed {a.seed}, {a.epochs} epochs, {a.threads} threads", flush=True)
    model.train()
    for epoch in range(start, a.epochs):
        t0 = time.time()
        perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(a.seed * 1000 + epoch))
        sums = np.zeros(4)
        for s in range(steps):
            xb = x_train[perm[s * a.batch:(s + 1) * a.batch]]
            loss, l1, l2, q = recipe_losses(model, xb)[:4]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            sched.step()
            sums += [loss.item(), l1.item(), l2.item(), q.item()]
            if (s + 1) % 10 == 0 or s + 1 == steps:
                print(f"seed {a.seed} epoch {epoch + 1} step {s + 1}/{steps} loss {loss.item():.4f} "
                      f"{(time.time() - t0) / (s + 1):.1f} s/step", flush=True)
        train_seconds = time.time() - t0
        r = {"epoch": epoch + 1, "steps": steps, "loss": sums[0] / steps, "l1": sums[1] / steps,
             "l2": sums[2] / steps, "q": sums[3] / steps}
        r.update(evaluate(model, x_val, a.batch))
        r["seconds"] = time.time() - t0
        r["train_seconds"] = train_seconds
        results.append(r)
        save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "results": results, "epoch": epoch + 1}, state_path)
        save_atomic(results, os.path.join(a.out, "epochs.jsonl"), as_json_lines=True)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
