#!/usr/bin/python3
"""PyTorch side of bench/run_mpi.sh: the reference recipe for the Fashion-MNIST
OptVQ config (bench/train_torch.py's model, AdamW groups, OneCycleLR,
clipping, l1 + l2 + q) under DistributedDataParallel on CPU (gloo), NPROC
processes of THREADS threads, BATCH images per process, with the reference's
distributed Sinkhorn (the total mass, the per-code sums and N all-reduced).
Prints "torch SECONDS_PER_STEP STEPS" from process 0 (the first step is a
warm-up; with NPROC 1 no process group is made).

    mpi_torch.py NPROC THREADS BATCH STEPS
"""
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import gen_quant_ref  # noqa: E402
from gen_model_ref import build  # noqa: E402
from gen_train_ref import optimizer, recipe_losses  # noqa: E402
from train_torch import load  # noqa: E402


def sinkhorn_distributed(cost, n_iters, epsilon, exp=torch.exp):
    """The reference's sinkhorn(..., is_distributed=True): sums over all processes."""
    plan_t = exp(-cost * epsilon).t()
    n_codes = plan_t.shape[0]
    n_vec = torch.tensor([float(plan_t.shape[1])])
    dist.all_reduce(n_vec)
    total = torch.sum(plan_t)
    dist.all_reduce(total)
    plan_t /= total + 1e-8
    for _ in range(n_iters):
        per_code = torch.sum(plan_t, dim=1, keepdim=True)
        dist.all_reduce(per_code)
        plan_t /= per_code + 1e-8
        plan_t /= n_codes
        per_vec = torch.sum(plan_t, dim=0, keepdim=True)
        plan_t /= per_vec + 1e-8
        plan_t /= n_vec
    plan_t *= n_vec
    return plan_t.t()


class Recipe(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return recipe_losses(self.model, x)[0]


def worker(rank, nproc, threads, batch, steps, port, out):
    torch.set_num_threads(threads)
    if nproc > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=nproc)
        gen_quant_ref.sinkhorn_plan = sinkhorn_distributed
    torch.manual_seed(0)
    q = {"n_e": 1024, "e_dim": 8, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
         "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}
    model = build({"arch": "plain", "channels": 1, "batch": batch, "res": 32, "sinkhorn": True, "quantize": q})
    net = torch.nn.parallel.DistributedDataParallel(Recipe(model)) if nproc > 1 else Recipe(model)
    x_all = load(batch * nproc * steps)
    opt, sched = optimizer(model, 4.5e-6 * batch * nproc, total_steps=steps + 1)
    times = []
    for s in range(steps):
        xb = x_all[(s * nproc + rank) * batch:(s * nproc + rank + 1) * batch]
        t0 = time.perf_counter()
        loss = net(xb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        sched.step()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        out.put(sum(times[1:]) / max(1, len(times) - 1))
    if nproc > 1:
        dist.destroy_process_group()


def main():
    nproc, threads, batch, steps = (int(a) for a in sys.argv[1:5])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, nproc, threads, batch, steps, port, out)) for r in range(nproc)]
    for p in procs:
        p.start()
    per = out.get()
    for p in procs:
        p.join()
    print(f"torch {per:.4f} {steps}")


if __name__ == "__main__":
    main()
