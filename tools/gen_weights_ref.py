#!/usr/bin/python3
"""Reference files for the weights readers (tests/test_weights.c).

Writes tests/ref/weights/:
  ckpt.pth          torch.save({"model": sd, "epoch": 3, "optimizer": {...}})
  plain.pth         torch.save(sd)
  deflated.pth      plain.pth re-zipped with deflate (the zlib path)
  ref.safetensors   written by hand (8-byte header length, JSON, data): F32/F16/BF16/F64
  expected/<name>.npy   float32 values every reader must produce, exactly
  manifest.txt      "<set> <name> <ndim> <dims...>" per tensor; sets: pth, st
  evil_global.pth   a torch-layout zip whose pickle calls os.system (must be refused)
  evil_getattr.pth  ... builtins.getattr(__import__("os"), "system") (must be refused)
  trunc_pickle.pth  a valid zip holding a truncated data.pkl
  crc_corrupt.pth   plain.pth with one byte of tensor data flipped (CRC mismatch)

The state dict covers float32, float16, bfloat16 and float64 storages, a
non-contiguous (transposed) tensor, a strided column slice, a tensor with a
storage offset, two tensors sharing one storage, a 0-d scalar, an empty
tensor, an nn.Parameter and an int64 buffer (converted to float32).
Run: /usr/bin/python3 tools/gen_weights_ref.py   (deterministic)
"""
import collections
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref", "weights")


def state_dict():
    g = torch.Generator().manual_seed(1234)
    r = lambda *s: torch.randn(*s, generator=g)
    sd = collections.OrderedDict()
    sd["encoder.conv_in.weight"] = r(4, 3, 3, 3)
    sd["encoder.conv_in.bias"] = r(4)
    sd["half.weight"] = r(3, 5).half()
    sd["bf16.weight"] = r(2, 7).bfloat16()
    sd["double.weight"] = r(2, 2).double()
    sd["transposed"] = r(3, 5).t()                 # (5, 3), stride (1, 5)
    sd["half_transposed"] = r(4, 2).half().t()     # (2, 4) float16, non-contiguous
    sd["slice"] = r(6, 4)[2:5]                     # storage offset 8
    sd["columns"] = r(4, 6)[:, 1:5:2]              # (4, 2), stride (6, 2), offset 1
    big = r(10)
    sd["shared_a"] = big[:4]                       # two views of one storage
    sd["shared_b"] = big[4:].view(2, 3)
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(r(3))
    sd["loss.disc.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    # subnormal, inf and signed zero in half precision
    sd["half.special"] = torch.tensor([6e-8, -6.1e-5, 65504.0, float("inf"), -0.0, 1.0], dtype=torch.float16)
    return sd


def safetensors_bytes(tensors):
    """The safetensors format by hand: names sorted, header padded to 8 bytes with spaces."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}
    header = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def torch_layout_zip(path, pkl_bytes, extra=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl_bytes)
        for name, data in extra:
            z.writestr(name, data)
        z.writestr("archive/version", b"3\n")


class Evil:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def main():
    os.makedirs(os.path.join(OUT, "expected"), exist_ok=True)
    sd = state_dict()
    manifest = []

    def expect(kind, name, t):
        arr = t.detach().float().contiguous().numpy().astype(np.float32)
        np.save(os.path.join(OUT, "expected", name + ".npy"), arr)
        manifest.append(" ".join([kind, name, str(arr.ndim)] + [str(d) for d in arr.shape]))

    for name, t in sd.items():
        expect("pth", name, t)
    torch.save({"model": sd, "epoch": 3,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7,
                                                             "params": [0, 1, 2], "amsgrad": False, "foreach": None}]}},
               os.path.join(OUT, "ckpt.pth"))
    torch.save(sd, os.path.join(OUT, "plain.pth"))
    with zipfile.ZipFile(os.path.join(OUT, "plain.pth")) as src, \
            zipfile.ZipFile(os.path.join(OUT, "deflated.pth"), "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))

    st = collections.OrderedDict()
    g = torch.Generator().manual_seed(99)
    st["model.encoder.conv_in.weight"] = torch.randn(2, 3, 1, 1, generator=g)
    st["model.encoder.norm.bias"] = torch.randn(5, generator=g).half()
    st["model.decoder.conv_out.weight"] = torch.randn(3, 4, generator=g).bfloat16()
    st["model.quantize.embedding.weight"] = torch.randn(4, 2, generator=g).double()
    st["model.loss.logvar"] = torch.zeros(())
    st["model.empty"] = torch.zeros(0)
    for name, t in st.items():
        expect("st", name, t)
    with open(os.path.join(OUT, "ref.safetensors"), "wb") as f:
        f.write(safetensors_bytes(st))

    # hostile checkpoints: torch's own layout around a pickle that is not a state dict
    torch_layout_zip(os.path.join(OUT, "evil_global.pth"), pickle.dumps({"x": Evil(os.system, ("echo pwned",))}, 2))
    torch_layout_zip(os.path.join(OUT, "evil_getattr.pth"),
                     pickle.dumps({"x": Evil(getattr, (Evil(__import__, ("os",)), "system"))}, 2))
    good = zipfile.ZipFile(os.path.join(OUT, "plain.pth"))
    pkl = [n for n in good.namelist() if n.endswith("/data.pkl")][0]
    data = [(n.replace(n.split("/")[0], "archive", 1), good.read(n)) for n in good.namelist() if "/data/" in n]
    torch_layout_zip(os.path.join(OUT, "trunc_pickle.pth"), good.read(pkl)[: len(good.read(pkl)) // 2], data)
    raw = bytearray(open(os.path.join(OUT, "plain.pth"), "rb").read())
    info = good.getinfo([n for n in good.namelist() if n.endswith("/data/0")][0])
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    at = info.header_offset + 30 + name_len + extra_len + 5
    raw[at] ^= 0x40
    open(os.path.join(OUT, "crc_corrupt.pth"), "wb").write(raw)

    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
