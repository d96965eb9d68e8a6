#!/usr/bin/python3
"""Two steps of the reference's ImageNet training pipeline (trainer/pipeline.py
pipeline_ae_disc + losses/aeloss_disc.py AELossWithDisc) on a tiny taming
VQGAN with LPIPS (VGG16, lpips v0.1 form) and the PatchGAN discriminator, for
tests/test_gan_train.c.

    /usr/bin/python3 tools/gen_gan_train_ref.py [OUT_DIR]   (default tests/ref/gan_train)
    (GAN_STEPS=N for another number of steps, GAN_FLOAT32=1 to run in float32)

Every weight (the VQGAN, LPIPS's VGG16 + linear heads, the discriminator) is
filled by det_weights() below from a splitmix64 stream keyed by the tensor's
name; the C test fills its own copies the same way, so the 14.7M VGG weights
are never stored. Per step k (global_step = k, DISC_START = 1, so step 0 has
no generator term and steps 1.. have it):
  autoencoder step: rec = model(x); nll = l1 + l2 + P_WEIGHT * LPIPS(x, rec);
    g = -mean(D(rec)); gw = ||dnll/dW|| / (||dg/dW|| + 1e-4) clamped to
    [0, 1e4] (W = decoder.conv_out.weight); loss = g*gw*factor + q + nll;
    backward; clip_grad_norm_(model + discriminator, 1.0); AdamW step;
    zero_grad of the autoencoder only; OneCycleLR step
  discriminator step: rec = model(x) with the new weights; d = hinge(D(x),
    D(rec.detach())); backward (adding to the discriminator's gradients left by
    the generator term, as the reference's separate optimizers do); clip;
    AdamW; zero_grad; OneCycleLR step.
LPIPS is in eval mode (no dropout); see src/train/ae_disc.h.
Writes config.yaml, batch_<k>.npy, log.npy (steps x 9: total, l1, l2, p, q,
g, g_weight, d, grad_norm) and strided samples of every parameter and
BatchNorm buffer after the last step (final.npy + final.txt: name, numel,
stride, count, full sum, full sum of squares).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_model_ref import build, det_uniform, yaml_config  # noqa: E402

torch.set_num_threads(1)
# The reference state is computed in float64 (GAN_FLOAT32=1 for PyTorch's float32):
# Adam's first steps scale each gradient element by 1/|g|, so float32 rounding in
# near-zero gradients (conv biases summed over many positions) moves parameters by
# up to lr; PyTorch float32 lands 1.8e-6 (NMSE) from float64 after 2 steps, optvq
# 8.6e-7. Measured against float64 the test tolerates only such rounding.
if not os.environ.get("GAN_FLOAT32"):
    torch.set_default_dtype(torch.float64)

STEPS = int(os.environ.get("GAN_STEPS", "2"))
TOTAL_STEPS = 10
BATCH = 2
RES = 32
LR_PER_SAMPLE = 1e-3
WEIGHT_DECAY = 0.05
P_WEIGHT = 3.0
DISC_START = 1
NDF = 8
SAMPLE = 64

CASE = {"arch": "taming", "channels": 3, "batch": BATCH, "res": RES, "sinkhorn": True,
        "taming": {"ch": 32, "out_ch": 3, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [16],
                   "in_channels": 3, "resolution": RES, "z_channels": 32, "double_z": False, "dropout": 0.0},
        "quantize": {"n_e": 64, "e_dim": 16, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
                     "normalize_mode": "all", "use_prob": False, "num_head": 2, "loss_q_type": "l2"}}


# ---------------------------------------------------------------- LPIPS (lpips 0.1, net="vgg")

class NetLin(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))


class LPIPSVGG(nn.Module):
    TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3

    def __init__(self):
        super().__init__()
        self.features = torchvision.models.vgg16().features[:30]
        for k, c in enumerate((64, 128, 256, 512, 512)):
            setattr(self, f"lin{k}", NetLin(c))
        self.register_buffer("shift", torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([.458, .448, .450]).view(1, 3, 1, 1))

    def feats(self, x):
        h, out = (x - self.shift) / self.scale, []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.TAPS:
                out.append(h)
        return out

    def forward(self, x0, x1):
        val = 0
        for k, (f0, f1) in enumerate(zip(self.feats(x0), self.feats(x1))):
            n0 = f0 / (torch.sqrt(torch.sum(f0 ** 2, dim=1, keepdim=True)) + 1e-10)
            n1 = f1 / (torch.sqrt(torch.sum(f1 ** 2, dim=1, keepdim=True)) + 1e-10)
            val = val + getattr(self, f"lin{k}").model((n0 - n1) ** 2).mean([2, 3], keepdim=True)
        return val


# ---------------------------------------------------------------- PatchGAN (taming NLayerDiscriminator)

def discriminator(input_nc=3, ndf=NDF, n_layers=3):
    seq = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2 ** n, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True)]
    prev, mult = mult, min(2 ** n_layers, 8)
    seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
    d = nn.Module()
    d.main = nn.Sequential(*seq)
    d.forward = d.main.forward
    return d


# ---------------------------------------------------------------- deterministic weights

def det_weights(module, prefix=""):
    """Every parameter from det_uniform(prefix + name) (U in [-1, 1)), computed in
    float64 and rounded once: a 1-D ".weight" (GroupNorm/BatchNorm) 1 + 0.1 U and
    its ".bias" 0.1 U; the embedding sqrt(3) U; the projection sqrt(3/d) U; LPIPS
    heads (lin*) |U| / sqrt(C); other weights and biases U / sqrt(fan_in)."""
    sd = dict(module.named_parameters())
    with torch.no_grad():
        for name, p in sd.items():
            full = prefix + name
            u = det_uniform(full, p.numel()).astype(np.float64)
            base = name.rsplit(".", 1)[0]
            w = sd.get(base + ".weight")
            if full == "quantize.embedding.weight":
                v = u * math.sqrt(3.0)
            elif full.startswith("quantize.proj"):
                v = u * math.sqrt(3.0 / sd["quantize.proj.weight"].shape[1])
            elif full.startswith("lin"):
                v = np.abs(u) / math.sqrt(p.shape[1])
            elif w is not None and w.dim() == 1:
                v = 1.0 + 0.1 * u if name.endswith(".weight") else 0.1 * u
            else:
                fan_in = w.shape[1] * (w.shape[2] * w.shape[3] if w.dim() == 4 else 1)
                v = u / math.sqrt(fan_in)
            p.copy_(torch.from_numpy(v.astype(np.float32)).view(p.shape))


# ---------------------------------------------------------------- optimizers as setup_optimizers_ae_disc

def decay_ids(modules):
    ids = set()
    for mod in modules:
        for sub in mod.modules():
            if isinstance(sub, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                ids.add(id(sub.weight))
    return ids


def adamw(groups_of_modules, lr):
    groups = []
    for mods in groups_of_modules:
        wd = decay_ids(mods)
        params = [p for m in mods for p in m.parameters()]
        groups.append({"params": [p for p in params if id(p) in wd], "lr": lr, "eps": 1e-7,
                       "weight_decay": WEIGHT_DECAY})
        groups.append({"params": [p for p in params if id(p) not in wd], "lr": lr, "eps": 1e-7,
                       "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr] * len(groups), total_steps=TOTAL_STEPS,
                                                pct_start=0.01, anneal_strategy="cos")
    return opt, sched


def config_text():
    text = yaml_config(CASE).replace(
        "        target: optvq.losses.aeloss.AELoss\n        params:\n          loss_l1_weight: 1.0\n",
        "        target: optvq.losses.aeloss_disc.AELossWithDisc\n        params:\n"
        "          loss_l1_weight: 1.0\n          loss_l2_weight: 1.0\n"
        f"          loss_p_weight: {P_WEIGHT}\n          loss_q_weight: 1.0\n          loss_g_weight: 1.0\n"
        f"          loss_d_weight: 1.0\n          disc_in_channels: 3\n          disc_num_layers: 3\n"
        f"          disc_ndf: {NDF}\n          disc_start: {DISC_START}\n")
    assert "AELossWithDisc" in text
    return text + (f"train:\n  epochs: 1\n  seed: 7\n  learning_rate: {LR_PER_SAMPLE}\n  mul_learning_rate: 1.0\n"
                   f"  weight_decay: {WEIGHT_DECAY}\ndata:\n  batch_size: {BATCH}\n")


def forward_model(model, x):
    z = model.quant_conv(model.encoder(x))
    xq, qloss, _, _ = model.quantize(z)
    return model.decoder(model.post_quant_conv(xq)), qloss


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/gan_train"
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(config_text())
    model, lp, disc = build(CASE), LPIPSVGG().eval(), discriminator()
    det_weights(model)
    det_weights(lp)
    det_weights(disc, "loss.discriminator.")
    for p in lp.parameters():
        p.requires_grad_(False)
    disc.train()
    lr = LR_PER_SAMPLE * BATCH
    opt_ae, sched_ae = adamw([[model.encoder, model.decoder, model.quant_conv, model.post_quant_conv],
                              [model.quantize]], lr)
    opt_d, sched_d = adamw([[disc]], lr)
    everything = list(model.parameters()) + list(disc.parameters())
    last = model.decoder.conv_out.weight
    log = []
    g = torch.Generator().manual_seed(5)
    for k in range(STEPS):
        x = torch.rand(BATCH, 3, RES, RES, generator=g, dtype=torch.float32) * 2 - 1
        np.save(os.path.join(out, f"batch_{k}.npy"), x.numpy())
        x = x.to(torch.get_default_dtype())
        # autoencoder step (mode 0)
        rec, qloss = forward_model(model, x)
        l1 = (rec - x).abs().mean()
        l2 = (rec - x).pow(2).mean()
        p = lp(x, rec).mean()
        nll = l1 + l2 + P_WEIGHT * p
        gl = -disc(rec).mean()
        nll_grads = torch.autograd.grad(nll, last, retain_graph=True)[0]
        g_grads = torch.autograd.grad(gl, last, retain_graph=True)[0]
        gw = torch.clamp(torch.norm(nll_grads) / (torch.norm(g_grads) + 1e-4), 0.0, 1e4).detach() * 1.0
        factor = 0.0 if k < DISC_START else 1.0
        loss = gl * gw * factor + qloss * 1.0 + nll
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(everything, 1.0)
        opt_ae.step()
        opt_ae.zero_grad()
        sched_ae.step()
        # discriminator step (mode 1)
        rec2, _ = forward_model(model, x)
        lr_, lf_ = disc(x.detach()), disc(rec2.detach())
        d = 0.5 * (torch.mean(F.relu(1.0 - lr_)) + torch.mean(F.relu(1.0 + lf_))) * 1.0
        d.backward()
        torch.nn.utils.clip_grad_norm_(everything, 1.0)
        opt_d.step()
        opt_d.zero_grad()
        sched_d.step()
        row = [loss.item(), l1.item(), l2.item(), p.item(), qloss.item(), gl.item(), gw.item(), d.item(),
               gnorm.item()]
        log.append(row)
        print(f"step {k}: loss {row[0]:.6f} l1 {row[1]:.6f} l2 {row[2]:.6f} p {row[3]:.6f} q {row[4]:.6f} "
              f"g {row[5]:.6f} gw {row[6]:.6f} d {row[7]:.6f} grad norm {row[8]:.4f}")
    np.save(os.path.join(out, "log.npy"), np.array(log, dtype=np.float64))
    tensors = list(model.state_dict().items()) + \
        [("loss.discriminator." + n, t) for n, t in disc.state_dict().items()]
    samples, lines = [], []
    for name, t in tensors:
        flat = t.detach().reshape(-1).double().numpy()
        stride = max(1, flat.size // SAMPLE)
        s = flat[::stride][:SAMPLE]
        samples.append(s.astype(np.float32))
        lines.append(f"{name} {flat.size} {stride} {s.size} {flat.sum():.17g} {(flat ** 2).sum():.17g}")
    np.save(os.path.join(out, "final.npy"), np.concatenate(samples))
    with open(os.path.join(out, "final.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
