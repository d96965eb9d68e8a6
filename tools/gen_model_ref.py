#!/usr/bin/python3
"""Reference outputs for the OptVQ models (docs/behaviour.md §2), written by our own
PyTorch transcription of the reference's VQModel, plain CNN and taming
Encoder/Decoder.

    /usr/bin/python3 tools/gen_model_ref.py [OUT_DIR]     (default tests/ref/model)

For each case OUT_DIR/<case>/ holds:
  config.yaml                 the reference YAML form of the model config
  hf/config.json              the Hugging Face VQModelHF form (taming cases)
  hf/model.safetensors        weights with the 'model.' prefix and extra
                              'model.loss.*' tensors that inference ignores
  model.pth                   torch.save({"model": state_dict, "epoch": 1})
  x.npy                       input images in [-1, 1]
  z.npy                       quantizer input (after quant_conv)
  indices.npy, tie_margin.npy codes and the relative gap of each choice
  xq.npy, recon.npy           quantized latent and reconstruction

The 'f16' case (the full ImageNet f16 h4 architecture at 256x256) ships no
weights: every tensor is filled by det_fill(name) (a splitmix64 stream keyed by
the tensor name), which the C test reproduces, so the repo carries only the
outputs.

Every shipped config (configs/*/*.yaml) is covered as well, with det_fill
weights and det_uniform("input") images (so again only outputs are stored):
  mnist_optvq, mnist_vqbase, cifar10_optvq, cifar10_vqbase
                   the plain-CNN configs at their full size, built from the
                   shipped file itself (the C test loads the same file)
  f16_h8_small, vqbase_f16_h4_small, vqgan_small, f32_h8_small
                   the taming configs reduced by reduce_taming(): ch 32,
                   z_channels/e_dim 64, 512 codes and a smaller resolution,
                   keeping the levels (ch_mult), the level that holds attention,
                   num_res_blocks, the heads, use_proj and the quantizer class;
                   config.yaml in the folder is the reduced config
  shipped.txt      one line per shipped config at full size: path, tensor
                   count, parameter count and fnv1a64 of the sorted
                   "name:shape" lines of the PyTorch state dict

    /usr/bin/python3 tools/gen_model_ref.py OUT_DIR CASE...   writes only those
                                          cases ('shipped' for shipped.txt)
"""
import glob
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_quant_ref import QuantizerRef, tie_margin  # noqa: E402

torch.set_num_threads(2)

# ---------------------------------------------------------------- the models


def Normalize(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


def swish(x):
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = Normalize(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = Normalize(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.cin, self.cout = cin, cout
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if self.cin != self.cout:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = Normalize(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        q = q.reshape(b, c, hh * ww).permute(0, 2, 1)
        k = k.reshape(b, c, hh * ww)
        w = torch.bmm(q, k) * (int(c) ** (-0.5))
        w = F.softmax(w, dim=2)
        v = v.reshape(b, c, hh * ww)
        h = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(h)


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution, z_channels,
                 double_z=False, **_):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        res, in_mult = resolution, (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        for i, m in enumerate(ch_mult):
            lvl = nn.Module()
            lvl.block, lvl.attn = nn.ModuleList(), nn.ModuleList()
            bin_ = ch * in_mult[i]
            for _b in range(num_res_blocks):
                lvl.block.append(ResnetBlock(bin_, ch * m))
                bin_ = ch * m
                if res in attn_resolutions:
                    lvl.attn.append(AttnBlock(bin_))
            if i != len(ch_mult) - 1:
                lvl.downsample = Down(bin_)
                res //= 2
            self.down.append(lvl)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(bin_, bin_)
        self.mid.attn_1 = AttnBlock(bin_)
        self.mid.block_2 = ResnetBlock(bin_, bin_)
        self.norm_out = Normalize(bin_)
        self.conv_out = nn.Conv2d(bin_, 2 * z_channels if double_z else z_channels, 3, 1, 1)
        self.n = len(ch_mult)

    def forward(self, x):
        h = self.conv_in(x)
        for i, lvl in enumerate(self.down):
            for b, blk in enumerate(lvl.block):
                h = blk(h)
                if len(lvl.attn) > 0:
                    h = lvl.attn[b](h)
            if i != self.n - 1:
                h = lvl.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, **_):
        super().__init__()
        n = len(ch_mult)
        bin_ = ch * ch_mult[-1]
        res = resolution // 2 ** (n - 1)
        self.conv_in = nn.Conv2d(z_channels, bin_, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(bin_, bin_)
        self.mid.attn_1 = AttnBlock(bin_)
        self.mid.block_2 = ResnetBlock(bin_, bin_)
        self.up = nn.ModuleList()
        for i in reversed(range(n)):
            lvl = nn.Module()
            lvl.block, lvl.attn = nn.ModuleList(), nn.ModuleList()
            for _b in range(num_res_blocks + 1):
                lvl.block.append(ResnetBlock(bin_, ch * ch_mult[i]))
                bin_ = ch * ch_mult[i]
                if res in attn_resolutions:
                    lvl.attn.append(AttnBlock(bin_))
            if i != 0:
                lvl.upsample = Up(bin_)
                res *= 2
            self.up.insert(0, lvl)
        self.norm_out = Normalize(bin_)
        self.conv_out = nn.Conv2d(bin_, out_ch, 3, 1, 1)
        self.n = n

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(self.n)):
            lvl = self.up[i]
            for b, blk in enumerate(lvl.block):
                h = blk(h)
                if len(lvl.attn) > 0:
                    h = lvl.attn[b](h)
            if i != 0:
                h = lvl.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class PlainEncoder(nn.Module):
    def __init__(self, in_dim):
        super().__init__()
        self.in_fc = nn.Conv2d(in_dim, 16, 3, 1, 1)
        self.down1 = nn.Conv2d(16, 16, 2, 2)
        self.conv1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.down2 = nn.Conv2d(16, 16, 2, 2)
        self.conv2 = nn.Conv2d(16, 32, 3, 1, 1)
        self.out_fc = nn.Conv2d(32, 32, 3, 1, 1)

    def forward(self, x):
        x = F.relu(self.in_fc(x))
        x = F.relu(self.conv1(self.down1(x)))
        x = F.relu(self.conv2(self.down2(x)))
        return self.out_fc(x)


class PlainDecoder(nn.Module):
    def __init__(self, out_dim):
        super().__init__()
        self.in_fc = nn.Conv2d(32, 32, 3, 1, 1)
        self.up1 = nn.ConvTranspose2d(32, 16, 2, 2)
        self.conv1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.up2 = nn.ConvTranspose2d(16, 16, 2, 2)
        self.conv2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.out_fc = nn.Conv2d(16, out_dim, 3, 1, 1)

    def forward(self, x):
        x = self.conv1(self.up1(F.relu(self.in_fc(x))))
        x = self.conv2(self.up2(F.relu(x)))
        return self.out_fc(F.relu(x))


class VQModel(nn.Module):
    def __init__(self, encoder, decoder, qcfg, enc_dim, dec_dim):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.quantize = QuantizerRef(qcfg)
        self.quant_conv = nn.Conv2d(enc_dim, qcfg["e_dim"], 1)
        self.post_quant_conv = nn.Conv2d(qcfg["e_dim"], dec_dim, 1)

    def forward(self, x):
        z = self.quant_conv(self.encoder(x))
        xq, _, idx, score = self.quantize(z)
        return z, xq, idx, score, self.decoder(self.post_quant_conv(xq))

# ---------------------------------------------------------------- weights


MASK = (1 << 64) - 1


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for c in s.encode():
        h = ((h ^ c) * 0x100000001B3) & MASK
    return h


def det_uniform(name, n):
    """n values in [-1, 1): splitmix64(fnv1a64(name) + i + 1) >> 40, / 2^23 - 1."""
    with np.errstate(over="ignore"):
        z = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(fnv1a64(name))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float64) / float(1 << 23) - 1.0).astype(np.float32)


def det_fill(model):
    """Deterministic parameters: conv/linear weights and biases U(+-1/sqrt(fan_in)),
    GroupNorm weight 1 + U(+-0.1), bias U(+-0.1), embedding U(+-sqrt(3)),
    projection U(+-sqrt(3/d))."""
    with torch.no_grad():
        for name, p in model.state_dict().items():
            u = torch.from_numpy(det_uniform(name, p.numel())).view(p.shape)
            if ".norm" in name:
                p.copy_(1.0 + 0.1 * u if name.endswith("weight") else 0.1 * u)
            elif name == "quantize.embedding.weight":
                p.copy_(u * math.sqrt(3.0))
            elif name.startswith("quantize.proj"):
                p.copy_(u * math.sqrt(3.0 / p.shape[-1]))
            else:
                w = model.state_dict()[name.rsplit(".", 1)[0] + ".weight"]
                fan_in = w.shape[1] * (w.shape[2] * w.shape[3] if w.dim() == 4 else 1)
                p.copy_(u / math.sqrt(fan_in))


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name].detach().numpy().astype(np.float32))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)

# ---------------------------------------------------------------- cases


def yaml_config(case):
    q = case["quantize"]
    qt = "VectorQuantizerSinkhorn" if case["sinkhorn"] else "VectorQuantizer"
    lines = ["model:", "  autoencoder:", "    target: optvq.models.vqgan.VQModel", "    params:",
             "      use_connector: true"]
    for part in ("encoder", "decoder"):
        lines.append(f"      {part}:")
        if case["arch"] == "plain":
            cls = "PlainCNNEncoder" if part == "encoder" else "PlainCNNDecoder"
            key = "in_dim" if part == "encoder" else "out_dim"
            lines += [f"        target: optvq.models.backbone.simple_cnn.{cls}", "        params:",
                      f"          {key}: {case['channels']}"]
        else:
            cls = "Encoder" if part == "encoder" else "Decoder"
            lines += [f"        target: optvq.models.backbone.diffusion.{cls}", "        params:"]
            for k, v in case["taming"].items():
                lines.append(f"          {k}: {json.dumps(v)}")
    lines += ["      quantize:", f"        target: optvq.models.quantizer.{qt}", "        params:"]
    for k, v in q.items():
        lines.append(f"          {k}: {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}")
    lines += ["      loss:", "        target: optvq.losses.aeloss.AELoss", "        params:",
              "          loss_l1_weight: 1.0"]
    return "\n".join(lines) + "\n"


def build(case):
    q = dict(case["quantize"])
    qcfg = {"n_e": q["n_e"], "e_dim": q["e_dim"], "num_head": q["num_head"], "use_proj": q["use_proj"],
            "beta": q["beta"], "loss": q.get("loss_q_type", "ce"),
            "assign": "sinkhorn" if case["sinkhorn"] else "nearest",
            "normalize": q.get("normalize_mode", "all"), "epsilon": q.get("epsilon", 10.0),
            "n_iters": q.get("n_iters", 5)}
    if case["arch"] == "plain":
        enc, dec, ed, dd = PlainEncoder(case["channels"]), PlainDecoder(case["channels"]), 32, 32
    else:
        t = case["taming"]
        enc, dec = Encoder(**t), Decoder(**t)
        ed = 2 * t["z_channels"] if t.get("double_z") else t["z_channels"]
        dd = t["z_channels"]
    return VQModel(enc, dec, qcfg, ed, dd)


def save_npy(folder, name, t):
    a = t.detach().numpy() if torch.is_tensor(t) else t
    np.save(os.path.join(folder, name), np.ascontiguousarray(a))


def write_case(out, name, case, det=False, seed=0, with_config=True):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    model = build(case).eval()
    if det:
        det_fill(model)
    if with_config:
        with open(os.path.join(folder, "config.yaml"), "w") as f:
            f.write(yaml_config(case))
    B, C, R = case["batch"], case["channels"], case["res"]
    if det:
        x = torch.from_numpy(det_uniform("input", B * C * R * R)).view(B, C, R, R)
    else:
        x = torch.rand(B, C, R, R) * 2 - 1
    with torch.no_grad():
        z, xq, idx, score, recon = model(x)
    sd = model.state_dict()
    if not det:
        torch.save({"model": sd, "epoch": 1}, os.path.join(folder, "model.pth"))
        save_npy(folder, "x.npy", x)
    if case["arch"] == "taming" and not det:
        hf = os.path.join(folder, "hf")
        os.makedirs(hf, exist_ok=True)
        t = dict(case["taming"])
        cfg = {"encoder": t, "decoder": t, "quantize": dict(case["quantize"]),
               "quantize_type": "optvq" if case["sinkhorn"] else "basevq", "use_connector": True,
               "loss": {"disc_start": 100}}
        with open(os.path.join(hf, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        tensors = {"model." + k: v for k, v in sd.items()}
        tensors["model.loss.logvar"] = torch.zeros(())
        tensors["model.loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)
        write_safetensors(os.path.join(hf, "model.safetensors"), tensors)
    save_npy(folder, "z.npy", z)
    save_npy(folder, "indices.npy", idx.to(torch.int64))
    save_npy(folder, "tie_margin.npy", tie_margin(score).float())
    save_npy(folder, "xq.npy", xq)
    save_npy(folder, "recon.npy", recon)
    print(f"{name}: x {tuple(x.shape)} z {tuple(z.shape)} recon {tuple(recon.shape)} "
          f"min tie margin {tie_margin(score).min().item():.2e}")


# ---------------------------------------------------------------- shipped configs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_yaml(path):
    import yaml  # python3-yaml; only needed for the shipped configs
    with open(path) as f:
        return yaml.safe_load(f)


def case_from_config(cfg):
    """The case dict of a reference-style config, built by target class name."""
    node = cfg.get("model", cfg)
    node = node.get("autoencoder", node)
    assert node["target"].rsplit(".", 1)[-1] == "VQModel", node["target"]
    p = node["params"]
    assert p.get("use_connector", True), "the reference models here all use the connectors"
    enc, dec = p["encoder"], p["decoder"]
    ecls, dcls = enc["target"].rsplit(".", 1)[-1], dec["target"].rsplit(".", 1)[-1]
    qcls = p["quantize"]["target"].rsplit(".", 1)[-1]
    assert qcls in ("VectorQuantizerSinkhorn", "VectorQuantizer"), qcls
    q = {k: v for k, v in p["quantize"]["params"].items() if v is not None}
    q.setdefault("num_head", 1)
    q.setdefault("use_proj", True)
    q.setdefault("beta", 1.0)
    case = {"sinkhorn": qcls == "VectorQuantizerSinkhorn", "quantize": q}
    if ecls == "PlainCNNEncoder":
        assert dcls == "PlainCNNDecoder", dcls
        case.update(arch="plain", channels=enc["params"].get("in_dim", 3), res=32)
        assert dec["params"].get("out_dim", 3) == case["channels"]
    else:
        assert (ecls, dcls) == ("Encoder", "Decoder"), (ecls, dcls)
        assert enc["params"] == dec["params"], "the shipped configs give encoder and decoder the same params"
        t = dict(enc["params"])
        case.update(arch="taming", channels=t["in_channels"], res=t["resolution"], taming=t)
    return case


def reduce_taming(case, res):
    """The same structure at resolution `res`: ch 32, z_channels/e_dim 64, 512
    codes; attention stays at the same level (its resolution scales with res)."""
    t = dict(case["taming"])
    scale = t["resolution"] // res
    assert scale * res == t["resolution"] and all(a % scale == 0 for a in t["attn_resolutions"])
    t.update(ch=32, z_channels=64, resolution=res, attn_resolutions=[a // scale for a in t["attn_resolutions"]])
    q = dict(case["quantize"], n_e=512, e_dim=64)
    return dict(case, taming=t, quantize=q, res=res)


def state_dict_shapes(model):
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def shipped_line(rel):
    case = case_from_config(load_yaml(os.path.join(REPO, rel)))
    with torch.no_grad():
        shapes = state_dict_shapes(build(case))
    text = "".join(f"{k}:{','.join(str(d) for d in shapes[k])}\n" for k in sorted(shapes))
    n_params = sum(math.prod(v) for v in shapes.values())
    return f"{rel} {len(shapes)} {n_params} {fnv1a64(text):016x}"


def write_shipped_txt(out):
    lines = [shipped_line(rel) for rel in shipped_configs()]
    with open(os.path.join(out, "shipped.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def shipped_configs():
    return sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "*", "*.yaml")))


# full-size plain-CNN configs: case name -> shipped file
SHIPPED_PLAIN = {"mnist_optvq": "configs/mnist/optvq.yaml", "mnist_vqbase": "configs/mnist/vqbase.yaml",
                 "cifar10_optvq": "configs/cifar10/optvq.yaml", "cifar10_vqbase": "configs/cifar10/vqbase.yaml"}
# reduced taming configs: case name -> (shipped file, resolution, batch)
SHIPPED_TAMING = {"f16_h8_small": ("configs/imagenet/optvq_256_f16_h8.yaml", 64, 1),
                  "vqbase_f16_h4_small": ("configs/imagenet/vqbase_256_f16_h4.yaml", 64, 1),
                  "vqgan_small": ("configs/imagenet/vqgan.yaml", 64, 1),
                  "f32_h8_small": ("configs/imagenet/optvq_256_f32_h8.yaml", 128, 1)}


def write_shipped_case(out, name):
    if name in SHIPPED_PLAIN:
        case = case_from_config(load_yaml(os.path.join(REPO, SHIPPED_PLAIN[name])))
        case["batch"] = 2
        write_case(out, name, case, det=True, with_config=False)
    else:
        rel, res, batch = SHIPPED_TAMING[name]
        case = reduce_taming(case_from_config(load_yaml(os.path.join(REPO, rel))), res)
        case["batch"] = batch
        write_case(out, name, case, det=True)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/model"
    only = sys.argv[2:]
    if only:
        for name in only:
            if name == "shipped":
                write_shipped_txt(out)
            else:
                write_shipped_case(out, name)
        return
    plain_q = {"n_e": 64, "e_dim": 8, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
               "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}
    write_case(out, "plain", {"arch": "plain", "channels": 1, "batch": 3, "res": 32, "sinkhorn": True,
                              "quantize": plain_q}, seed=1)
    nq = {"n_e": 32, "e_dim": 8, "beta": 0.25, "use_proj": True, "num_head": 1}
    write_case(out, "plain_vqbase", {"arch": "plain", "channels": 3, "batch": 2, "res": 32, "sinkhorn": False,
                                     "quantize": nq}, seed=2)
    small = {"double_z": False, "z_channels": 32, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32,
             "ch_mult": [1, 1], "num_res_blocks": 1, "attn_resolutions": [8], "dropout": 0.0}
    tq = {"n_e": 48, "e_dim": 16, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
          "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}
    write_case(out, "taming_small", {"arch": "taming", "channels": 3, "batch": 2, "res": 16, "sinkhorn": True,
                                     "taming": small, "quantize": tq}, seed=3)
    f16 = {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
           "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0}
    fq = {"n_e": 16384, "e_dim": 256, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
          "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}
    write_case(out, "f16", {"arch": "taming", "channels": 3, "batch": 1, "res": 256, "sinkhorn": True,
                            "taming": f16, "quantize": fq}, det=True)
    for name in list(SHIPPED_PLAIN) + list(SHIPPED_TAMING):
        write_shipped_case(out, name)
    write_shipped_txt(out)


if __name__ == "__main__":
    main()
