#!/usr/bin/python3
"""Reference values for tests/test_metrics.c (run with Debian's /usr/bin/python3).

Needs python3-torch, python3-skimage (photographs + skimage.metrics), python3-scipy
and python3-pil. pyiqa is not packaged, so its PSNR and SSIM are transcribed
below line for line from chaofengc/IQA-PyTorch:

  pyiqa/archs/psnr_arch.py   psnr(), PSNR.forward (crop_border 0)
  pyiqa/archs/ssim_arch.py   ssim(), SSIM.forward (downsample False, crop_border 0)
  pyiqa/archs/func_util.py   preprocess_rgb()
  pyiqa/utils/color_util.py  to_y_channel(), rgb2ycbcr(), rgb2yiq()
  pyiqa/matlab_utils/functions.py  fspecial(), filter2(..., 'valid')

with the settings of the paper's evaluation (zbr17/OptVQ eval.py):
  pyiqa.create_metric("psnr", test_y_channel=True, data_range=1.0, color_space="ycbcr")
  pyiqa.create_metric("ssim")   -> SSIM(downsample=False, test_y_channel=True,
                                        color_space="yiq"), data_range 255
on x = recover(x), x_rec = recover(x_rec).clamp(0, 1), recover(v) = (v + 1) / 2.

For every case it stores the pair as one float32 .npy of shape (2, C, H, W)
([0] the original, [1] the distorted image, NOT clamped: the C code clamps it)
and one line of expected values in cases.txt:

  name  psnr_pyiqa32  psnr_pyiqa64  ssim_pyiqa  psnr_skimage  ssim_skimage  cs_clipped

  psnr_pyiqa32  pyiqa on float32 tensors, as the paper ran it
  psnr_pyiqa64  the same code on float64 tensors (its float32 colour constants
                promoted to double, exactly what the C code computes)
  ssim_pyiqa    pyiqa SSIM on float32 tensors (the Y channel is formed and
                rounded in float32, the rest runs in float64 in pyiqa itself)
  psnr_skimage  skimage.metrics.peak_signal_noise_ratio on the same Y channel
                (data_range 1; no eps, so it differs from pyiqa by
                10 log10((mse + 1e-8) / mse))
  ssim_skimage  skimage.metrics.structural_similarity on the same rounded
                0..255 Y channel, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, data_range=255 (equal to pyiqa's
                up to the float32 rounding of pyiqa's window, EXCEPT that
                skimage does not clip the contrast-structure term at 0)
  cs_clipped    how many SSIM-map positions had cs < 0 (there skimage differs)

Writes tests/ref/metrics/. Deterministic (fixed seeds).
"""
import io
import math
import os
import sys

import numpy as np
import scipy.ndimage
import skimage.data
import skimage.metrics
import torch
import torch.nn.functional as F
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref", "metrics")


# ---------------------------------------------------------------- pyiqa, transcribed
def rgb2ycbcr(x):
    w = torch.tensor([[65.481, -37.797, 112.0], [128.553, -74.203, -93.786],
                      [24.966, 112.0, -18.214]]).to(x)
    b = torch.tensor([16, 128, 128]).view(1, 3, 1, 1).to(x)
    y = torch.matmul(x.permute(0, 2, 3, 1), w).permute(0, 3, 1, 2) + b
    return y / 255.0


def rgb2yiq(x):
    w = torch.tensor([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213],
                      [0.2115, -0.5227, 0.3112]]).t().to(x)
    return torch.matmul(x.permute(0, 2, 3, 1), w).permute(0, 3, 1, 2)


def to_y_channel(img, out_data_range=1.0, color_space="yiq"):
    img = rgb2yiq(img) if color_space == "yiq" else rgb2ycbcr(img)
    out = img[:, [0], :, :] * out_data_range
    if out_data_range >= 255:
        out = out - out.detach() + out.round()
    return out


def pyiqa_psnr(x, y, test_y_channel=True, data_range=1.0, eps=1e-8, color_space="ycbcr"):
    if x.shape[1] == 3 and test_y_channel:
        x = to_y_channel(x, data_range, color_space)
        y = to_y_channel(y, data_range, color_space)
    mse = torch.mean((x - y) ** 2, dim=[1, 2, 3])
    return 10 * torch.log10(data_range ** 2 / (mse + eps))


def fspecial(size, sigma, channels=1):
    m = n = (size - 1.0) / 2.0
    yy, xx = np.ogrid[-m:m + 1, -n:n + 1]
    h = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    sumh = h.sum()
    if sumh != 0:
        h /= sumh
    return torch.from_numpy(h).float().repeat(channels, 1, 1, 1)


def preprocess_rgb(x, test_y_channel, data_range=1, color_space="yiq"):
    if test_y_channel and x.shape[1] == 3:
        x = to_y_channel(x, data_range, color_space)
    else:
        x = x * data_range
    if data_range == 255:
        x = x - x.detach() + x.round()
    return x


def pyiqa_ssim_core(X, Y, data_range=255.0):
    win = fspecial(11, 1.5, X.shape[1]).to(X)
    C1 = (0.01 * data_range) ** 2
    C2 = (0.03 * data_range) ** 2
    filt = lambda v: F.conv2d(v, win, stride=1, padding=0, groups=v.shape[1])
    mu1, mu2 = filt(X), filt(Y)
    mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    s1 = filt(X * X) - mu1_sq
    s2 = filt(Y * Y) - mu2_sq
    s12 = filt(X * Y) - mu1_mu2
    cs_raw = (2 * s12 + C2) / (s1 + s2 + C2)
    cs = F.relu(cs_raw)
    ssim_map = ((2 * mu1_mu2 + C1) / (mu1_sq + mu2_sq + C1)) * cs
    return ssim_map.mean([1, 2, 3]), int((cs_raw < 0).sum())


def pyiqa_ssim_y(x):
    """SSIM.forward's preprocessing: the rounded 0..255 Y channel, float64."""
    return preprocess_rgb(x, True, 255, "yiq").to(torch.float64)


def pyiqa_ssim(x, y):
    return pyiqa_ssim_core(pyiqa_ssim_y(x), pyiqa_ssim_y(y))


# ---------------------------------------------------------------- data
def photo(name):
    return np.asarray(Image.open(os.path.join(skimage.data.data_dir, name)))


def crop(img, y0, x0, h, w):
    c = img[y0:y0 + h, x0:x0 + w]
    c = c[:, :, None] if c.ndim == 2 else c[:, :, :3]
    return np.ascontiguousarray(c.transpose(2, 0, 1))  # CHW uint8


def as_model_roundtrip(u8):
    """What eval sees for an original: u/255 -> (v - .5)/.5 -> (x + 1)/2, float32."""
    v = (u8.astype(np.float64) / 255).astype(np.float32)
    x = (v - np.float32(0.5)) / np.float32(0.5)
    return ((x + np.float32(1)) / np.float32(2)).astype(np.float32)


def noise(x, sigma, rng, clip=True):
    y = x + rng.normal(0, sigma, x.shape).astype(np.float32)
    return np.clip(y, 0, 1).astype(np.float32) if clip else y.astype(np.float32)


def blur(x, sigma):
    return np.stack([scipy.ndimage.gaussian_filter(c.astype(np.float64), sigma, mode="reflect")
                     for c in x]).astype(np.float32)


def jpeg(u8, quality):
    """Real JPEG round trip (PIL, libjpeg) of a CHW uint8 crop -> float32 [0, 1]."""
    hwc = u8.transpose(1, 2, 0)
    im = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    back = back[:, :, None] if back.ndim == 2 else back
    return (back.transpose(2, 0, 1).astype(np.float64) / 255).astype(np.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240605)
    astro, coffee, chelsea, camera = (photo(n) for n in
                                      ("astronaut.png", "coffee.png", "chelsea.png", "camera.png"))
    cases = []
    a64 = crop(astro, 40, 200, 64, 64)
    cases.append(("astronaut64_noise", as_model_roundtrip(a64), None, lambda x: noise(x, 0.05, rng)))
    c64 = crop(coffee, 120, 300, 64, 64)
    cases.append(("coffee64_blur", as_model_roundtrip(c64), None, lambda x: blur(x, 1.0)))
    ch = crop(chelsea, 100, 180, 61, 47)
    cases.append(("chelsea61x47_jpeg", as_model_roundtrip(ch), jpeg(ch, 25), None))
    cam = crop(camera, 80, 220, 61, 47)
    cases.append(("camera61x47_noise", as_model_roundtrip(cam), None, lambda x: noise(x, 0.08, rng)))
    cam64 = crop(camera, 300, 100, 64, 64)
    cases.append(("camera64_jpeg", as_model_roundtrip(cam64), jpeg(cam64, 15), None))
    cf = crop(coffee, 200, 100, 47, 61)
    # a reconstruction that overshoots [0, 1]: the C code clamps it first
    cases.append(("coffee47x61_overshoot", as_model_roundtrip(cf), None,
                  lambda x: noise(x, 0.12, rng, clip=False)))
    ast = crop(astro, 300, 300, 33, 40)
    # anti-correlated structure: the contrast-structure term goes negative
    cases.append(("astronaut33x40_inverted", as_model_roundtrip(ast), None,
                  lambda x: np.clip(1 - x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32)))
    tiny = crop(chelsea, 150, 200, 11, 11)
    cases.append(("chelsea11_quant", as_model_roundtrip(tiny), None,
                  lambda x: (np.round(x * 7) / 7).astype(np.float32)))
    # exact k/255 inputs (ties of the Y rounding are likeliest here)
    u = crop(astro, 200, 150, 24, 24)
    cases.append(("astronaut24_u8", (u.astype(np.float64) / 255).astype(np.float32), None,
                  lambda x: (np.round(blur(x, 0.7) * 255) / 255).astype(np.float32)))

    lines = []
    worst_y = 0
    for name, x, y, fn in cases:
        if y is None:
            y = fn(x)
        x = x.astype(np.float32)
        y = y.astype(np.float32)
        np.save(os.path.join(OUT, name + ".npy"), np.stack([x, y]))
        xt = torch.from_numpy(x)[None]
        yt = torch.from_numpy(y)[None].clamp(0, 1)  # the reference clamps the reconstruction
        p32 = float(pyiqa_psnr(xt, yt))
        p64 = float(pyiqa_psnr(xt.double(), yt.double()))
        s, clipped = pyiqa_ssim(xt, yt)
        s = float(s)
        # skimage cross-checks on the same Y channels
        if x.shape[0] == 3:
            yx = to_y_channel(xt.double(), 1.0, "ycbcr")[0, 0].numpy()
            yy = to_y_channel(yt.double(), 1.0, "ycbcr")[0, 0].numpy()
        else:
            yx, yy = xt[0, 0].double().numpy(), yt[0, 0].double().numpy()
        ps = skimage.metrics.peak_signal_noise_ratio(yx, yy, data_range=1.0)
        gx, gy = pyiqa_ssim_y(xt)[0, 0].numpy(), pyiqa_ssim_y(yt)[0, 0].numpy()
        ss = skimage.metrics.structural_similarity(gx, gy, gaussian_weights=True, sigma=1.5,
                                                   use_sample_covariance=False, data_range=255)
        # does a plain float32 (r*a + g*b) + b*c give torch's rounded Y? (the C code's way)
        if x.shape[0] == 3:
            for img in (x, yt[0].numpy()):
                f32 = np.float32
                yv = (img[0] * f32(0.299) + img[1] * f32(0.587)) + img[2] * f32(0.114)
                mine = np.round((yv * f32(255)).astype(np.float32))
                diff = int((mine != pyiqa_ssim_y(torch.from_numpy(img)[None])[0, 0].numpy()).sum())
                worst_y = max(worst_y, diff)
        mse = float(np.mean((yx - yy) ** 2))
        print(f"{name:26s} {str(tuple(x.shape)):13s} psnr32 {p32:.10f} psnr64 {p64:.10f} "
              f"skimage {ps:.10f} (eps-corrected {10 * math.log10(1 / (mse + 1e-8)):.10f}) "
              f"ssim {s:.12f} skimage {ss:.12f} cs<0: {clipped}")
        lines.append(f"{name} {p32!r} {p64!r} {s!r} {ps!r} {ss!r} {clipped}")
    print(f"Y-channel pixels where float32 (r*.299 + g*.587) + b*.114 rounds unlike torch: {worst_y}")
    # the Gaussian window as pyiqa builds it (float64 -> float32)
    np.save(os.path.join(OUT, "window.npy"), fspecial(11, 1.5)[0, 0].numpy())
    # identical images: pyiqa's eps gives 10 log10(1 / 1e-8) = 80 dB, SSIM exactly 1
    xt = torch.from_numpy(cases[0][1])[None]
    print("identical: psnr32", float(pyiqa_psnr(xt, xt)), "psnr64", float(pyiqa_psnr(xt.double(), xt.double())),
          "ssim", float(pyiqa_ssim(xt, xt)[0]))
    # the reference's own reconstructions of tests/ref/model/taming_small (x in [-1, 1]):
    # per-image metrics as eval.py computes them, and the mean quantization error
    tdir = os.path.join(OUT, "..", "model", "taming_small")
    tx = torch.from_numpy(np.load(os.path.join(tdir, "x.npy")))
    tr = torch.from_numpy(np.load(os.path.join(tdir, "recon.npy")))
    rx, rr = (tx + 1) / 2, ((tr + 1) / 2).clamp(0, 1)
    tp32 = pyiqa_psnr(rx, rr)
    tp64 = pyiqa_psnr(rx.double(), rr.double())
    ts = torch.stack([pyiqa_ssim(rx[i:i + 1], rr[i:i + 1])[0][0] for i in range(rx.shape[0])])
    z = np.load(os.path.join(tdir, "z.npy")).astype(np.float64)
    xq = np.load(os.path.join(tdir, "xq.npy")).astype(np.float64)
    qerr = float(np.mean((z - xq) ** 2))
    with open(os.path.join(OUT, "taming_small.txt"), "w") as f:
        f.write("# image psnr_pyiqa32 psnr_pyiqa64 ssim_pyiqa of tests/ref/model/taming_small x.npy vs recon.npy;"
                " last line: mean (z - xq)^2\n")
        for i in range(rx.shape[0]):
            f.write(f"{i} {float(tp32[i])!r} {float(tp64[i])!r} {float(ts[i])!r}\n")
        f.write(f"qerr {qerr!r}\n")
    print("taming_small:", tp64.tolist(), ts.tolist(), "qerr", qerr)
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("# name psnr_pyiqa32 psnr_pyiqa64 ssim_pyiqa psnr_skimage ssim_skimage cs_clipped\n")
        f.write("# written by tools/gen_metrics_ref.py\n")
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
