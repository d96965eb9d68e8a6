#!/usr/bin/python3
"""Reference outputs for LPIPS-Alex (src/eval/lpips_alex.c), the FID Inception and
the Frechet distance (src/eval/fid.c), and the legacy torch.save reader (src/io/pth.c).

    /usr/bin/python3 tools/gen_fid_lpips_ref.py [OUT_DIR]     (default tests/ref)

Transcriptions (neither pyiqa, lpips nor pytorch-fid is installed here):
  LPIPS-Alex   pyiqa's create_metric("lpips") = lpips.LPIPS(net="alex", version="0.1"):
               inputs in [0, 1] -> 2x - 1 -> ScalingLayer -> torchvision alexnet
               `features` sliced [0:2] [2:5] [5:8] [8:10] [10:12] (relu1..relu5)
               -> normalize_tensor (eps 1e-10) -> (n0 - n1)^2 -> lin_k (1x1 conv,
               no bias; Dropout off in eval) -> spatial mean -> sum of the 5 layers.
  Inception    pytorch-fid's InceptionV3([3]): F.interpolate(299, bilinear,
               align_corners=False), 2x - 1, torchvision Inception3 (1008 classes, no
               aux) with Mixed_5b/5c/5d = FIDInceptionA, 6b..6e = FIDInceptionC,
               7b = FIDInceptionE_1 (avg pools count_include_pad=False), 7c =
               FIDInceptionE_2 (max pool), AdaptiveAvgPool2d(1) -> (B, 2048).
  FID          pytorch-fid's calculate_frechet_distance (scipy.linalg.sqrtm, eps 1e-6
               fallback), on mu = mean, sigma = np.cov(rowvar=False) in float64.

Published weights are far too big to commit (AlexNet 61M, Inception 24M floats), so
every tensor is filled from det_uniform(name) (tools/gen_model_ref.py; the C tests
have the same generator, tests/test.h):
  conv weights        U * sqrt(6 / fan_in)             (He: activations stay O(1))
  conv biases         U * 0.1
  lpips heads         |U| * 0.5                         (positive, as the real ones)
  bn weight / bias    1 + 0.1 U / 0.1 U
  bn running mean/var 0.1 U / 1 + 0.2 U
Only outputs, small files and the key lists are written:
  lpips_alex/images.npy     uint8 (2, N, 3, 40, 48): N photos of skimage.data
                            (resized), then perturbed copies (noise, blur, shift, ...)
  lpips_alex/big.npy        uint8 (2, 3, 64, 72): one larger pair (a crop + noise)
  lpips_alex/lpips.npy      float64 (N + 1,): per-pair LPIPS (float32 torch), the
                            last the big pair;  layers.npy (N + 1, 5) per layer
  lpips_alex/alex_lin.pth   the det heads as lpips's weights/v0.1/alex.pth: a LEGACY
                            (non-zip) torch.save of lin0.model.1.weight ...
  lpips_alex/keys.txt       name and shape of every tensor of torchvision's alexnet
                            state dict and of the lpips heads
  fid/feats.npy             float32 (4, 2048): features of images[0][0:2], images[1][0:2]
  fid/fid.npy               float64 [fid (sqrtm, pytorch-fid), fid (eigenvalues),
                            small, small_singular] (see below)
  fid/keys.txt              name and shape of every tensor of the FID Inception's
                            state dict
  fid/eval_plain_vqbase.npy float64 [mean LPIPS, FID] of PyTorch's reconstruction
                            tests/ref/model/plain_vqbase/recon.npy against its input
                            x.npy (2 x 3 x 32 x 32), both mapped as the paper's eval.py
                            does ((x + 1) / 2; the reconstruction clamped to [0, 1]):
                            what `optvq eval --lpips --fid-weights` must report
  weights/legacy.pth        a legacy torch.save state dict with det values: a (3, 4),
                            b = a[1:] (a view: same storage, offset 4), c = det (2, 3)
                            transposed (non-contiguous), h float16 (5,), d float64
                            (2, 2), and an int64 buffer n (3,) = [1, -2, 3]
The small Frechet cases: x1 = det("fid.x1") (300, 64), x2 = det("fid.x2") (200, 64)
* 0.8 + 0.1 (float32), FID of their statistics; singular: the first 10 rows of
each.
"""
import os
import sys

import numpy as np
import scipy.linalg
import skimage.data
import skimage.filters
import skimage.transform
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

torch.set_num_threads(2)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "tests", "ref")
sys.path.insert(0, HERE)
from gen_model_ref import det_uniform  # noqa: E402


def det(name, shape):
    return torch.from_numpy(det_uniform(name, int(np.prod(shape)))).view(shape)


def det_fill(sd_items):
    """sd_items: (name, tensor) pairs; fills float tensors in place by the rules above."""
    with torch.no_grad():
        for name, p in sd_items:
            if not p.is_floating_point():
                continue
            u = det(name, tuple(p.shape))
            if name.startswith("lin") or name.startswith("lins."):
                p.copy_(u.abs() * 0.5)
            elif name.endswith("running_mean") or name.endswith("bn.bias"):
                p.copy_(u * 0.1)
            elif name.endswith("running_var"):
                p.copy_(1.0 + 0.2 * u)
            elif name.endswith("bn.weight"):
                p.copy_(1.0 + 0.1 * u)
            elif p.dim() == 4 or (p.dim() == 2 and name.startswith("fc")):
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(u * float(np.sqrt(6.0 / fan_in)))
            else:
                p.copy_(u * 0.1)


def keys_txt(path, items):
    with open(path, "w") as f:
        for name, t in items:
            f.write("%s %s\n" % (name, " ".join(str(s) for s in t.shape)))


# ---------------------------------------------------------------- images

def photos(h, w):
    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "motorcycle_left"]
    out = []
    for n in names:
        try:
            im = getattr(skimage.data, n)()
        except Exception:  # a photo that needs a download: skip it
            continue
        if im.ndim == 2:
            im = np.stack([im] * 3, -1)
        im = skimage.transform.resize(im[..., :3], (h, w), anti_aliasing=True)
        out.append(np.clip(np.round(im * 255), 0, 255).astype(np.uint8))
    return out


def perturb(im, k, rng):
    x = im.astype(np.float64) / 255
    kind = k % 5
    if kind == 0:
        x = x + rng.normal(0, 0.06, x.shape)
    elif kind == 1:
        x = skimage.filters.gaussian(x, sigma=1.0, channel_axis=-1)
    elif kind == 2:
        x = x * 0.85 + 0.1
    elif kind == 3:
        x = np.round(x * 7) / 7
    else:
        x = x[:, ::-1] * 0.5 + x * 0.5
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def to_tensor(u8):  # (N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1], as ToTensor
    return torch.from_numpy(u8).permute(0, 3, 1, 2).contiguous().float() / 255


# ---------------------------------------------------------------- LPIPS-Alex

class ScalingLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.Tensor([-.030, -.088, -.188])[None, :, None, None])
        self.register_buffer("scale", torch.Tensor([.458, .448, .450])[None, :, None, None])

    def forward(self, x):
        return (x - self.shift) / self.scale


class NetLin(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class LpipsAlex(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.features = features
        self.bounds = [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)]
        for k, c in enumerate([64, 192, 384, 256, 256]):
            setattr(self, "lin%d" % k, NetLin(c))

    def trunk(self, x):
        outs = []
        for a, b in self.bounds:
            for i in range(a, b):
                x = self.features[i](x)
            outs.append(x)
        return outs

    def forward(self, in1, in0):  # pyiqa's order: (distorted, reference), normalize=True
        in0, in1 = 2 * in0 - 1, 2 * in1 - 1
        o0, o1 = self.trunk(self.scaling_layer(in0)), self.trunk(self.scaling_layer(in1))
        res = []
        for k in range(5):
            n0 = o0[k] / (torch.sqrt(torch.sum(o0[k] ** 2, dim=1, keepdim=True)) + 1e-10)
            n1 = o1[k] / (torch.sqrt(torch.sum(o1[k] ** 2, dim=1, keepdim=True)) + 1e-10)
            res.append(getattr(self, "lin%d" % k)((n0 - n1) ** 2).mean([2, 3], keepdim=True))
        return sum(res).flatten(), torch.stack([r.flatten() for r in res], 1)


def det_lpips():
    alex = torchvision.models.alexnet()
    det_fill(alex.state_dict().items())
    model = LpipsAlex(alex.features).eval()
    lins = [(k, v) for k, v in model.state_dict().items() if k.startswith("lin")]
    det_fill(lins)
    return alex, model, lins


def lpips_refs():
    d = os.path.join(OUT, "lpips_alex")
    os.makedirs(d, exist_ok=True)
    alex, model, lins = det_lpips()
    keys_txt(os.path.join(d, "keys.txt"), list(alex.state_dict().items()) + lins)
    # lpips's weights/v0.1/alex.pth layout, legacy torch.save format
    heads = {k: v.clone() for k, v in lins}
    torch.save(heads, os.path.join(d, "alex_lin.pth"), _use_new_zipfile_serialization=False)

    rng = np.random.default_rng(0)
    orig = photos(40, 48)
    pert = [perturb(im, k, rng) for k, im in enumerate(orig)]
    imgs = np.stack([np.stack(orig), np.stack(pert)]).transpose(0, 1, 4, 2, 3)  # (2, N, 3, H, W)
    np.save(os.path.join(d, "images.npy"), np.ascontiguousarray(imgs))
    big0 = skimage.data.astronaut()[40:104, 180:252]  # 64 x 72, the face
    big1 = perturb(big0, 0, rng)
    big = np.stack([big0, big1]).transpose(0, 3, 1, 2)
    np.save(os.path.join(d, "big.npy"), np.ascontiguousarray(big))
    with torch.no_grad():
        x0 = torch.from_numpy(imgs[0]).float() / 255
        x1 = torch.from_numpy(imgs[1]).float() / 255
        v, lay = model(x1, x0)
        b0 = torch.from_numpy(big[0:1]).float() / 255
        b1 = torch.from_numpy(big[1:2]).float() / 255
        vb, layb = model(b1, b0)
    np.save(os.path.join(d, "lpips.npy"), torch.cat([v, vb]).double().numpy())
    np.save(os.path.join(d, "layers.npy"), torch.cat([lay, layb]).double().numpy())
    print("lpips-alex:", torch.cat([v, vb]).numpy())
    return imgs


# ---------------------------------------------------------------- FID Inception

from torchvision.models.inception import InceptionA, InceptionC, InceptionE  # noqa: E402


class FIDInceptionA(InceptionA):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b5, bd, bp], 1)


class FIDInceptionC(InceptionC):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for m in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
            bd = m(bd)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b7, bd, bp], 1)


class FIDInceptionE(InceptionE):
    def __init__(self, cin, max_pool):
        super().__init__(cin)
        self.max_pool = max_pool

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.max_pool:
            p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            p = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([b1, b3, bd, self.branch_pool(p)], 1)


def fid_inception():
    net = torchvision.models.inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE(1280, False)
    net.Mixed_7c = FIDInceptionE(2048, True)
    return net.eval()


def fid_features(net, x):  # x (B, 3, H, W) in [0, 1]
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    for m in (net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3):
        x = m(x)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for n in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
        x = getattr(net, "Mixed_" + n)(x)
    return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def frechet_sqrtm(mu1, s1, mu2, s2, eps=1e-6):  # pytorch-fid's calculate_frechet_distance
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + off).dot(s2 + off))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_eig(mu1, s1, mu2, s2):
    l, v = np.linalg.eigh(s1)
    w = v * np.sqrt(np.maximum(l, 0))
    ev = np.linalg.eigvalsh(w.T @ s2 @ w)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.maximum(ev, 0)).sum())


def stats(x):
    x = np.asarray(x, dtype=np.float64)
    return x.mean(0), np.cov(x, rowvar=False)


def det_inception():
    net = fid_inception()
    items = list(net.state_dict().items())
    det_fill(items)
    return net, items


def fid_refs(imgs):
    d = os.path.join(OUT, "fid")
    os.makedirs(d, exist_ok=True)
    net, items = det_inception()
    keys_txt(os.path.join(d, "keys.txt"), items)
    with torch.no_grad():
        f0 = fid_features(net, torch.from_numpy(imgs[0]).float() / 255).numpy()
        f1 = fid_features(net, torch.from_numpy(imgs[1]).float() / 255).numpy()
    print("features: mean %.4g std %.4g, zero fraction %.3f" % (f0.mean(), f0.std(), (f0 == 0).mean()))
    np.save(os.path.join(d, "feats.npy"), np.concatenate([f0[:2], f1[:2]]).astype(np.float32))
    m0, s0 = stats(f0)
    m1, s1 = stats(f1)
    fid = frechet_sqrtm(m0, s0, m1, s1)
    fid_e = frechet_eig(m0, s0, m1, s1)
    x1 = det_uniform("fid.x1", 300 * 64).reshape(300, 64)
    x2 = (det_uniform("fid.x2", 200 * 64).reshape(200, 64) * np.float32(0.8) + np.float32(0.1)).astype(np.float32)
    small = frechet_sqrtm(*stats(x1), *stats(x2))
    small_sing = frechet_sqrtm(*stats(x1[:10]), *stats(x2[:10]))
    print("fid %.9g (eig %.9g), small %.12g, small singular %.9g" % (fid, fid_e, small, small_sing))
    np.save(os.path.join(d, "fid.npy"), np.array([fid, fid_e, small, small_sing]))


def eval_refs():
    ref = os.path.join(OUT, "model", "plain_vqbase")
    x = torch.from_numpy(np.load(os.path.join(ref, "x.npy"))).float()
    rec = torch.from_numpy(np.load(os.path.join(ref, "recon.npy"))).float()
    x01, r01 = (x + 1) / 2, ((rec + 1) / 2).clamp(0, 1)
    _, model, _ = det_lpips()
    net, _ = det_inception()
    with torch.no_grad():
        lp = model(r01, x01)[0]
        m0, s0 = stats(fid_features(net, x01).numpy())
        m1, s1 = stats(fid_features(net, r01).numpy())
    fid = frechet_sqrtm(m0, s0, m1, s1)
    print("eval plain_vqbase: LPIPS", lp.numpy(), "mean %.9g, FID %.9g" % (lp.mean(), fid))
    np.save(os.path.join(OUT, "fid", "eval_plain_vqbase.npy"), np.array([float(lp.double().mean()), fid]))


# ---------------------------------------------------------------- legacy .pth

def legacy_pth():
    d = os.path.join(OUT, "weights")
    os.makedirs(d, exist_ok=True)
    a = det("legacy.a", (3, 4))
    sd = {"a": a, "b": a[1:], "c": det("legacy.c", (2, 3)).t(), "h": det("legacy.h", (5,)).half(),
          "d": det("legacy.d", (2, 2)).double(), "n": torch.tensor([1, -2, 3])}
    torch.save(sd, os.path.join(d, "legacy.pth"), _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    legacy_pth()
    imgs = lpips_refs()
    fid_refs(imgs)
    eval_refs()
