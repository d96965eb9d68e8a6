#!/usr/bin/python3
"""Writes the small, valid seed files of fuzz/corpus/<target>/.

Run from the repository root with Debian's /usr/bin/python3 (numpy, PIL and
torch are needed only here; the fuzzers and CI do not need Python):
    /usr/bin/python3 fuzz/gen_seeds.py
Some seeds are copied from tests/ref/. Every seed is a valid file that the
parser accepts (tests/test_fuzz_regressions.c checks that)."""
import collections, gzip, io, json, os, shutil, struct, zlib

import numpy as np
from PIL import Image
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = np.random.default_rng(0)


def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy(target, src, name=None):
    with open(src, "rb") as f:
        out(target, name or os.path.basename(src), f.read())


# ---- npy ----
def npy(a, version=None):
    b = io.BytesIO()
    np.lib.format.write_array(b, a, version=version, allow_pickle=False)
    return b.getvalue()

out("npy", "f32_4x8.npy", npy(rng.standard_normal((4, 8)).astype("<f4")))
out("npy", "f32_2x4x2x2.npy", npy(rng.standard_normal((2, 4, 2, 2)).astype("<f4")))
out("npy", "f64_5.npy", npy(rng.standard_normal(5)))
out("npy", "i32_2x3x2.npy", npy(np.arange(12, dtype="<i4").reshape(2, 3, 2)))
out("npy", "i64_scalar.npy", npy(np.array(7, dtype="<i8")))
out("npy", "f32_0x3.npy", npy(np.zeros((0, 3), dtype="<f4")))
out("npy", "f32_v2.npy", npy(np.ones((2, 2), dtype="<f4"), version=(2, 0)))
nan = rng.standard_normal((3, 4)).astype("<f4")
nan[1, 2] = np.nan
out("npy", "f32_nan.npy", npy(nan))


# ---- safetensors ----
def safetensors(tensors, pad_to=8):
    """tensors: list of (name, dtype string, shape, raw bytes)."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    while pad_to and len(h) % pad_to:
        h += b" "
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)

copy("safetensors", "tests/ref/weights/ref.safetensors")
f32 = rng.standard_normal((2, 3)).astype("<f4")
out("safetensors", "dtypes.safetensors", safetensors([
    ("a.f32", "F32", (2, 3), f32.tobytes()),
    ("b.f16", "F16", (3,), np.array([1, -2.5, 65504], dtype="<f2").tobytes()),
    ("c.bf16", "BF16", (2,), (np.array([1.5, -3], dtype="<f4").view("<u4") >> 16).astype("<u2").tobytes()),
    ("d.f64", "F64", (1, 2), np.array([[0.25, 1e-3]]).tobytes()),
    ("e.i64", "I64", (), np.array(5, dtype="<i8").tobytes()),
    ("f.i32", "I32", (2,), np.array([-1, 2], dtype="<i4").tobytes()),
    ("g.i16", "I16", (2,), np.array([-3, 4], dtype="<i2").tobytes()),
    ("h.i8", "I8", (3,), np.array([-1, 0, 1], dtype="i1").tobytes()),
    ("i.u8", "U8", (2,), bytes([0, 255])),
    ("j.bool", "BOOL", (2,), bytes([0, 1])),
    ("k.empty", "F32", (0, 4), b""),
]))
# an F32 tensor at an odd offset (copied, not used in place)
out("safetensors", "unaligned.safetensors", safetensors([
    ("x", "U8", (1,), b"\x07"), ("y", "F32", (2,), np.array([1, 2], dtype="<f4").tobytes())], pad_to=0))
out("safetensors", "nan.safetensors", safetensors([
    ("quantize.embedding.weight", "F32", (2, 2), np.array([[1, np.nan], [0, 1]], dtype="<f4").tobytes())]))


# ---- pth (torch.save zip archives) ----
def pth(obj):
    b = io.BytesIO()
    torch.save(obj, b)
    return b.getvalue()

for f in ("plain.pth", "deflated.pth", "ckpt.pth"):
    copy("pth", "tests/ref/weights/" + f)
# legacy (non-zip) torch.save files (tools/gen_fid_lpips_ref.py)
copy("pth", "tests/ref/weights/legacy.pth")
copy("pth", "tests/ref/lpips_alex/alex_lin.pth", "legacy_alex_lin.pth")
torch.manual_seed(0)
w = torch.randn(3, 4)
sd = collections.OrderedDict()
sd["w"] = w
sd["w_t"] = w.t()                       # non-contiguous view of the same storage
sd["half"] = torch.randn(2, 2).half()
sd["bf16"] = torch.randn(3).bfloat16()
sd["steps"] = torch.tensor(3)           # int64 scalar
sd["mask"] = torch.tensor([True, False])
sd["slice"] = torch.arange(10.0)[2:7:2]
out("pth", "views.pth", pth(sd))
out("pth", "nested.pth", pth({"model": {"p": torch.nn.Parameter(torch.ones(2))}, "epoch": 3, "lr": 0.5,
                              "names": ["a", "b"], "flag": None}))


# ---- config (YAML and JSON) ----
for d in ("plain", "plain_vqbase", "taming_small", "f16"):
    copy("config", "tests/ref/model/%s/config.yaml" % d, d + ".yaml")
copy("config", "tests/ref/model/taming_small/hf/config.json", "hf.json")
out("config", "plain.json", json.dumps({"model": {"autoencoder": {
    "target": "optvq.models.vqgan.VQModel", "params": {
        "use_connector": True,
        "encoder": {"target": "x.PlainCNNEncoder", "params": {"in_dim": 1}},
        "decoder": {"target": "x.PlainCNNDecoder", "params": {"out_dim": 1}},
        "quantize": {"target": "x.VectorQuantizerSinkhorn", "params": {
            "n_e": 16, "e_dim": 8, "num_head": 2, "epsilon": 10, "n_iters": 5,
            "normalize_mode": "all", "loss_q_type": "l2", "use_prob": False}}}}}}, indent=1).encode())


# ---- idx ----
def idx(a):
    a = np.asarray(a, dtype=np.uint8)
    return bytes([0, 0, 8, a.ndim]) + b"".join(struct.pack(">I", n) for n in a.shape) + a.tobytes()

images = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
out("idx", "images.idx", idx(images))
out("idx", "labels.idx", idx(np.arange(10) % 10))
out("idx", "images.idx.gz", gzip.compress(idx(images), mtime=0))
out("idx", "matrix.idx", idx(rng.integers(0, 256, (2, 3), dtype=np.uint8)))


# ---- png ----
def png(img, **kw):
    b = io.BytesIO()
    img.save(b, format="PNG", **kw)
    return b.getvalue()

def png_raw(width, height, color_type, depth, rows, interlace=0, extra=b""):
    """A PNG written by hand (for layouts PIL does not write); rows: filtered scanlines."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(rows)) + \
        chunk(b"IEND", b"")

for f in ("la.png", "palette.png", "rgba.png", "rand3.png"):
    copy("png", "tests/ref/image/" + f)
out("png", "grey8.png", png(Image.fromarray(rng.integers(0, 256, (4, 5), dtype=np.uint8), "L")))
out("png", "rgb8.png", png(Image.fromarray(rng.integers(0, 256, (3, 7, 3), dtype=np.uint8), "RGB")))
out("png", "grey16.png", png(Image.fromarray(rng.integers(0, 65536, (3, 3)).astype(np.uint16))))
out("png", "bw1.png", png(Image.fromarray(rng.integers(0, 2, (5, 9)).astype(bool))))
# 16-bit RGB with a filter byte per row, and an Adam7-interlaced 8-bit grey 5x5
rows = b"".join(b"\x00" + rng.integers(0, 256, 2 * 3 * 2, dtype=np.uint8).tobytes() for _ in range(2))
out("png", "rgb16.png", png_raw(2, 2, 2, 16, rows))
def adam7_rows(w, h):
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    data = b""
    for x0, y0, dx, dy in passes:
        pw, ph = len(range(x0, w, dx)), len(range(y0, h, dy))
        if pw and ph:
            data += b"".join(b"\x00" + bytes((7 * r + c) & 255 for c in range(pw)) for r in range(ph))
    return data
out("png", "interlaced.png", png_raw(5, 5, 0, 8, adam7_rows(5, 5), interlace=1))


# ---- jpeg ----
def jpeg(img, **kw):
    b = io.BytesIO()
    img.save(b, format="JPEG", **kw)
    return b.getvalue()

rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8), "RGB")
out("jpeg", "rgb420.jpg", jpeg(rgb, quality=80))
out("jpeg", "rgb444.jpg", jpeg(rgb, quality=90, subsampling=0))
out("jpeg", "progressive.jpg", jpeg(rgb, quality=75, progressive=True))
out("jpeg", "grey.jpg", jpeg(rgb.convert("L"), quality=75))
out("jpeg", "cmyk.jpg", jpeg(rgb.convert("CMYK"), quality=75))
out("jpeg", "tiny.jpg", jpeg(Image.new("RGB", (1, 1), (200, 10, 30))))
print("seeds written to", ROOT)
