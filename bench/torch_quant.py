"""torch_quant.py — the PyTorch side of bench/run_quant.sh.

A faithful re-implementation of the reference quantizers (zbr17/OptVQ,
src/optvq/models/quantizer.py): VectorQuantizer (nearest code) and
VectorQuantizerSinkhorn, with the reference's code kept as is except the
logging hooks (L.log / L.GET_STATS, statistics only) and torch.distributed
(one process). Used with use_prob=False (argmax), as every shipped config.

    /usr/bin/python3 bench/torch_quant.py CONFIG ASSIGN OP REPS THREADS
      CONFIG  mnist | imagenet      ASSIGN  sinkhorn | nearest
      OP      fwd | fwdbwd          (fwdbwd: gradients of loss + sum(x_q * G)
                                     wrt x, embedding, proj weight and bias)

Runs one warm-up then REPS timed repetitions in this fresh process and prints
one line:  RESULT key=value ...  with the median/min ms and the process's peak
RSS (resource.getrusage ru_maxrss) after the runs, and before the first step.
"""
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

CONFIGS = {  # x (batch, e_dim, height, width), heads, codes — as bench_common.h
    "mnist": dict(batch=1024, e_dim=8, height=8, width=8, num_head=4, n_e=1024),
    "imagenet": dict(batch=8, e_dim=256, height=16, width=16, num_head=4, n_e=16384),
}


class VectorQuantizer(nn.Module):
    def __init__(self, n_e: int = 1024, e_dim: int = 128,
                 beta: float = 1.0, use_norm: bool = False,
                 use_proj: bool = True, fix_codes: bool = False,
                 loss_q_type: str = "ce",
                 num_head: int = 1,
                 start_quantize_steps: int = None):
        super(VectorQuantizer, self).__init__()
        self.n_e = n_e
        self.e_dim = e_dim
        self.beta = beta
        self.loss_q_type = loss_q_type
        self.num_head = num_head
        self.start_quantize_steps = start_quantize_steps
        self.code_dim = self.e_dim // self.num_head

        self.norm = lambda x: F.normalize(x, p=2.0, dim=-1, eps=1e-6) if use_norm else x
        assert not use_norm
        self.use_proj = use_proj

        self.embedding = nn.Embedding(num_embeddings=n_e, embedding_dim=self.code_dim)
        if use_proj:
            self.proj = nn.Linear(self.code_dim, self.code_dim)
            torch.nn.init.normal_(self.proj.weight, std=self.code_dim ** -0.5)
        if fix_codes:
            self.embedding.weight.requires_grad = False

    def reshape_input(self, x: Tensor):
        if x.ndim == 4:
            _, C, H, W = x.size()
            x = x.permute(0, 2, 3, 1).contiguous().view(-1, H * W, C)
            return x, {"size": (H, W)}
        elif x.ndim == 3:
            return x, None
        else:
            raise ValueError("Invalid input shape!")

    def recover_output(self, x: Tensor, info):
        if info is not None:
            H, W = info["size"]
            if x.ndim == 3:
                C = x.size(2)
                return x.view(-1, H, W, C).permute(0, 3, 1, 2).contiguous()
            elif x.ndim == 2:
                return x.view(-1, H, W)
            else:
                raise ValueError("Invalid input shape!")
        else:
            return x

    def quantize_input(self, query, reference):
        query2ref = torch.cdist(query, reference, p=2.0)  # (B1, B2)
        indices = torch.argmin(query2ref, dim=-1)  # (B1,)
        nearest_ref = reference[indices]  # (B1, C)
        return indices, nearest_ref, query2ref

    def compute_codebook_loss(self, query, indices, nearest_ref, beta: float, query2ref):
        if self.loss_q_type == "l2":
            loss = torch.mean((query - nearest_ref.detach()).pow(2)) + \
                   torch.mean((nearest_ref - query.detach()).pow(2)) * beta
        elif self.loss_q_type == "l1":
            loss = torch.mean((query - nearest_ref.detach()).abs()) + \
                   torch.mean((nearest_ref - query.detach()).abs()) * beta
        elif self.loss_q_type == "ce":
            loss = F.cross_entropy(- query2ref, indices)
        return loss

    def compute_quantized_output(self, x, x_q):
        # start_quantize_steps is None in every shipped config
        return x + (x_q - x).detach()

    def forward(self, x: Tensor):
        x = x.float()
        x, info = self.reshape_input(x)
        B, T, C = x.size()
        x = x.view(-1, C)  # (B * T, C)
        embed = self.proj(self.embedding.weight) if self.use_proj else self.embedding.weight

        if self.num_head > 1:
            x = x.view(-1, self.code_dim)  # (B * T * nH, dC)

        x, embed = self.norm(x), self.norm(embed)

        indices, x_q, query2ref = self.quantize_input(x, embed)
        loss = self.compute_codebook_loss(
            query=x, indices=indices, nearest_ref=x_q,
            beta=self.beta, query2ref=query2ref
        )

        x_q = self.compute_quantized_output(x, x_q).view(B, T, C)
        indices = indices.view(B, T, self.num_head)

        x_q = self.recover_output(x_q, info)
        indices = self.recover_output(indices, info)
        return x_q, loss, indices


def sinkhorn(cost: Tensor, n_iters: int = 3, epsilon: float = 1, is_distributed: bool = False):
    Q = torch.exp(- cost * epsilon).t()  # (K, B)
    B = Q.size(1)
    K = Q.size(0)

    sum_Q = torch.sum(Q)
    Q /= (sum_Q + 1e-8)

    for _ in range(n_iters):
        sum_of_rows = torch.sum(Q, dim=1, keepdim=True)
        Q /= (sum_of_rows + 1e-8)
        Q /= K

        Q /= (torch.sum(Q, dim=0, keepdim=True) + 1e-8)
        Q /= B

    Q *= B
    return Q.t()  # (B, K)


class VectorQuantizerSinkhorn(VectorQuantizer):
    def __init__(self, epsilon: float = 10.0, n_iters: int = 5,
                 normalize_mode: str = "all", use_prob: bool = True,
                 *args, **kwargs):
        super(VectorQuantizerSinkhorn, self).__init__(*args, **kwargs)
        self.epsilon = epsilon
        self.n_iters = n_iters
        self.normalize_mode = normalize_mode
        self.use_prob = use_prob

    def normalize(self, A, dim, mode="all"):
        if mode == "all":
            A = (A - A.mean()) / (A.std() + 1e-6)
            A = A - A.min()
        elif mode == "dim":
            A = A / math.sqrt(dim)
        elif mode == "null":
            pass
        return A

    def quantize_input(self, query, reference):
        query2ref = torch.cdist(query, reference, p=2.0)  # (B1, B2)

        with torch.no_grad():
            normalized_cost = self.normalize(query2ref, dim=reference.size(1), mode=self.normalize_mode)
            Q = sinkhorn(normalized_cost, n_iters=self.n_iters, epsilon=self.epsilon, is_distributed=False)

        if self.use_prob:
            max_q_id = torch.argmax(Q, dim=-1)
            Q[torch.arange(Q.size(0)), max_q_id] += 1e-8
            indices = torch.multinomial(Q, num_samples=1).squeeze()
        else:
            indices = torch.argmax(Q, dim=-1)
        nearest_ref = reference[indices]
        return indices, nearest_ref, query2ref


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: torch_quant.py mnist|imagenet sinkhorn|nearest fwd|fwdbwd REPS THREADS")
    cfg_name, assign, op, reps, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    c = CONFIGS[cfg_name]
    assert assign in ("sinkhorn", "nearest") and op in ("fwd", "fwdbwd") and reps >= 1
    torch.set_num_threads(threads)
    torch.manual_seed(1234)
    common = dict(n_e=c["n_e"], e_dim=c["e_dim"], beta=0.25, use_proj=True, loss_q_type="l2",
                  num_head=c["num_head"])
    if assign == "sinkhorn":
        q = VectorQuantizerSinkhorn(epsilon=10.0, n_iters=5, normalize_mode="all", use_prob=False, **common)
    else:
        q = VectorQuantizer(**common)
    q.train()
    shape = (c["batch"], c["e_dim"], c["height"], c["width"])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g).requires_grad_(True)
    G = torch.randn(shape, generator=g)
    base = peak_mib()

    bwd = op == "fwdbwd"
    times = []
    for r in range(reps + 1):  # r = 0: warm-up
        t0 = time.perf_counter()
        if bwd:
            q.zero_grad(set_to_none=True)
            x.grad = None
        x_q, loss, indices = q(x)
        if bwd:
            (loss + (x_q * G).sum()).backward()
        t1 = time.perf_counter()
        if r > 0:
            times.append((t1 - t0) * 1e3)
        del x_q
    peak = peak_mib()
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    used = int(torch.unique(indices).numel())
    print(f"RESULT impl=torch config={cfg_name} assign={assign} op={op} reps={reps} threads={torch.get_num_threads()} "
          f"median_ms={med:.3f} min_ms={times[0]:.3f} peak_mib={peak:.1f} base_mib={base:.1f} "
          f"codes_used={used} loss={loss.item():.6g}")


if __name__ == "__main__":
    main()
