#!/usr/bin/python3
"""Does the vanilla-VQ baseline (configs/fashion-mnist/vqbase.yaml) diverge
under the reference recipe in PyTorch too?

Runs the first STEPS optimizer steps of the full-length schedule (100 epochs
x 59 steps at batch 1024, OneCycleLR peak at step 59) on all 60k Fashion-MNIST
training images: the reference's VectorQuantizer (nearest code, CE code loss,
use_proj, 1 head), AdamW groups, clipping at 1, a k-means start of the codebook
(20 Lloyd rounds on encoder features of 1025 images, as optvq train does).
Prints per step: lr, loss terms, the pre-clipping gradient norm, codes used,
and the mean norms of the encoder features and of the projected codes.
Compare with the grad_norm column of an optvq run's metrics.jsonl:

    vqbase_gradnorm_torch.py [STEPS] [THREADS]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_model_ref import build  # noqa: E402
from gen_train_ref import optimizer, recipe_losses  # noqa: E402
from train_torch import load  # noqa: E402


def kmeans_init(model, x_all, n_e, rounds=20):
    with torch.no_grad():
        imgs = x_all[: 64 * n_e // 64 + 1]
        z = model.quant_conv(model.encoder(imgs))  # (B, C, 8, 8)
        v = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        cent = v[torch.randperm(len(v))[:n_e]].clone()
        for _ in range(rounds):
            idx = torch.cdist(v, cent).argmin(1)
            cnt = torch.bincount(idx, minlength=n_e)
            s = torch.zeros_like(cent).index_add_(0, idx, v)
            empty = cnt == 0
            cent = torch.where(empty[:, None], v[torch.randint(len(v), (n_e,))], s / cnt.clamp(min=1)[:, None])
        model.quantize.embedding.weight.copy_(cent)


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    torch.manual_seed(42)
    batch, epochs = 1024, 100
    q = {"n_e": 1024, "e_dim": 8, "beta": 0.25, "use_proj": True, "num_head": 1}
    model = build({"arch": "plain", "channels": 1, "batch": batch, "res": 32, "sinkhorn": False, "quantize": q})
    x_all = load(60000)
    per_epoch = (len(x_all) + batch - 1) // batch
    print(f"inputs: 60000 images, batch {batch}, {per_epoch} steps/epoch, total_steps {per_epoch * epochs}, "
          f"steps run {steps}, threads {torch.get_num_threads()}", flush=True)
    kmeans_init(model, x_all, q["n_e"])
    opt, sched = optimizer(model, 4.5e-6 * batch, total_steps=per_epoch * epochs)
    perm = torch.randperm(len(x_all))
    print("step lr loss l1 l2 q grad_norm codes_used x_norm code_norm", flush=True)
    for s in range(steps):
        e = s % per_epoch
        if e == 0 and s > 0:
            perm = torch.randperm(len(x_all))
        xb = x_all[perm[e * batch:(e + 1) * batch]]
        loss, l1, l2, qloss, z, idx = recipe_losses(model, xb)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        with torch.no_grad():
            codes = model.quantize.proj(model.quantize.embedding.weight)
            xn = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).norm(dim=1).mean()
        print(f"{s + 1} {sched.get_last_lr()[0]:.4g} {loss.item():.5g} {l1.item():.5g} {l2.item():.5g} "
              f"{qloss.item():.5g} {gn.item():.5g} {torch.unique(idx).numel()} {xn.item():.4g} "
              f"{codes.norm(dim=1).mean().item():.4g}", flush=True)
        opt.step()
        opt.zero_grad()
        sched.step()


if __name__ == "__main__":
    main()
