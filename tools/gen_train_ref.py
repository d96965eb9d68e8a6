#!/usr/bin/python3
"""A few optimizer steps of the reference training recipe (docs/behaviour.md §3) on
OptVQ models, for tests/test_train.c.

    /usr/bin/python3 tools/gen_train_ref.py [plain|taming|all] [OUT_ROOT]
        (default: all, tests/ref; writes OUT_ROOT/train and OUT_ROOT/train_taming)

Recipe, as the reference's setup_optimizers_ae + _forward_backward:
  AdamW param groups: weight decay on Conv2d/ConvTranspose2d/Linear weights of
  the encoder, decoder and connectors, and of the quantizer (its Linear proj),
  none on biases and the embedding; lr = learning_rate * batch (the
  quantizer's times mul_learning_rate); eps 1e-7; OneCycleLR(pct_start=0.01,
  cos) stepped every step (beta1 cycles 0.95 -> 0.85); clip_grad_norm_(1.0);
  loss = l1 + l2 + q (AELoss with loss_p_weight 0).

plain (OUT_ROOT/train): config.yaml, init.pth ({"model": state_dict}),
batch_<k>.npy, the per-step losses (losses.npy: (steps, 4) total, l1, l2, q)
and every parameter after the last step (final/<name>.npy).

taming (OUT_ROOT/train_taming): a tiny taming VQGAN (ch 32, ch_mult [1, 2], one
res block, attention at 8x8, 16x16 images, batch 2) whose ~740k parameters
would not fit the repo, so
  - the initial parameters come from det_init (a splitmix64 stream keyed by
    the tensor name, scaled in float64 and rounded once), which the C test
    reproduces exactly; no init file;
  - every parameter after the last step (final/<name>.npy) and its gradient at
    step 0 before clipping (grad0/<name>.npy) are stored as a strided sample:
    the flattened tensor's elements 0, s, 2s, ... with s = ceil(numel / 256);
  - last_layer_grad.npy: torch.autograd.grad(l1 + l2, decoder.conv_out.weight)
    at step 0 (the adaptive GAN weight's input), in full.
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_model_ref import build, det_uniform, yaml_config  # noqa: E402
from gen_quant_ref import tie_margin  # noqa: E402

torch.set_num_threads(1)

STEPS = 4
TOTAL_STEPS = 10
BATCH = 16
LR_PER_SAMPLE = 1e-3
WEIGHT_DECAY = 0.05


def decays(module):
    ids = set()
    for sub in module.modules():
        if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            for name, p in sub.named_parameters():
                if "weight" in name:
                    ids.add(id(p))
    return ids


def optimizer(model, lr, total_steps=TOTAL_STEPS):
    """The reference's AdamW weight-decay groups and OneCycleLR (the bench scripts use it too)."""
    groups = []
    for mods in ([model.encoder, model.decoder, model.quant_conv, model.post_quant_conv], [model.quantize]):
        wd_ids = set().union(*[decays(m) for m in mods])
        params = [p for m in mods for p in m.parameters()]
        groups.append({"params": [p for p in params if id(p) in wd_ids], "lr": lr, "eps": 1e-7,
                       "weight_decay": WEIGHT_DECAY})
        groups.append({"params": [p for p in params if id(p) not in wd_ids], "lr": lr, "eps": 1e-7,
                       "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr] * 4, total_steps=total_steps, pct_start=0.01,
                                                anneal_strategy="cos")
    return opt, sched


def recipe_losses(model, x):
    """One forward of the recipe: (loss, l1, l2, q, z, indices); loss = l1 + l2 + q."""
    z = model.quant_conv(model.encoder(x))
    xq, qloss, idx, _ = model.quantize(z)
    rec = model.decoder(model.post_quant_conv(xq))
    l1 = (rec - x).abs().mean()
    l2 = (rec - x).pow(2).mean()
    return l1 + l2 + qloss, l1, l2, qloss, z, idx


def write_config(out, case, batch):
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(yaml_config(case))
        f.write(f"train:\n  epochs: 1\n  seed: 7\n  learning_rate: {LR_PER_SAMPLE}\n  mul_learning_rate: 1.0\n"
                f"  weight_decay: {WEIGHT_DECAY}\ndata:\n  batch_size: {batch}\n")


def plain(out):
    os.makedirs(os.path.join(out, "final"), exist_ok=True)
    q = {"n_e": 64, "e_dim": 8, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
         "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}
    case = {"arch": "plain", "channels": 1, "batch": BATCH, "res": 32, "sinkhorn": True, "quantize": q}
    torch.manual_seed(7)
    model = build(case)
    write_config(out, case, BATCH)
    torch.save({"model": model.state_dict()}, os.path.join(out, "init.pth"))

    opt, sched = optimizer(model, LR_PER_SAMPLE * BATCH)
    losses = []
    g = torch.Generator().manual_seed(11)
    for k in range(STEPS):
        x = torch.rand(BATCH, 1, 32, 32, generator=g) * 2 - 1
        np.save(os.path.join(out, f"batch_{k}.npy"), x.numpy())
        loss, l1, l2, qloss, _, _ = recipe_losses(model, x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        sched.step()
        losses.append([loss.item(), l1.item(), l2.item(), qloss.item()])
        print(f"step {k}: loss {loss.item():.6f} l1 {l1.item():.6f} l2 {l2.item():.6f} q {qloss.item():.6f}")
    np.save(os.path.join(out, "losses.npy"), np.array(losses, dtype=np.float64))
    for name, p in model.state_dict().items():
        np.save(os.path.join(out, "final", name + ".npy"), p.detach().numpy())


# ---------------------------------------------------------------- taming

TAMING_BATCH = 2
TAMING_RES = 16
SAMPLE = 256  # elements kept per tensor (strided)


def det_init(model):
    """Deterministic parameters, computed in float64 and rounded once (the C
    test's det_init does the same): conv weights and biases U(+-1/sqrt(fan_in)),
    GroupNorm weight 1 + 0.1 U, bias 0.1 U, embedding sqrt(3) U, projection
    sqrt(3/d) U, with U = det_uniform(name) in [-1, 1)."""
    sd = model.state_dict()
    with torch.no_grad():
        for name, p in sd.items():
            u = det_uniform(name, p.numel()).astype(np.float64)
            if ".norm" in name:
                v = 1.0 + 0.1 * u if name.endswith(".weight") else 0.1 * u
            elif name == "quantize.embedding.weight":
                v = u * math.sqrt(3.0)
            elif name.startswith("quantize.proj"):
                v = u * math.sqrt(3.0 / sd["quantize.proj.weight"].shape[1])
            else:
                w = sd[name.rsplit(".", 1)[0] + ".weight"]
                fan_in = w.shape[1] * (w.shape[2] * w.shape[3] if w.dim() == 4 else 1)
                v = u / math.sqrt(fan_in)
            p.copy_(torch.from_numpy(v.astype(np.float32)).view(p.shape))


def sample(t):
    flat = t.detach().reshape(-1).numpy()
    stride = (flat.size + SAMPLE - 1) // SAMPLE
    return np.ascontiguousarray(flat[::stride])


def taming(out):
    for sub in ("final", "grad0"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    t = {"double_z": False, "z_channels": 32, "resolution": TAMING_RES, "in_channels": 3, "out_ch": 3, "ch": 32,
         "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [8], "dropout": 0.0}
    q = {"n_e": 64, "e_dim": 16, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
         "normalize_mode": "all", "use_prob": False, "num_head": 2, "loss_q_type": "l2"}
    case = {"arch": "taming", "channels": 3, "batch": TAMING_BATCH, "res": TAMING_RES, "sinkhorn": True,
            "taming": t, "quantize": q}
    model = build(case)
    det_init(model)
    write_config(out, case, TAMING_BATCH)
    named = dict(model.named_parameters())
    opt, sched = optimizer(model, LR_PER_SAMPLE * TAMING_BATCH)
    losses = []
    g = torch.Generator().manual_seed(13)
    for k in range(STEPS):
        x = torch.rand(TAMING_BATCH, 3, TAMING_RES, TAMING_RES, generator=g) * 2 - 1
        np.save(os.path.join(out, f"batch_{k}.npy"), x.numpy())
        z = model.quant_conv(model.encoder(x))
        xq, qloss, _, score = model.quantize(z)
        rec = model.decoder(model.post_quant_conv(xq))
        l1 = (rec - x).abs().mean()
        l2 = (rec - x).pow(2).mean()
        loss = l1 + l2 + qloss
        if k == 0:
            gw = torch.autograd.grad(l1 + l2, model.decoder.conv_out.weight, retain_graph=True)[0]
            np.save(os.path.join(out, "last_layer_grad.npy"), gw.numpy())
        loss.backward()
        if k == 0:
            for name, p in named.items():
                np.save(os.path.join(out, "grad0", name + ".npy"), sample(p.grad))
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        sched.step()
        losses.append([loss.item(), l1.item(), l2.item(), qloss.item()])
        print(f"step {k}: loss {loss.item():.6f} l1 {l1.item():.6f} l2 {l2.item():.6f} q {qloss.item():.6f} "
              f"grad norm {gn.item():.4f} min tie margin {tie_margin(score).min().item():.2e}")
    np.save(os.path.join(out, "losses.npy"), np.array(losses, dtype=np.float64))
    for name, p in model.state_dict().items():
        np.save(os.path.join(out, "final", name + ".npy"), sample(p))


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    root = sys.argv[2] if len(sys.argv) > 2 else "tests/ref"
    if which not in ("plain", "taming", "all"):
        sys.exit(f"usage: {sys.argv[0]} [plain|taming|all] [OUT_ROOT]")
    if which in ("plain", "all"):
        plain(os.path.join(root, "train"))
    if which in ("taming", "all"):
        taming(os.path.join(root, "train_taming"))


if __name__ == "__main__":
    main()
