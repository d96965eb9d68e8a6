#!/usr/bin/python3
"""PyTorch CPU side of the nn benchmark: the rows of bench_nn.c on the same shapes,
forward and forward+backward, best-of-repeats ms; same tab-separated format
  row  fwd_ms  fwdbwd_ms  fwdbwd_gflops
Usage: /usr/bin/python3 bench/torch_nn.py [min_seconds] (threads: torch.set_num_threads(2)
unless OPTVQ_BENCH_THREADS says otherwise)."""
import os
import sys
import time

import torch
import torch.nn.functional as F

MIN_S = float(sys.argv[1]) if len(sys.argv) > 1 else 0.4
NT = int(os.environ.get("OPTVQ_BENCH_THREADS", "2"))
torch.set_num_threads(NT)
torch.manual_seed(0)


def best_ms(fn):
    fn()
    fn()
    ts = []
    start = time.perf_counter()
    while len(ts) < 400 and (len(ts) < 5 or time.perf_counter() - start < MIN_S):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return min(ts)  # best of: the least disturbed by other processes (as bench_nn.c)


def row(name, fwd, leaves, flops=0.0):
    """fwd() -> output tensor; leaves: tensors requiring grad (grads reset each step)."""
    with torch.no_grad():
        f = best_ms(fwd)
    y = fwd()
    gy = torch.randn_like(y) if y.dim() > 0 else torch.tensor(1.0)

    def fb():
        for t in leaves:
            t.grad = None
        fwd().backward(gy)

    b = best_ms(fb)
    g = "%.1f" % (flops / (b * 1e-3) * 1e-9) if flops else "-"
    print("%s\t%.4f\t%.4f\t%s" % (name, f, b, g), flush=True)


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def conv_row(name, n, cin, h, w, cout, k, s, pt, pb, pl, pr):
    x = leaf(n, cin, h, w)
    wt = leaf(cout, cin, k, k, scale=0.02)
    b = leaf(cout)
    sym = pt == pb == pl == pr
    if sym:
        fwd = lambda: F.conv2d(x, wt, b, stride=s, padding=pt)
    else:
        fwd = lambda: F.conv2d(F.pad(x, (pl, pr, pt, pb)), wt, b, stride=s)
    ho = (h + pt + pb - k) // s + 1
    wo = (w + pl + pr - k) // s + 1
    row(name, fwd, [x, wt, b], 3 * 2.0 * n * cout * cin * k * k * ho * wo)


def main():
    print("# torch %s: %d threads, mkldnn %s" % (torch.__version__, torch.get_num_threads(),
                                                torch.backends.mkldnn.is_available()))
    conv_row("conv3x3_c128_64x64", 1, 128, 64, 64, 128, 3, 1, 1, 1, 1, 1)
    conv_row("conv3x3_c256_32x32", 1, 256, 32, 32, 256, 3, 1, 1, 1, 1, 1)
    conv_row("conv3x3_c512_16x16", 1, 512, 16, 16, 512, 3, 1, 1, 1, 1, 1)
    conv_row("conv3x3_c128to256_32x32", 1, 128, 32, 32, 256, 3, 1, 1, 1, 1, 1)
    conv_row("downsample_c128_64x64", 1, 128, 64, 64, 128, 3, 2, 0, 1, 0, 1)
    conv_row("conv1x1_c256to512_16x16", 1, 256, 16, 16, 512, 1, 1, 0, 0, 0, 0)
    conv_row("conv3x3_c3to128_64x64", 1, 3, 64, 64, 128, 3, 1, 1, 1, 1, 1)
    conv_row("cnn_conv3x3_c16_32x32_b64", 64, 16, 32, 32, 16, 3, 1, 1, 1, 1, 1)
    x, wt, b = leaf(64, 32, 8, 8), leaf(32, 16, 2, 2), leaf(16)
    row("cnn_convT2x2s2_c32to16_8x8_b64", lambda: F.conv_transpose2d(x, wt, b, stride=2), [x, wt, b],
        3 * 2.0 * 64 * 32 * 8 * 8 * 16 * 4)

    x, g, bb = leaf(1, 256, 32, 32), leaf(256), leaf(256)
    row("group_norm_c256_32x32", lambda: F.group_norm(x, 32, g, bb, 1e-6), [x, g, bb])
    x = leaf(1, 256, 32, 32)
    row("swish_c256_32x32", lambda: x * torch.sigmoid(x), [x])  # taming's nonlinearity
    row("relu_c256_32x32", lambda: F.relu(x), [x])
    row("upsample2x_c256_32x32", lambda: F.interpolate(x, scale_factor=2.0, mode="nearest"), [x])
    row("avgpool2x2_c256_32x32", lambda: F.avg_pool2d(x, 2, 2), [x])
    x2 = leaf(1, 256, 32, 32)
    row("concat_2xc256_32x32", lambda: torch.cat([x, x2], dim=1), [x, x2])
    row("add_c256_32x32", lambda: x + x2, [x, x2])
    p, t = leaf(1, 3, 256, 256), torch.randn(1, 3, 256, 256)
    row("l1_loss_3x256x256", lambda: F.l1_loss(p, t), [p])
    row("mse_loss_3x256x256", lambda: F.mse_loss(p, t), [p])
    s = leaf(256, 256)
    row("softmax_256x256_rows", lambda: torch.softmax(s, dim=-1), [s])
    x, w, b = leaf(256, 1024), leaf(1024, 1024, scale=0.03), leaf(1024)
    row("linear_b256_1024to1024", lambda: F.linear(x, w, b), [x, w, b], 3 * 2.0 * 256 * 1024 * 1024)
    a, bm = leaf(8, 256, 256), leaf(8, 256, 256)
    row("bmm_8x256x256x256", lambda: torch.bmm(a, bm), [a, bm], 3 * 2.0 * 8 * 256 ** 3)

    C = 512
    x = leaf(1, C, 16, 16)
    P = {"nw": leaf(C), "nb": leaf(C)}
    for nm in ("q", "k", "v", "p"):
        P[nm + "w"] = leaf(C, C, 1, 1, scale=0.044)
        P[nm + "b"] = leaf(C)

    def attn():
        h = F.group_norm(x, 32, P["nw"], P["nb"], 1e-6)
        q = F.conv2d(h, P["qw"], P["qb"])
        k = F.conv2d(h, P["kw"], P["kb"])
        v = F.conv2d(h, P["vw"], P["vb"])
        b_, c, hh, ww = q.shape
        q = q.reshape(b_, c, hh * ww).permute(0, 2, 1)
        k = k.reshape(b_, c, hh * ww)
        w_ = torch.bmm(q, k) * (int(c) ** (-0.5))
        w_ = F.softmax(w_, dim=2)
        v = v.reshape(b_, c, hh * ww)
        h_ = torch.bmm(v, w_.permute(0, 2, 1)).reshape(b_, c, hh, ww)
        return x + F.conv2d(h_, P["pw"], P["pb"])

    fl = 4 * 2.0 * C * C * 256 + 2 * 2.0 * 256 * 256 * C
    row("attnblock_c512_16x16", attn, [x] + list(P.values()), 3 * fl)

    x = leaf(1, 256, 32, 32)
    R = {"n1w": leaf(256), "n1b": leaf(256), "w1": leaf(256, 256, 3, 3, scale=0.02), "b1": leaf(256),
         "n2w": leaf(256), "n2b": leaf(256), "w2": leaf(256, 256, 3, 3, scale=0.02), "b2": leaf(256)}

    def resblock():  # taming ResnetBlock, in == out channels, temb None, dropout 0
        h = F.group_norm(x, 32, R["n1w"], R["n1b"], 1e-6)
        h = h * torch.sigmoid(h)
        h = F.conv2d(h, R["w1"], R["b1"], padding=1)
        h = F.group_norm(h, 32, R["n2w"], R["n2b"], 1e-6)
        h = h * torch.sigmoid(h)
        h = F.conv2d(h, R["w2"], R["b2"], padding=1)
        return x + h

    row("resnetblock_c256_32x32", resblock, [x] + list(R.values()), 2 * 3 * 2.0 * 256 * 256 * 9 * 1024)


if __name__ == "__main__":
    main()
