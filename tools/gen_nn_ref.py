#!/usr/bin/python3
"""Reference states for the nn engine (src/nn), written with PyTorch CPU.

For every op and several shapes (odd sizes, batch 1) it writes, under
tests/ref/nn/<op>_<i>/:  meta.npy (float64 vector of sizes/options, layout per op
below), the inputs and parameters, the forward output, a random upstream gradient
gy, and every gradient (gx, gw, gb, ... named after what they differentiate).
All tensors are float32 except meta. Run:  /usr/bin/python3 tools/gen_nn_ref.py
"""
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref", "nn")
torch.manual_seed(1234)
torch.set_default_dtype(torch.float32)


def save_case(name, meta, tensors):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "meta.npy"), np.asarray(meta, dtype=np.float64))
    for k, v in tensors.items():
        a = v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
        np.save(os.path.join(d, k + ".npy"), np.ascontiguousarray(a.astype(np.float32)))


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def run(fn, inputs):
    """Forward, random upstream gradient, backward. Returns (y, gy)."""
    y = fn()
    gy = torch.randn_like(y)
    y.backward(gy)
    return y, gy


def conv2d_cases():
    # N, Cin, H, W, Cout, kh, kw, stride, pad_t, pad_b, pad_l, pad_r, has_bias
    cases = [
        (2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1, 1, 1),
        (1, 4, 8, 8, 5, 3, 3, 2, 0, 1, 0, 1, 1),   # taming Downsample
        (1, 6, 7, 7, 5, 3, 3, 2, 0, 1, 0, 1, 1),   # Downsample, odd size
        (3, 5, 6, 5, 3, 1, 1, 1, 0, 0, 0, 0, 1),   # 1x1 (nin_shortcut, q/k/v)
        (1, 2, 9, 7, 3, 2, 2, 2, 0, 0, 0, 0, 0),   # 2x2 stride 2, no bias
        (2, 3, 11, 10, 2, 5, 3, 2, 2, 2, 1, 1, 1), # rectangular kernel
        (1, 16, 5, 5, 8, 3, 3, 1, 1, 1, 1, 1, 1),
    ]
    for i, m in enumerate(cases):
        N, Cin, H, W, Cout, kh, kw, s, pt, pb, pl, pr, hb = m
        x = leaf(N, Cin, H, W)
        w = leaf(Cout, Cin, kh, kw, scale=(Cin * kh * kw) ** -0.5)
        b = leaf(Cout) if hb else None
        y, gy = run(lambda: F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, b, stride=s), None)
        t = dict(x=x, w=w, y=y, gy=gy, gx=x.grad, gw=w.grad)
        if hb:
            t.update(b=b, gb=b.grad)
        save_case("conv2d_%d" % i, m, t)


def convt_cases():
    # N, Cin, H, W, Cout, k, stride, pad, out_pad, has_bias
    cases = [
        (2, 3, 4, 5, 4, 2, 2, 0, 0, 1),   # the CNN decoder's convT 2x2/s2
        (1, 4, 3, 3, 2, 3, 2, 1, 1, 1),
        (1, 2, 5, 4, 3, 4, 2, 1, 0, 0),
        (3, 3, 3, 3, 2, 3, 1, 1, 0, 1),
    ]
    for i, m in enumerate(cases):
        N, Cin, H, W, Cout, k, s, p, op, hb = m
        x = leaf(N, Cin, H, W)
        w = leaf(Cin, Cout, k, k, scale=0.3)
        b = leaf(Cout) if hb else None
        y, gy = run(lambda: F.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op), None)
        t = dict(x=x, w=w, y=y, gy=gy, gx=x.grad, gw=w.grad)
        if hb:
            t.update(b=b, gb=b.grad)
        save_case("convt2d_%d" % i, m, t)


def group_norm_cases():
    # N, C, H, W, groups, affine, eps
    cases = [(2, 8, 5, 3, 4, 1, 1e-6), (1, 64, 4, 4, 32, 1, 1e-6), (3, 6, 7, 1, 3, 0, 1e-5),
             (1, 4, 3, 3, 1, 1, 1e-6)]
    for i, m in enumerate(cases):
        N, C, H, W, G, aff, eps = m
        x = leaf(N, C, H, W, scale=2.0)
        with torch.no_grad():
            x += torch.randn(N, C, 1, 1)  # per-channel offsets
        gamma = leaf(C) if aff else None
        beta = leaf(C) if aff else None
        y, gy = run(lambda: F.group_norm(x, G, gamma, beta, eps), None)
        t = dict(x=x, y=y, gy=gy, gx=x.grad)
        if aff:
            t.update(w=gamma, b=beta, gw=gamma.grad, gb=beta.grad)
        save_case("group_norm_%d" % i, m, t)


def elementwise_cases():
    shapes = [(2, 3, 5, 7), (1, 1, 1, 13)]
    for i, sh in enumerate(shapes):
        for name, fn in (("relu", F.relu), ("swish", lambda v: v * torch.sigmoid(v))):
            x = leaf(*sh, scale=3.0)
            y, gy = run(lambda: fn(x), None)
            save_case("%s_%d" % (name, i), [int(np.prod(sh))], dict(x=x, y=y, gy=gy, gx=x.grad))
        a, b = leaf(*sh), leaf(*sh)
        y, gy = run(lambda: a + b, None)
        save_case("add_%d" % i, [int(np.prod(sh))], dict(a=a, b=b, y=y, gy=gy, ga=a.grad, gb=b.grad))


def linear_cases():
    for i, m in enumerate([(5, 7, 3, 1), (1, 16, 9, 0), (33, 40, 70, 1)]):
        n, fin, fout, hb = m
        x, w = leaf(n, fin), leaf(fout, fin, scale=fin ** -0.5)
        b = leaf(fout) if hb else None
        y, gy = run(lambda: F.linear(x, w, b), None)
        t = dict(x=x, w=w, y=y, gy=gy, gx=x.grad, gw=w.grad)
        if hb:
            t.update(b=b, gb=b.grad)
        save_case("linear_%d" % i, m, t)


def softmax_cases():
    for i, m in enumerate([(6, 11), (1, 300), (4, 1)]):
        x = leaf(*m, scale=3.0)
        y, gy = run(lambda: torch.softmax(x, dim=-1), None)
        save_case("softmax_%d" % i, m, dict(x=x, y=y, gy=gy, gx=x.grad))


def bmm_cases():
    # batch, m, k, n, trans_a, trans_b
    for i, m in enumerate([(3, 4, 5, 6, 0, 0), (1, 7, 3, 5, 1, 0), (2, 3, 8, 4, 0, 1),
                           (2, 5, 6, 3, 1, 1), (1, 64, 48, 80, 0, 0)]):
        B, M, K, Nn, ta, tb = m
        a = leaf(B, K, M) if ta else leaf(B, M, K)
        b = leaf(B, Nn, K) if tb else leaf(B, K, Nn)
        y, gy = run(lambda: torch.bmm(a.transpose(1, 2) if ta else a, b.transpose(1, 2) if tb else b), None)
        save_case("bmm_%d" % i, m, dict(a=a, b=b, y=y, gy=gy, ga=a.grad, gb=b.grad))


def attn_cases():
    # N, C, H, W, groups  (eps 1e-6, as taming's Normalize)
    for i, m in enumerate([(2, 32, 3, 5, 32), (1, 64, 4, 4, 32), (1, 128, 1, 1, 32)]):
        N, C, H, W, G = m
        x = leaf(N, C, H, W)
        P = {}
        P["norm.weight"], P["norm.bias"] = leaf(C), leaf(C)
        for nm in ("q", "k", "v", "proj_out"):
            P[nm + ".weight"] = leaf(C, C, 1, 1, scale=C ** -0.5)
            P[nm + ".bias"] = leaf(C, scale=0.1)

        def fwd():
            h = F.group_norm(x, G, P["norm.weight"], P["norm.bias"], 1e-6)
            q = F.conv2d(h, P["q.weight"], P["q.bias"])
            k = F.conv2d(h, P["k.weight"], P["k.bias"])
            v = F.conv2d(h, P["v.weight"], P["v.bias"])
            b, c, hh, ww = q.shape
            q = q.reshape(b, c, hh * ww).permute(0, 2, 1)
            k = k.reshape(b, c, hh * ww)
            w_ = torch.bmm(q, k) * (int(c) ** (-0.5))
            w_ = F.softmax(w_, dim=2)
            v = v.reshape(b, c, hh * ww)
            w_ = w_.permute(0, 2, 1)
            h_ = torch.bmm(v, w_).reshape(b, c, hh, ww)
            return x + F.conv2d(h_, P["proj_out.weight"], P["proj_out.bias"])

        y, gy = run(fwd, None)
        t = dict(x=x, y=y, gy=gy, gx=x.grad)
        for k, v in P.items():
            t[k] = v
            t["g." + k] = v.grad
        save_case("attn_%d" % i, m + (1e-6,), t)


def misc_cases():
    for i, m in enumerate([(2, 3, 3, 5), (1, 1, 1, 1)]):
        x = leaf(*m)
        y, gy = run(lambda: F.interpolate(x, scale_factor=2.0, mode="nearest"), None)
        save_case("upsample_%d" % i, m, dict(x=x, y=y, gy=gy, gx=x.grad))
    # N, C, H, W, k, stride, pad
    for i, m in enumerate([(2, 3, 7, 8, 2, 2, 0), (1, 2, 9, 9, 3, 2, 1), (1, 1, 5, 5, 3, 1, 0)]):
        N, C, H, W, k, s, p = m
        x = leaf(N, C, H, W)
        y, gy = run(lambda: F.avg_pool2d(x, k, s, p), None)
        save_case("avgpool_%d" % i, m, dict(x=x, y=y, gy=gy, gx=x.grad))
    for i, m in enumerate([(2, 3, 4, 3, 5), (1, 1, 2, 1, 1)]):
        N, Ca, Cb, H, W = m
        a, b = leaf(N, Ca, H, W), leaf(N, Cb, H, W)
        y, gy = run(lambda: torch.cat([a, b], dim=1), None)
        save_case("concat_%d" % i, m, dict(a=a, b=b, y=y, gy=gy, ga=a.grad, gb=b.grad))
    for i, sh in enumerate([(2, 3, 5, 7), (1, 1, 1, 3)]):
        for name, fn in (("l1", F.l1_loss), ("mse", F.mse_loss)):
            x, t = leaf(*sh), leaf(*sh)
            loss = fn(x, t)
            g = torch.tensor(1.7)
            loss.backward(g)
            save_case("%s_%d" % (name, i), [int(np.prod(sh))],
                      dict(x=x, t=t, y=loss.reshape(1), gy=g.reshape(1), gx=x.grad, gt=t.grad))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    conv2d_cases()
    convt_cases()
    group_norm_cases()
    elementwise_cases()
    linear_cases()
    softmax_cases()
    bmm_cases()
    attn_cases()
    misc_cases()
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print("wrote %s (%d bytes)" % (os.path.normpath(OUT), total), file=sys.stderr)


if __name__ == "__main__":
    main()
