#!/usr/bin/python3
"""Reference states for the quantizer parity test (tests/test_quant_parity.c).

Run with Debian's interpreter, which has python3-torch 1.13:

    /usr/bin/python3 tools/gen_quant_ref.py [--out tests/ref/quant] [--verify quantizer.py]

The quantizer of docs/behaviour.md §1 is written out below in PyTorch, mirroring
the reference quantizer (zbr17/OptVQ, src/optvq/models/quantizer.py) operation
by operation: torch.cdist distances, the normalisation modes, Sinkhorn-Knopp on
the transposed (n_e, N) matrix in float32 with the reference's order of
in-place divisions, argmax (first maximum) / argmin, the l2/l1/ce losses and the
straight-through output x + (x_q - x).detach().

Each case becomes a folder <out>/<case>/ holding:
  config.txt            "key value" lines: n_e e_dim num_head assign normalize
                        loss beta epsilon n_iters use_proj  ('#' lines: notes)
  x.npy                 (B, C, H, W) float32   [(N, C) for the 'flat' case]
  embedding.npy         (n_e, d)               quantize.embedding.weight
  proj_weight.npy       (d, d)                 quantize.proj.weight (use_proj 1)
  proj_bias.npy         (d,)                   quantize.proj.bias   (use_proj 1)
  grad_out.npy          G, shape of x_q
  indices.npy           (B, h, H, W) int64     [(N, h) for 'flat']
  x_q.npy               shape of x
  loss.npy              () float32
  grad_x.npy, grad_embedding.npy, grad_proj_weight.npy, grad_proj_bias.npy
                        gradients of loss + sum(x_q * G)
  tie_margin.npy        (N,) float32, vectors in (b, y, x, head) order: the
                        relative gap (s1 - s2) / max(|s1|, |s2|) between the best
                        and second-best score of the row used for the choice
                        (the Sinkhorn plan row P for sinkhorn, -D for nearest);
                        0 for an exact tie (e.g. a row of zeros).

Cases: sinkhorn x normalize {all, dim, null} x loss {l2, l1, ce} x heads {1, 4}
x proj {0, 1}; nearest x loss x heads x proj (normalize is written but unused);
B=2, H=3, W=5, e_dim 8 (1 head) or 16 (4 heads), n_e drawn in 10..40. x and the
codebook are N(0, 0.45^2) so that exp(-eps*D2) stays a normal float32 for every
entry in every mode (no zeros, no denormals; the script prints the smallest
exponent per case). Two more:
  underflow_null  null mode built so that exp(-eps*D) is exactly 0 for 57% of
                  the entries and 10 of the 30 rows are all zeros (expected index
                  0 there, first maximum); see underflow_inputs(). Its config.txt
                  lists the expected indices.
  flat            x of shape (N, C) = (37, 12), 2 heads: the C API's 2-D input,
                  computed as (N, C, 1, 1); indices written as (N, h). (The
                  reference module itself accepts only 3-D/4-D input.)

--verify runs the real reference VectorQuantizerSinkhorn / VectorQuantizer
(with use_prob=False; its logger import is stubbed) on every case and checks
that it gives bit-identical outputs and gradients.

The script is deterministic (fixed seeds, one thread).
"""
import argparse
import importlib.util
import math
import os
import shutil
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FLT_MIN = float(np.finfo(np.float32).tiny)


# --------------------------------------------------------------------------- #
# The quantizer                                                               #
# --------------------------------------------------------------------------- #

def normalize_cost(dist, code_dim, mode):
    """Step 4 of docs/behaviour.md §1: rescale the distance matrix before Sinkhorn."""
    if mode == "all":
        z = (dist - dist.mean()) / (dist.std() + 1e-6)  # unbiased std
        return z - z.min()
    if mode == "dim":
        return dist / math.sqrt(code_dim)
    if mode == "null":
        return dist
    raise ValueError(mode)


def sinkhorn_plan(cost, n_iters, epsilon, exp=torch.exp):
    """Entropic OT plan (N, n_e) in float32, same op order as the reference:
    the work happens in place on the transposed (n_e, N) view."""
    plan_t = exp(-cost * epsilon).t()          # (n_e, N)
    n_codes, n_vec = plan_t.shape
    plan_t /= torch.sum(plan_t) + 1e-8
    for _ in range(n_iters):
        per_code = torch.sum(plan_t, dim=1, keepdim=True)   # (n_e, 1)
        plan_t /= per_code + 1e-8
        plan_t /= n_codes
        per_vec = torch.sum(plan_t, dim=0, keepdim=True)    # (1, N)
        plan_t /= per_vec + 1e-8
        plan_t /= n_vec
    plan_t *= n_vec
    return plan_t.t()                          # (N, n_e)


def exp_jitter(seed):
    """torch.exp with every denormal result moved up or down by one unit in the
    last place at random: another libm's exp may round them differently."""
    rng = np.random.default_rng(seed)

    def f(t):
        e = torch.exp(t).numpy()
        den = (e > 0) & (e < FLT_MIN)
        up = rng.random(e.shape) < 0.5
        moved = np.where(up, np.nextafter(e, np.float32(1)), np.nextafter(e, np.float32(0)))
        return torch.from_numpy(np.where(den, moved, e).astype(np.float32))
    return f


def exp_f64(t):
    """exp evaluated in float64 and rounded once to float32 (what a correctly
    rounded libm expf gives); used to find choices that hinge on denormals."""
    return torch.exp(t.double()).float()


class QuantizerRef(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg["e_dim"] // cfg["num_head"]
        self.code_dim = d
        self.embedding = nn.Embedding(cfg["n_e"], d)
        self.proj = nn.Linear(d, d) if cfg["use_proj"] else None
        if self.proj is not None:  # the reference's override of nn.Linear's default
            torch.nn.init.normal_(self.proj.weight, std=d ** -0.5)

    def codebook(self):
        w = self.embedding.weight
        return self.proj(w) if self.proj is not None else w

    def forward(self, x, exp=torch.exp):
        """x (B, C, H, W) -> x_q (B, C, H, W), loss (), indices (B, h, H, W),
        score (N, n_e) used for the choice."""
        cfg = self.cfg
        B, C, H, W = x.shape
        h, d = cfg["num_head"], self.code_dim
        rows = x.permute(0, 2, 3, 1).contiguous().view(-1, d)  # (N, d): (b, y, x, head)
        code = self.codebook()                                 # (n_e, d)
        dist = torch.cdist(rows, code, p=2.0)                  # (N, n_e)
        with torch.no_grad():
            if cfg["assign"] == "sinkhorn":
                cost = normalize_cost(dist, d, cfg["normalize"])
                score = sinkhorn_plan(cost, cfg["n_iters"], cfg["epsilon"], exp)
                idx = torch.argmax(score, dim=-1)
            else:
                score = -dist
                idx = torch.argmin(dist, dim=-1)
        chosen = code[idx]                                     # (N, d)
        beta = cfg["beta"]
        if cfg["loss"] == "l2":
            loss = torch.mean((rows - chosen.detach()).pow(2)) + \
                torch.mean((chosen - rows.detach()).pow(2)) * beta
        elif cfg["loss"] == "l1":
            loss = torch.mean((rows - chosen.detach()).abs()) + \
                torch.mean((chosen - rows.detach()).abs()) * beta
        else:
            loss = F.cross_entropy(-dist, idx)
        out = rows + (chosen - rows).detach()
        x_q = out.view(B, H, W, C).permute(0, 3, 1, 2).contiguous()
        indices = idx.view(B, H, W, h).permute(0, 3, 1, 2).contiguous()
        return x_q, loss, indices, score.detach()


def tie_margin(score):
    top = torch.topk(score.double(), 2, dim=-1).values  # (N, 2), descending
    s1, s2 = top[:, 0], top[:, 1]
    den = torch.maximum(s1.abs(), s2.abs())
    gap = torch.where(den > 0, (s1 - s2) / torch.where(den > 0, den, torch.ones_like(den)),
                      torch.zeros_like(den))
    return gap.float()


# --------------------------------------------------------------------------- #
# Cases                                                                       #
# --------------------------------------------------------------------------- #

def make_cases():
    cases = []
    for norm in ("all", "dim", "null"):
        for loss in ("l2", "l1", "ce"):
            for heads in (1, 4):
                for proj in (0, 1):
                    cases.append(dict(name=f"sinkhorn_{norm}_{loss}_h{heads}_p{proj}",
                                      assign="sinkhorn", normalize=norm, loss=loss,
                                      num_head=heads, use_proj=proj))
    for loss in ("l2", "l1", "ce"):
        for heads in (1, 4):
            for proj in (0, 1):
                cases.append(dict(name=f"nearest_{loss}_h{heads}_p{proj}", assign="nearest",
                                  normalize="all", loss=loss, num_head=heads, use_proj=proj))
    # exp(-eps * D) underflows to 0 for many entries (null mode); built so that
    # no choice depends on a denormal: see underflow_inputs.
    cases.append(dict(name="underflow_null", assign="sinkhorn", normalize="null", loss="l2",
                      num_head=1, use_proj=0, e_dim=8, n_e=23, layout="underflow"))
    # 2-D input (N, C), two heads
    cases.append(dict(name="flat", assign="sinkhorn", normalize="all", loss="l2", num_head=2,
                      use_proj=1, e_dim=12, n_e=17, flat_n=37))
    return cases


def fill_config(case, rng):
    cfg = dict(case)
    cfg.setdefault("e_dim", 8 if cfg["num_head"] == 1 else 16)
    cfg.setdefault("n_e", int(rng.integers(10, 41)))
    cfg.setdefault("scale", 0.45)
    cfg.update(beta=0.25, epsilon=10.0, n_iters=5)
    return cfg


def underflow_inputs(cfg, g):
    """Codebook and x for the underflow case (null mode, eps 10: exp(-10 D) is 0
    once D > ~10.4 and denormal for D in ~(8.7, 10.4)).
      - 15 'near' codes N(0,1); 8 'far' codes at norm 40: their columns of
        exp(-eps*D) are exactly 0, so Sinkhorn never gives them mass;
      - 20 vectors = a near code + N(0, 0.3^2) noise: their rows have normal
        entries for the near codes;
      - 10 vectors at norm 20, more than 10.5 from every code: rows of exact
        zeros, where argmax gives index 0.
    Every entry that could win an argmax is a normal float32, so any faithful
    float32 implementation reproduces the indices whatever its exp."""
    n_e, d = cfg["n_e"], cfg["e_dim"]
    n_near = n_e - 8
    E = torch.randn(n_e, d, generator=g)
    far = torch.randn(n_e - n_near, d, generator=g)
    E[n_near:] = far / far.norm(dim=1, keepdim=True) * 40
    n_vec = 2 * 3 * 5
    is_far = torch.zeros(n_vec, dtype=torch.bool)
    is_far[torch.randperm(n_vec, generator=g)[:10]] = True
    rows = torch.empty(n_vec, d)
    for i in range(n_vec):
        if is_far[i]:
            while True:
                v = torch.randn(d, generator=g)
                v = v / v.norm() * 20
                if float(torch.cdist(v.view(1, d), E).min()) > 10.5:
                    break
        else:
            k = int(torch.randint(n_near, (1,), generator=g))
            v = E[k] + 0.3 * torch.randn(d, generator=g)
        rows[i] = v
    x = rows.view(2, 3, 5, d).permute(0, 3, 1, 2).contiguous()
    return E, x


def build_inputs(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = QuantizerRef(cfg)
    d = model.code_dim
    s = cfg["scale"]
    if cfg.get("layout") == "underflow":
        E, x = underflow_inputs(cfg, g)
        with torch.no_grad():
            model.embedding.weight.copy_(E)
        return model, x
    with torch.no_grad():
        model.embedding.weight.copy_(torch.randn(cfg["n_e"], d, generator=g) * s)
        if model.proj is not None:
            model.proj.weight.copy_(torch.randn(d, d, generator=g) * d ** -0.5)
            model.proj.bias.copy_((torch.rand(d, generator=g) * 2 - 1) * d ** -0.5 * s)
    if "flat_n" in cfg:
        x = torch.randn(cfg["flat_n"], cfg["e_dim"], generator=g) * s
    else:
        x = torch.randn(2, cfg["e_dim"], 3, 5, generator=g) * s
    return model, x


def run_case(model, x, G, exp=torch.exp):
    """Forward + backward of loss + sum(x_q * G). x may be (N, C) (flat)."""
    model.zero_grad(set_to_none=False)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    flat = x.dim() == 2
    xin = x.clone().requires_grad_(True)
    x4 = xin.view(x.shape[0], x.shape[1], 1, 1) if flat else xin
    x_q, loss, indices, score = model(x4, exp=exp)
    total = loss + torch.sum(x_q * G.view_as(x_q))
    total.backward()
    if flat:
        x_q = x_q.view(x.shape)
        indices = indices.view(x.shape[0], -1)
    return dict(x_q=x_q.detach(), loss=loss.detach(), indices=indices, score=score,
                grad_x=xin.grad.detach(),
                grad_embedding=model.embedding.weight.grad.detach().clone(),
                grad_proj_weight=None if model.proj is None else model.proj.weight.grad.detach().clone(),
                grad_proj_bias=None if model.proj is None else model.proj.bias.grad.detach().clone())


def save(folder, name, t):
    a = t.numpy() if isinstance(t, torch.Tensor) else t
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    np.save(os.path.join(folder, name + ".npy"), np.array(a, order="C"))


def exp_stats(model, x, cfg):
    """Smallest exp argument, number of zero / denormal entries of exp(-eps*D2)."""
    with torch.no_grad():
        d = model.code_dim
        rows = (x if x.dim() == 2 else x.permute(0, 2, 3, 1)).contiguous().view(-1, d)
        dist = torch.cdist(rows, model.codebook(), p=2.0)
        cost = normalize_cost(dist, d, cfg["normalize"])
        arg = -cost * cfg["epsilon"]
        e = torch.exp(arg)
        zeros = int((e == 0).sum())
        denorm = int(((e > 0) & (e < FLT_MIN)).sum())
        zero_rows = int((e.max(dim=1).values == 0).sum())
        return float(arg.min()), zeros, denorm, zero_rows, e.numel(), e


def write_case(out_dir, cfg, seed):
    model, x = build_inputs(cfg, seed)
    g = torch.Generator().manual_seed(seed + 7919)
    G = torch.randn(x.shape, generator=g)
    r = run_case(model, x, G)
    folder = os.path.join(out_dir, cfg["name"])
    os.makedirs(folder)
    notes = []
    if cfg["assign"] == "sinkhorn":
        amin, zeros, denorm, zero_rows, total, e = exp_stats(model, x, cfg)
        notes.append(f"# exp(-eps*D2): min argument {amin:.2f}; {zeros}/{total} entries are 0, "
                     f"{denorm} denormal; {zero_rows} rows all zero")
    margin = tie_margin(r["score"])
    if cfg["name"] == "underflow_null":
        # Choices that hinge on how denormal exp values are rounded would not be
        # reproducible by another exp implementation: count the choices that
        # change with a correctly rounded exp (glibc's expf is, in this range)
        # or with denormals jittered by +-1 ulp; the case is chosen to have none.
        flat_idx = r["indices"].permute(0, 2, 3, 1).reshape(-1)
        changed = torch.zeros_like(flat_idx, dtype=torch.bool)
        for alt in [exp_f64] + [exp_jitter(k) for k in range(20)]:
            r2 = run_case(model, x, G, exp=alt)
            changed |= r2["indices"].permute(0, 2, 3, 1).reshape(-1) != flat_idx
        fragile = int(changed.sum())
        zero_row = (e.max(dim=1).values == 0)
        picked = e.gather(1, flat_idx.view(-1, 1)).view(-1)
        on_denormal = int(((picked > 0) & (picked < FLT_MIN)).sum())
        notes.append(f"# {on_denormal} choices fall on a denormal exp(-eps*D2) entry")
        notes.append(f"# {int(zero_row.sum())} vectors have a row of exact zeros in P: reference "
                     f"index 0 (argmax takes the first maximum), tie_margin 0")
        notes.append(f"# {fragile} choices change when exp is correctly rounded or its "
                     f"denormal results move by 1 ulp")
        notes.append("# expected indices (b, y, x) order: " +
                     " ".join(str(int(v)) for v in flat_idx))
        cfg["_fragile"] = fragile
    keys = ["n_e", "e_dim", "num_head", "assign", "normalize", "loss", "beta", "epsilon",
            "n_iters", "use_proj"]
    with open(os.path.join(folder, "config.txt"), "w") as f:
        for k in keys:
            v = cfg[k]
            f.write(f"{k} {v:g}\n" if isinstance(v, float) else f"{k} {v}\n")
        for n in notes:
            f.write(n + "\n")
    save(folder, "x", x)
    save(folder, "embedding", model.embedding.weight.detach())
    if model.proj is not None:
        save(folder, "proj_weight", model.proj.weight.detach())
        save(folder, "proj_bias", model.proj.bias.detach())
    save(folder, "grad_out", G)
    save(folder, "indices", r["indices"].to(torch.int64))
    save(folder, "x_q", r["x_q"])
    save(folder, "loss", r["loss"].reshape(()))
    save(folder, "grad_x", r["grad_x"])
    save(folder, "grad_embedding", r["grad_embedding"])
    if model.proj is not None:
        save(folder, "grad_proj_weight", r["grad_proj_weight"])
        save(folder, "grad_proj_bias", r["grad_proj_bias"])
    save(folder, "tie_margin", margin)
    near = int((margin < 1e-5).sum())
    used = len(torch.unique(r["indices"]))
    print(f"{cfg['name']:28s} n_e={cfg['n_e']:2d} N={margin.numel():4d} loss={float(r['loss']):.5f} "
          f"codes used={used:2d} near-ties={near} min margin={float(margin.min()):.2e}"
          + ("".join("\n    " + n[2:] for n in notes if "expected" not in n)))
    return model, x, G, r


# --------------------------------------------------------------------------- #
# Optional check against the real reference module                            #
# --------------------------------------------------------------------------- #

def load_reference(path):
    pkg = types.ModuleType("optvq")
    utils = types.ModuleType("optvq.utils")
    logger = types.ModuleType("optvq.utils.logger")

    class _Log:
        total_steps = 0

        def add_scalar(self, *a, **k):
            pass

        def add_histogram(self, *a, **k):
            pass

    logger.log = _Log()
    logger.GET_STATS = False
    pkg.utils = utils
    utils.logger = logger
    sys.modules.update({"optvq": pkg, "optvq.utils": utils, "optvq.utils.logger": logger})
    spec = importlib.util.spec_from_file_location("optvq_reference_quantizer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def verify(mod, cfg, model, x, G, r):
    kw = dict(n_e=cfg["n_e"], e_dim=cfg["e_dim"], beta=cfg["beta"], use_proj=bool(cfg["use_proj"]),
              loss_q_type=cfg["loss"], num_head=cfg["num_head"])
    if cfg["assign"] == "sinkhorn":
        ref = mod.VectorQuantizerSinkhorn(epsilon=cfg["epsilon"], n_iters=cfg["n_iters"],
                                          normalize_mode=cfg["normalize"], use_prob=False, **kw)
    else:
        ref = mod.VectorQuantizer(**kw)
    ref.load_state_dict({k: v for k, v in model.state_dict().items()})
    ref.eval()
    flat = x.dim() == 2
    xin = x.clone().requires_grad_(True)
    x_in = xin.view(x.shape[0], x.shape[1], 1, 1) if flat else xin
    x_q, loss, indices = ref(x_in)
    (loss + torch.sum(x_q * G.view_as(x_q))).backward()
    if flat:
        x_q = x_q.view(x.shape)
        indices = indices.reshape(x.shape[0], -1)
    pairs = [("indices", indices, r["indices"]), ("x_q", x_q.detach(), r["x_q"]),
             ("loss", loss.detach(), r["loss"]), ("grad_x", xin.grad, r["grad_x"]),
             ("grad_embedding", ref.embedding.weight.grad, r["grad_embedding"])]
    if cfg["use_proj"]:
        pairs += [("grad_proj_weight", ref.proj.weight.grad, r["grad_proj_weight"]),
                  ("grad_proj_bias", ref.proj.bias.grad, r["grad_proj_bias"])]
    bad = [n for n, a, b in pairs if a.shape != b.shape or not torch.equal(a, b)]
    if bad:
        print(f"    VERIFY FAILED {cfg['name']}: {bad}")
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "ref", "quant"))
    ap.add_argument("--verify", metavar="QUANTIZER_PY",
                    help="path of the reference quantizer.py to check against")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out_dir = os.path.normpath(args.out)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    mod = load_reference(args.verify) if args.verify else None
    rng = np.random.default_rng(20241220)
    ok = True
    for i, case in enumerate(make_cases()):
        cfg = fill_config(case, rng)
        model, x, G, r = write_case(out_dir, cfg, 1000 + i)
        if mod is not None:
            ok &= verify(mod, cfg, model, x, G, r)
    total = sum(os.path.getsize(os.path.join(dp, f))
                for dp, _, fs in os.walk(out_dir) for f in fs)
    print(f"wrote {out_dir}: {total} bytes")
    if mod is not None:
        print("verify against reference:", "all identical" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
