#!/usr/bin/python3
"""Reference states for the PatchGAN discriminator (src/model/discriminator.c) and its
ops (src/nn/batchnorm.c, src/nn/leaky_relu.c), written with PyTorch CPU (1.13).

NLayerDiscriminator and the GAN losses are transcribed from zbr17/OptVQ
(src/optvq/models/discriminator.py, src/optvq/losses/aeloss_disc.py); the reference
package itself is not importable here.

To keep the committed files small, the discriminator's weights are not stored: they
are drawn with a Python port of the repo's RNG (src/core/rng.c: splitmix64-seeded
xoshiro256**, Box-Muller) in the order disc_create() draws them, so the C test builds
the same network with disc_create(SEED). init_probe.npy holds the first values of
every parameter so a change of the init order is reported as such.

Writes tests/ref/disc/:
  meta.npy            [in, ndf, n_layers, batch, H, W, seed, loss_g, loss_d, nbt]
  real.npy, fake.npy  (B, 3, H, W) inputs
  init_probe.npy      first min(4, numel) values of every parameter, registry order
  gen_logits.npy      D(fake) in the generator step
  gen_dx.npy          d(-mean D(fake)) / d fake
  gen_grad_<name>.npy parameter gradients of the generator step (from zero)
  disc_logits_real.npy, disc_logits_fake.npy
  disc_grad_<name>.npy parameter gradients of hinge(D(real), D(fake)) (from zero)
  buf_<name>.npy      BatchNorm running_mean / running_var after the three forwards
                      (fake [gen step], real, fake [disc step])
  loss_*.npy          hinge / vanilla / generator losses and gradients on spread logits
  bn_<i>_*.npy        BatchNorm2d (training) cases;  leaky_*.npy LeakyReLU(0.2) case
Run:  /usr/bin/python3 tools/gen_disc_ref.py
"""
import math
import os
import shutil

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref", "disc")
SEED = 20241215
M64 = (1 << 64) - 1


# ---- the repo's RNG (src/core/rng.c) ----
class Rng:
    def __init__(self, seed):
        x = seed & M64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def u64(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.u64() >> 11) * (2.0 ** -53)

    def normal(self):
        u1 = self.uniform()
        u2 = self.uniform()
        if u1 < 1e-300:
            u1 = 1e-300
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


# ---- transcription of the reference ----
class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc=3, ndf=64, n_layers=3):
        super().__init__()
        norm_layer = nn.BatchNorm2d
        use_bias = False
        kw, padw = 4, 1
        sequence = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
                    nn.LeakyReLU(0.2, True)]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev = nf_mult
            nf_mult = min(2 ** n, 8)
            sequence += [nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2,
                                   padding=padw, bias=use_bias),
                         norm_layer(ndf * nf_mult), nn.LeakyReLU(0.2, True)]
        nf_mult_prev = nf_mult
        nf_mult = min(2 ** n_layers, 8)
        sequence += [nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1,
                               padding=padw, bias=use_bias),
                     norm_layer(ndf * nf_mult), nn.LeakyReLU(0.2, True)]
        sequence += [nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.main = nn.Sequential(*sequence)

    def forward(self, x):
        return self.main(x)


def hinge_d_loss(logits_real, logits_fake):
    return 0.5 * (torch.mean(F.relu(1. - logits_real)) + torch.mean(F.relu(1. + logits_fake)))


def vanilla_d_loss(logits_real, logits_fake):
    return 0.5 * (torch.mean(F.softplus(-logits_real)) + torch.mean(F.softplus(logits_fake)))


def init_like_c(disc, seed):
    """disc_create's draw order: per conv, weight N(0, .02), bias U(+-1/sqrt(fan_in)),
    then (BN layers) weight 1 + N(0, .02), bias 0."""
    rng = Rng(seed)
    mods = list(disc.main)
    with torch.no_grad():
        for i, m in enumerate(mods):
            if not isinstance(m, nn.Conv2d):
                continue
            w = np.array([0.02 * rng.normal() for _ in range(m.weight.numel())], dtype=np.float32)
            m.weight.copy_(torch.from_numpy(w).view_as(m.weight))
            if m.bias is not None:
                fan_in = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
                bound = 1.0 / math.sqrt(fan_in)
                b = np.array([(2.0 * rng.uniform() - 1.0) * bound for _ in range(m.bias.numel())],
                             dtype=np.float32)
                m.bias.copy_(torch.from_numpy(b))
            if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
                bn = mods[i + 1]
                g = np.array([1.0 + 0.02 * rng.normal() for _ in range(bn.weight.numel())],
                             dtype=np.float32)
                bn.weight.copy_(torch.from_numpy(g))
                bn.bias.zero_()


def save(name, a):
    a = a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)
    if a.dtype != np.float64:
        a = a.astype(np.float32)
    np.save(os.path.join(OUT, name + ".npy"), np.ascontiguousarray(a))


PREFIX = "loss.discriminator."


def param_names(disc):
    return [PREFIX + n for n, _ in disc.named_parameters()]


def disc_case():
    cin, ndf, nl, B, H, W = 3, 8, 3, 2, 32, 32
    torch.manual_seed(7)
    disc = NLayerDiscriminator(cin, ndf, nl)
    init_like_c(disc, SEED)
    disc.train()
    real = torch.rand(B, cin, H, W) * 2 - 1
    fake = (real + 0.3 * torch.randn(B, cin, H, W)).clamp(-1.2, 1.2)
    save("real", real)
    save("fake", fake)
    params = list(disc.named_parameters())
    save("init_probe", np.concatenate([p.detach().flatten()[:4].numpy() for _, p in params]))

    # generator step: loss_g = -mean(D(x_rec)); gradients reach x_rec and D's parameters
    disc.zero_grad(set_to_none=False)
    xg = fake.clone().requires_grad_(True)
    lg = disc(xg)
    loss_g = -lg.mean()
    loss_g.backward()
    save("gen_logits", lg)
    save("gen_dx", xg.grad)
    for n, p in params:
        save("gen_grad_" + PREFIX + n, p.grad)

    # discriminator step: hinge(D(x), D(x_rec.detach())), one backward through both
    disc.zero_grad(set_to_none=False)
    lr = disc(real.detach())
    lf = disc(fake.detach())
    loss_d = hinge_d_loss(lr, lf)
    loss_d.backward()
    save("disc_logits_real", lr)
    save("disc_logits_fake", lf)
    for n, p in params:
        save("disc_grad_" + PREFIX + n, p.grad)
    nbt = None
    for n, b in disc.named_buffers():
        if n.endswith("num_batches_tracked"):
            nbt = int(b.item())
            continue
        save("buf_" + PREFIX + n, b)
    save("meta", np.array([cin, ndf, nl, B, H, W, SEED, loss_g.item(), loss_d.item(), nbt],
                          dtype=np.float64))
    print("disc: logits", tuple(lr.shape), "loss_g %.6f loss_d %.6f" % (loss_g.item(), loss_d.item()))


def loss_case():
    torch.manual_seed(8)
    v = torch.cat([torch.linspace(-25, 25, 41), torch.tensor([1.0, -1.0, 20.0, -20.0, 20.5, -20.5,
                                                             0.0]),
                   torch.randn(16) * 2])
    real = v.clone().requires_grad_(True)
    fake = v.flip(0)[:50].clone().requires_grad_(True)
    save("loss_real", real)
    save("loss_fake", fake)
    out = []
    for name, fn in (("hinge", hinge_d_loss), ("vanilla", vanilla_d_loss)):
        real.grad = None
        fake.grad = None
        l = fn(real, fake)
        l.backward()
        save("loss_%s_greal" % name, real.grad)
        save("loss_%s_gfake" % name, fake.grad)
        out.append(l.item())
    fake.grad = None
    lg = -fake.mean()
    lg.backward()
    save("loss_g_gfake", fake.grad)
    out.append(lg.item())
    save("loss_values", np.array(out, dtype=np.float64))


def bn_cases():
    torch.manual_seed(9)
    cases = [(3, 5, 4, 6, 0.7, 2.0), (4, 3, 1, 1, -1.5, 0.5), (1, 6, 5, 3, 3.0, 1.0),
             (2, 4, 7, 5, 100.0, 0.01)]  # large mean vs spread
    for i, (n, c, h, w, off, sc) in enumerate(cases):
        x = (torch.randn(n, c, h, w) * sc + off).requires_grad_(True)
        g = (1 + 0.3 * torch.randn(c)).requires_grad_(True)
        b = (0.2 * torch.randn(c)).requires_grad_(True)
        rm = 0.1 * torch.randn(c)
        rv = 1 + 0.1 * torch.rand(c)
        save("bn_%d_meta" % i, np.array([n, c, h, w], dtype=np.float64))
        save("bn_%d_x" % i, x)
        save("bn_%d_g" % i, g)
        save("bn_%d_b" % i, b)
        save("bn_%d_rm0" % i, rm)
        save("bn_%d_rv0" % i, rv)
        if i == 3:
            # ill-conditioned (mean 1e4 x the spread): torch's float32 kernel itself is
            # off by ~1e-3 here (x*alpha + beta cancels), so the reference is computed in
            # float64 from the same float32 inputs, i.e. the exact answer
            xd, gd, bd = (x.detach().double().requires_grad_(True), g.detach().double().requires_grad_(True),
                          b.detach().double().requires_grad_(True))
            rmd, rvd = rm.double(), rv.double()
            y = F.batch_norm(xd, rmd, rvd, gd, bd, training=True, momentum=0.1, eps=1e-5)
            gy = torch.randn(y.shape).double()
            y.backward(gy)
            x.grad, g.grad, b.grad = xd.grad.float(), gd.grad.float(), bd.grad.float()
            rm.copy_(rmd.float())
            rv.copy_(rvd.float())
        else:
            y = F.batch_norm(x, rm, rv, g, b, training=True, momentum=0.1, eps=1e-5)
            gy = torch.randn_like(y)
            y.backward(gy)
        save("bn_%d_y" % i, y)
        save("bn_%d_rm1" % i, rm)
        save("bn_%d_rv1" % i, rv)
        save("bn_%d_gy" % i, gy)
        save("bn_%d_gx" % i, x.grad)
        save("bn_%d_gg" % i, g.grad)
        save("bn_%d_gb" % i, b.grad)


def leaky_case():
    torch.manual_seed(10)
    x = torch.randn(3, 4, 5, 7)
    x.view(-1)[::9] = 0.0  # exact zeros take the slope branch in torch
    x.requires_grad_(True)
    y = F.leaky_relu(x, 0.2)
    gy = torch.randn_like(y)
    y.backward(gy)
    save("leaky_x", x)
    save("leaky_y", y)
    save("leaky_gy", gy)
    save("leaky_gx", x.grad)


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    disc_case()
    loss_case()
    bn_cases()
    leaky_case()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %d files, %.1f KB, to %s" % (len(os.listdir(OUT)), total / 1024, OUT))


if __name__ == "__main__":
    main()
