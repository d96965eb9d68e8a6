"""quant_process_torch.py — the PyTorch side of bench/run_quant_process.sh.

    /usr/bin/python3 bench/quant_process_torch.py gen DIR CONFIG
        writes the inputs of one quantizer step as .npy files into DIR:
        x.npy (B, e_dim, H, W), E.npy (n_e, d), W.npy (d, d), b.npy (d),
        G.npy (the upstream gradient of x_q), drawn as torch_quant.py does
    /usr/bin/python3 bench/quant_process_torch.py run DIR CONFIG OUT THREADS
        the whole job of one fresh process, as `optvq quantize` does it:
        import torch, read the inputs, forward + backward of
        loss + sum(x_q * G) with the reference's VectorQuantizerSinkhorn
        (bench/torch_quant.py), write indices, x_q, loss and the gradients
        to OUT as .npy
"""
import os
import sys

import numpy as np


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode not in ("gen", "run") or len(sys.argv) != (4 if mode == "gen" else 6):
        sys.exit("usage: quant_process_torch.py gen DIR CONFIG | run DIR CONFIG OUT THREADS")
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_quant import CONFIGS, VectorQuantizerSinkhorn
    d, name = sys.argv[2], sys.argv[3]
    c = CONFIGS[name]
    common = dict(n_e=c["n_e"], e_dim=c["e_dim"], beta=0.25, use_proj=True, loss_q_type="l2",
                  num_head=c["num_head"])
    if mode == "gen":
        os.makedirs(d, exist_ok=True)
        torch.manual_seed(1234)
        q = VectorQuantizerSinkhorn(epsilon=10.0, n_iters=5, normalize_mode="all", use_prob=False, **common)
        g = torch.Generator().manual_seed(1)
        shape = (c["batch"], c["e_dim"], c["height"], c["width"])
        for fname, t in (("x", torch.randn(shape, generator=g)), ("G", torch.randn(shape, generator=g)),
                         ("E", q.embedding.weight), ("W", q.proj.weight), ("b", q.proj.bias)):
            np.save(os.path.join(d, fname + ".npy"), t.detach().numpy().astype(np.float32))
        return
    out, threads = sys.argv[4], int(sys.argv[5])
    torch.set_num_threads(threads)
    ld = lambda f: torch.from_numpy(np.load(os.path.join(d, f + ".npy")))
    q = VectorQuantizerSinkhorn(epsilon=10.0, n_iters=5, normalize_mode="all", use_prob=False, **common)
    with torch.no_grad():
        q.embedding.weight.copy_(ld("E"))
        q.proj.weight.copy_(ld("W"))
        q.proj.bias.copy_(ld("b"))
    q.train()
    x = ld("x").requires_grad_(True)
    x_q, loss, indices = q(x)
    (loss + (x_q * ld("G")).sum()).backward()
    os.makedirs(out, exist_ok=True)
    for fname, t in (("indices", indices), ("x_q", x_q), ("loss", loss), ("grad_x", x.grad),
                     ("grad_embedding", q.embedding.weight.grad), ("grad_proj_weight", q.proj.weight.grad),
                     ("grad_proj_bias", q.proj.bias.grad)):
        np.save(os.path.join(out, fname + ".npy"), t.detach().numpy())


if __name__ == "__main__":
    main()
