#!/usr/bin/python3
"""A few optimizer steps of the reference training recipe (design.md §3) on the
plain CNN OptVQ model, for tests/test_train.c.

    /usr/bin/python3 tools/gen_train_ref.py [OUT_DIR]     (default tests/ref/train)

Recipe, as the reference's setup_optimizers_ae + _forward_backward:
  AdamW param groups: weight decay on Conv2d/ConvTranspose2d/Linear weights of
  the encoder, decoder and connectors, and of the quantizer (its Linear proj),
  none on biases and the embedding; lr = learning_rate * batch (the
  quantizer's times mul_learning_rate); eps 1e-7; OneCycleLR(pct_start=0.01,
  cos) stepped every step (beta1 cycles 0.95 -> 0.85); clip_grad_norm_(1.0);
  loss = l1 + l2 + q (AELoss with loss_p_weight 0).
Writes config.yaml, init.pth ({"model": state_dict}), batch_<k>.npy, the
per-step losses (losses.npy: (steps, 4) total, l1, l2, q) and every parameter
after the last step (final/<name>.npy).
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_model_ref import build, yaml_config  # noqa: E402

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


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/train"
    os.makedirs(os.path.join(out, "final"), exist_ok=True)
    q = {"n_e": 64, "e_dim": 8, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
         "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}
    case = {"arch": "plain", "channels": 1, "batch": BATCH, "res": 32, "sinkhorn": True, "quantize": q}
    torch.manual_seed(7)
    model = build(case)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(yaml_config(case))
        f.write(f"train:\n  epochs: 1\n  seed: 7\n  learning_rate: {LR_PER_SAMPLE}\n  mul_learning_rate: 1.0\n"
                f"  weight_decay: {WEIGHT_DECAY}\ndata:\n  batch_size: {BATCH}\n")
    torch.save({"model": model.state_dict()}, os.path.join(out, "init.pth"))

    lr = LR_PER_SAMPLE * BATCH
    groups = []
    for mods in ([model.encoder, model.decoder, model.quant_conv, model.post_quant_conv], [model.quantize]):
        wd_ids = set().union(*[decays(m) for m in mods])
        params = [p for m in mods for p in m.parameters()]
        groups.append({"params": [p for p in params if id(p) in wd_ids], "lr": lr, "eps": 1e-7,
                       "weight_decay": WEIGHT_DECAY})
        groups.append({"params": [p for p in params if id(p) not in wd_ids], "lr": lr, "eps": 1e-7,
                       "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr] * 4, total_steps=TOTAL_STEPS, pct_start=0.01,
                                                anneal_strategy="cos")
    losses = []
    g = torch.Generator().manual_seed(11)
    for k in range(STEPS):
        x = torch.rand(BATCH, 1, 32, 32, generator=g) * 2 - 1
        np.save(os.path.join(out, f"batch_{k}.npy"), x.numpy())
        z = model.quant_conv(model.encoder(x))
        xq, qloss, _, _ = model.quantize(z)
        rec = model.decoder(model.post_quant_conv(xq))
        l1 = (rec - x).abs().mean()
        l2 = (rec - x).pow(2).mean()
        loss = l1 + l2 + qloss
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


if __name__ == "__main__":
    main()
