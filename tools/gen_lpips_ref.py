#!/usr/bin/python3
"""Reference outputs for LPIPS (src/eval/lpips.c) and MaxPool2d (src/nn/maxpool.c).

    /usr/bin/python3 tools/gen_lpips_ref.py [OUT_DIR]     (default tests/ref/lpips)

A transcription of `lpips.LPIPS(net="vgg", version="0.1")` of the lpips package
(richzhang/PerceptualSimilarity, lpips/lpips.py + pretrained_networks.py), which is
not installed here:
  ScalingLayer  (x - shift) / scale, shift [-.030, -.088, -.188], scale [.458, .448, .450]
  net           torchvision vgg16 `features` cut into slices [0:4] [4:9] [9:16]
                [16:23] [23:30] (relu1_2 .. relu5_3); module names keep the global
                index (net.slice2.5.weight = features.5.weight)
  per slice     normalize_tensor (f / (sqrt(sum_c f^2) + 1e-10)), d = (n0 - n1)^2,
                lin_k = Sequential(Dropout, Conv2d(C, 1, 1, bias=False)) -> the
                weight is linK.model.1.weight, spatial mean over (h, w)
  result        sum over the 5 slices, (B, 1, 1, 1)
The module runs in eval mode (Dropout off).

Real VGG weights are 14.7M parameters, too big to commit, so every tensor is
filled from det_uniform(torchvision_name) (splitmix64 keyed by fnv1a64 of the
name, as in tools/gen_model_ref.py), which the C test reproduces:
  features.N.weight   U(+-1) * sqrt(6 / fan_in)   (He-uniform: activations stay O(1))
  features.N.bias     U(+-1) * 0.1
  linK.model.1.weight |U(+-1)| * 0.5               (positive, as the real heads)

OUT_DIR/<case>/ (case = sq: B=2 3x32x32, rect: B=2 3x48x32) holds
  x0.npy, x1.npy      inputs in [-1, 1] (float32)
  lpips.npy           per-image LPIPS (float64 of the float32 torch result)
  lpips64.npy         the same computed in float64 (for information)
  dx1.npy             d sum_i lpips[i] / d x1 (float32 autograd)
  dx1_64.npy          the same in float64 (for information)
  layers.npy          the 5 per-slice contributions, (5, B) float64
OUT_DIR/vgg_lin.pth   lin0.model.1.weight ... lin4.model.1.weight (det weights), laid
                      out as lpips's weights/v0.1/vgg.pth
OUT_DIR/maxpool_<i>/  x, y, dy, dx (float32) and meta (N, C, H, W, k, stride, pad)
                      with many ties (small integers), to pin PyTorch's tie rule.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

torch.set_num_threads(2)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref", "lpips")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_model_ref import det_uniform  # noqa: E402


# ---------------------------------------------------------------- the module

class ScalingLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.Tensor([-.030, -.088, -.188])[None, :, None, None])
        self.register_buffer("scale", torch.Tensor([.458, .448, .450])[None, :, None, None])

    def forward(self, inp):
        return (inp - self.shift) / self.scale


class VGG16Slices(nn.Module):
    def __init__(self):
        super().__init__()
        feats = make_layers(cfgs["D"], batch_norm=False)  # torchvision vgg16().features
        bounds = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]
        for k, (a, b) in enumerate(bounds):
            s = nn.Sequential()
            for x in range(a, b):
                s.add_module(str(x), feats[x])
            setattr(self, "slice%d" % (k + 1), s)

    def forward(self, x):
        outs = []
        for k in range(5):
            x = getattr(self, "slice%d" % (k + 1))(x)
            outs.append(x)
        return outs


class NetLinLayer(nn.Module):
    def __init__(self, chn_in):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(chn_in, 1, 1, stride=1, padding=0, bias=False))

    def forward(self, x):
        return self.model(x)


def normalize_tensor(in_feat, eps=1e-10):
    norm_factor = torch.sqrt(torch.sum(in_feat ** 2, dim=1, keepdim=True))
    return in_feat / (norm_factor + eps)


class LPIPSRef(nn.Module):
    chns = [64, 128, 256, 512, 512]

    def __init__(self):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Slices()
        for k, c in enumerate(self.chns):
            setattr(self, "lin%d" % k, NetLinLayer(c))

    def forward(self, in0, in1, per_layer=False):
        o0 = self.net(self.scaling_layer(in0))
        o1 = self.net(self.scaling_layer(in1))
        res = []
        for k in range(5):
            d = (normalize_tensor(o0[k]) - normalize_tensor(o1[k])) ** 2
            res.append(getattr(self, "lin%d" % k)(d).mean([2, 3], keepdim=True))
        val = sum(res)
        return (val, res) if per_layer else val


def tv_name(sd_name):
    """net.sliceK.N.weight -> features.N.weight; lin names unchanged."""
    if sd_name.startswith("net.slice"):
        return "features." + sd_name.split(".", 2)[2]
    return sd_name


def det_fill(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = tv_name(name)
            u = torch.from_numpy(det_uniform(n, p.numel())).view(p.shape)
            if n.startswith("lin"):
                p.copy_(u.abs() * 0.5)
            elif n.endswith(".weight"):
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(u * float(np.sqrt(6.0 / fan_in)))
            else:
                p.copy_(u * 0.1)


def inputs(B, H, W, seed):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    x0 = torch.empty(B, 3, H, W)
    for b in range(B):
        for c in range(3):
            x0[b, c] = 0.6 * torch.sin(6.0 * xx * (c + 1) + 4.0 * yy + b) * torch.cos(3.0 * yy * (b + 1) - c)
    x0 = (x0 + 0.2 * torch.randn(B, 3, H, W, generator=g)).clamp(-1, 1)
    x1 = (x0 + 0.15 * torch.randn(B, 3, H, W, generator=g) + 0.05).clamp(-1, 1)
    return x0.contiguous(), x1.contiguous()


def save(d, name, a, dtype=np.float32):
    np.save(os.path.join(d, name + ".npy"), np.ascontiguousarray(np.asarray(a).astype(dtype)))


def tie_margins(model64, x1):
    """How far the x1 path is from a discontinuity of the gradient, in float64:
    min |relu pre-activation| and min gap between the two largest values of a
    max-pool window (windows with a positive max), both over the layer's rms.
    A float32 implementation can route the gradient differently where these are
    ~1e-7, so the cases below use inputs whose margins are comfortably larger."""
    b = model64.scaling_layer(x1.double())
    relu_m, pool_m = float("inf"), float("inf")
    with torch.no_grad():
        for k in range(5):
            for mod in getattr(model64.net, "slice%d" % (k + 1)).children():
                if isinstance(mod, nn.Conv2d):
                    b = mod(b)
                    relu_m = min(relu_m, float(b.abs().min() / b.pow(2).mean().sqrt()))
                elif isinstance(mod, nn.MaxPool2d):
                    N, C, H, W = b.shape
                    t = b[:, :, :H // 2 * 2, :W // 2 * 2].reshape(N, C, H // 2, 2, W // 2, 2)
                    t = t.permute(0, 1, 2, 4, 3, 5).reshape(N, C, H // 2, W // 2, 4)
                    s, _ = t.sort(-1, descending=True)
                    gap = (s[..., 0] - s[..., 1])[s[..., 0] > 0]
                    pool_m = min(pool_m, float(gap.min() / b.pow(2).mean().sqrt()))
                    b = mod(b)
                else:
                    b = mod(b)
    return relu_m, pool_m


def lpips_cases(model):
    model64 = LPIPSRef().double().eval()
    model64.load_state_dict(model.state_dict())
    for case, (B, H, W, seed) in {"sq": (2, 32, 32, 6), "rect": (2, 48, 32, 8)}.items():
        d = os.path.join(OUT, case)
        os.makedirs(d, exist_ok=True)
        x0, x1 = inputs(B, H, W, seed)
        margins = tie_margins(model64, x1)
        print("%s: tie margins relu %.2g pool %.2g" % ((case,) + margins))
        if min(margins) < 1e-6:
            print("WARNING: %s is close to a gradient discontinuity; pick another seed" % case)
        x1r = x1.clone().requires_grad_(True)
        val, res = model(x0, x1r, per_layer=True)
        val.sum().backward()
        x1d = x1.double().requires_grad_(True)
        v64 = model64(x0.double(), x1d).view(B)
        v64.sum().backward()
        v64 = v64.detach()
        # a sanity line: activations and the zero-norm risk (torch gives NaN
        # gradients where a whole feature vector is zero)
        with torch.no_grad():
            outs = model.net(model.scaling_layer(x1))
            zero = [int((o.pow(2).sum(1) == 0).sum()) for o in outs]
            rms = [float(o.pow(2).mean().sqrt()) for o in outs]
        print("%s: lpips %s (f64 %s) rel %.2g; slice rms %s; zero vectors %s; |dx1| %.3g" % (
            case, val.view(B).tolist(), v64.tolist(),
            float(((val.view(B).double() - v64) / v64).abs().max()),
            ["%.3g" % r for r in rms], zero, float(x1r.grad.norm())))
        save(d, "x0", x0)
        save(d, "x1", x1)
        save(d, "lpips", val.detach().view(B).double(), np.float64)
        save(d, "lpips64", v64, np.float64)
        save(d, "layers", torch.stack([r.detach().view(B) for r in res]).double(), np.float64)
        save(d, "dx1", x1r.grad)
        save(d, "dx1_64", x1d.grad, np.float64)
        g32, g64 = x1r.grad.double(), x1d.grad
        print("    torch f32 vs f64 gradient nmse %.3g" % float((g32 - g64).pow(2).sum() / g64.pow(2).sum()))


def maxpool_cases():
    g = torch.Generator().manual_seed(7)
    cases = [(2, 3, 7, 9, 2, 2, 0), (1, 2, 8, 6, 2, 2, 0), (1, 2, 7, 8, 3, 2, 1)]
    for i, (N, C, H, W, k, s, p) in enumerate(cases):
        d = os.path.join(OUT, "maxpool_%d" % i)
        os.makedirs(d, exist_ok=True)
        x = torch.randint(-2, 3, (N, C, H, W), generator=g).float().requires_grad_(True)
        y = F.max_pool2d(x, k, s, p)
        dy = torch.randn(y.shape, generator=g)
        y.backward(dy)
        save(d, "meta", [N, C, H, W, k, s, p], np.float64)
        save(d, "x", x.detach())
        save(d, "y", y.detach())
        save(d, "dy", dy)
        save(d, "dx", x.grad)


def main():
    os.makedirs(OUT, exist_ok=True)
    model = LPIPSRef().eval()
    det_fill(model)
    lpips_cases(model)
    maxpool_cases()
    # the lpips package's weights/v0.1/vgg.pth layout (a plain state_dict of the
    # five heads, torch.save zip format), with the deterministic weights: lets the
    # C test load a real .pth next to a features file it writes itself
    lins = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("lin")}
    torch.save(lins, os.path.join(OUT, "vgg_lin.pth"))


if __name__ == "__main__":
    main()
