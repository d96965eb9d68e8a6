#!/usr/bin/python3
"""PyTorch side of bench/run_train_gan.sh: the reference's ae_disc training
step (autoencoder step with L1 + L2 + 3 LPIPS + q + the adaptive-weight
generator term, then the discriminator's hinge step; tools/gen_gan_train_ref.py
holds the transcription) on the f16 h4 ImageNet VQGAN, 2 threads.

    train_gan_torch.py save DIR            random LPIPS weights (DIR/lpips.pth), images DIR/x.npy
    train_gan_torch.py run DIR BATCH STEPS prints "torch SECONDS_PER_STEP PEAK_RSS_MIB"
                                           (the first step is a warm-up)
"""
import os
import resource
import sys
import time

import numpy as np
import torch

os.environ["GAN_FLOAT32"] = "1"  # the transcription module would otherwise switch torch to float64
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import gen_gan_train_ref as G  # noqa: E402
from gen_model_ref import build  # noqa: E402

F16 = {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
       "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0}
FQ = {"n_e": 16384, "e_dim": 256, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
      "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}


def save(d):
    torch.manual_seed(0)
    lp = G.LPIPSVGG()
    with torch.no_grad():
        for name, p in lp.named_parameters():
            if name.startswith("lin"):
                p.abs_()
    sd = {k: v for k, v in lp.state_dict().items() if k.startswith(("features.", "lin"))}
    torch.save(sd, os.path.join(d, "lpips.pth"))
    np.save(os.path.join(d, "x.npy"), (torch.rand(64, 3, 256, 256) * 2 - 1).numpy())


def run(d, batch, steps):
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    model = build({"arch": "taming", "channels": 3, "batch": batch, "res": 256, "sinkhorn": True, "taming": F16,
                   "quantize": FQ})
    lp = G.LPIPSVGG().eval()
    lp.load_state_dict(torch.load(os.path.join(d, "lpips.pth")), strict=False)
    for p in lp.parameters():
        p.requires_grad_(False)
    disc = G.discriminator(ndf=64)
    disc.train()
    lr = 4.5e-6 * batch
    opt_ae, sched_ae = G.adamw([[model.encoder, model.decoder, model.quant_conv, model.post_quant_conv],
                                [model.quantize]], lr)
    opt_d, sched_d = G.adamw([[disc]], lr)
    everything = list(model.parameters()) + list(disc.parameters())
    last = model.decoder.conv_out.weight
    x_all = torch.from_numpy(np.load(os.path.join(d, "x.npy")))
    times = []
    for k in range(steps):
        x = x_all[k * batch:(k + 1) * batch]
        t0 = time.perf_counter()
        rec, qloss = G.forward_model(model, x)
        nll = (rec - x).abs().mean() + (rec - x).pow(2).mean() + 3.0 * lp(x, rec).mean()
        gl = -disc(rec).mean()
        nll_grads = torch.autograd.grad(nll, last, retain_graph=True)[0]
        g_grads = torch.autograd.grad(gl, last, retain_graph=True)[0]
        gw = torch.clamp(torch.norm(nll_grads) / (torch.norm(g_grads) + 1e-4), 0.0, 1e4).detach()
        loss = gl * gw + qloss + nll
        loss.backward()
        torch.nn.utils.clip_grad_norm_(everything, 1.0)
        opt_ae.step()
        opt_ae.zero_grad()
        sched_ae.step()
        rec2, _ = G.forward_model(model, x)
        lr_, lf_ = disc(x.detach()), disc(rec2.detach())
        d_loss = 0.5 * (torch.mean(torch.relu(1.0 - lr_)) + torch.mean(torch.relu(1.0 + lf_)))
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(everything, 1.0)
        opt_d.step()
        opt_d.zero_grad()
        sched_d.step()
        times.append(time.perf_counter() - t0)
    per = sum(times[1:]) / max(1, len(times) - 1)
    print(f"torch {per:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save(sys.argv[2])
    else:
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
