#!/usr/bin/python3
"""Table and curves of bench/curves_side_by_side.sh from its results folder.

    curves_report.py RESULTS_DIR REPORT.md

Reads RESULTS_DIR/<side>-s<seed>/epochs.jsonl (side: torch, null, kmeans, torchinit;
only finished epochs are there) and writes REPORT.md: per epoch the mean and
min..max over seeds of every metric for each side, whether optvq's held-out
PSNR lies within the reference's seed spread or within 0.3 dB of its mean, and
the curves (held-out PSNR and perplexity per epoch, every seed and the mean)
as REPORT.png when matplotlib is there.
"""
import glob
import json
import os
import re
import sys

SIDES = [("torch", "reference (PyTorch), N(0,1)"), ("null", "optvq, N(0,1) (`null`)"),
         ("kmeans", "optvq, k-means (`kmeans`)"), ("torchinit", "optvq from PyTorch's initial weights")]
METRICS = [("val_psnr", "held-out PSNR (dB)", "{:.2f}"), ("val_ssim", "held-out SSIM", "{:.4f}"),
           ("val_usage", "held-out codebook usage (%)", "{:.1f}"), ("val_perplexity", "held-out perplexity", "{:.0f}"),
           ("loss", "mean training loss", "{:.4f}"), ("l1", "mean training l1", "{:.4f}"),
           ("l2", "mean training l2", "{:.4f}"), ("q", "mean training q", "{:.4f}")]


def load(res):
    """{side: {seed: [epoch records]}}"""
    runs = {}
    for path in sorted(glob.glob(os.path.join(res, "*-s*", "epochs.jsonl"))):
        m = re.fullmatch(r"(torch|null|kmeans|torchinit)-s(\d+)", os.path.basename(os.path.dirname(path)))
        if not m:
            continue
        with open(path) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        for r in recs:
            r["val_usage"] = 100.0 * r["val_usage"]
        if recs:
            runs.setdefault(m.group(1), {})[int(m.group(2))] = recs
    return runs


def values(runs, side, epoch, key):
    return [recs[epoch - 1][key] for recs in runs.get(side, {}).values() if len(recs) >= epoch]


def cell(vals, fmt):
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{fmt.format(mean)} (1 seed)"
    return f"{fmt.format(mean)} ({fmt.format(min(vals))}..{fmt.format(max(vals))}, {len(vals)} seeds)"


def mean(v):
    return sum(v) / len(v) if v else float("nan")


def table(runs, epochs, settings):
    out = ["# Training curves: optvq beside the reference recipe in PyTorch", "",
           "`bash bench/curves_side_by_side.sh`: Fashion-MNIST, configs/fashion-mnist/optvq.yaml (1024 codes, "
           "4 heads, batch 1024, OneCycleLR over the whole schedule), the last partial batch of each epoch dropped "
           "as the reference's DataLoader does, 2 threads a side; held-out numbers on the test images, evaluated "
           "in batches of the training batch size as the config's test_batch_size (Sinkhorn over each). "
           f"Settings: {settings}.", ""]
    seeds = {s: sorted(runs.get(s, {})) for s, _ in SIDES}
    out.append("Seeds finished per side: " + ", ".join(f"{name}: {seeds[s] or 'none'}" for s, name in SIDES) + ".")
    out += ["", "Each cell: mean over seeds (min..max, seeds).", ""]
    out += ["## Summary (means)", "",
            "| epoch | " + " | ".join(f"{name} usage / perplexity / PSNR" for _, name in SIDES) + " |",
            "|---|" + "---|" * len(SIDES)]
    for e in range(1, epochs + 1):
        row = []
        for s, _ in SIDES:
            u, p, q = (values(runs, s, e, k) for k in ("val_usage", "val_perplexity", "val_psnr"))
            row.append(f"{mean(u):.1f}% / {mean(p):.0f} / {mean(q):.2f} dB" if q else "-")
        out.append(f"| {e} | " + " | ".join(row) + " |")
    for key, title, fmt in METRICS:
        out += ["", f"## {title}", "", "| epoch | " + " | ".join(name for _, name in SIDES) + " |",
                "|---|" + "---|" * len(SIDES)]
        for e in range(1, epochs + 1):
            out.append(f"| {e} | " + " | ".join(cell(values(runs, s, e, key), fmt) for s, _ in SIDES) + " |")
    out += ["", "## optvq's held-out PSNR against the reference's", "",
            "Within the reference's seed spread (min..max), or within 0.3 dB of its mean.", "",
            "| epoch | " + " | ".join(name for _, name in SIDES[1:]) + " |", "|---|" + "---|" * (len(SIDES) - 1)]
    for e in range(1, epochs + 1):
        ref = values(runs, "torch", e, "val_psnr")
        row = []
        for s, _ in SIDES[1:]:
            ours = values(runs, s, e, "val_psnr")
            if not ref or not ours:
                row.append("-")
                continue
            m, d = mean(ours), mean(ours) - mean(ref)
            ok = min(ref) <= m <= max(ref) or abs(d) <= 0.3
            row.append(f"{'yes' if ok else 'no'} ({d:+.2f} dB)")
        out.append(f"| {e} | " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def plot(runs, epochs, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # no matplotlib: the table is the result
        print(f"curves_report: no PNG ({e})", file=sys.stderr)
        return
    colours = {"torch": "black", "null": "tab:blue", "kmeans": "tab:orange", "torchinit": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (key, title) in zip(axes, [("val_psnr", "held-out PSNR (dB)"), ("val_perplexity", "held-out perplexity")]):
        for s, name in SIDES:
            for recs in runs.get(s, {}).values():
                ax.plot([r["epoch"] for r in recs], [r[key] for r in recs], "o", color=colours[s], alpha=0.35, ms=4)
            xs = [e for e in range(1, epochs + 1) if values(runs, s, e, key)]
            if xs:
                ax.plot(xs, [mean(values(runs, s, e, key)) for e in xs], "-", color=colours[s], label=name.replace("`", ""))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_xticks(range(1, epochs + 1))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Fashion-MNIST OptVQ config: every seed (dots) and the mean (line)", fontsize=10)
    fig.tight_layout()
    fig.savefig(png + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(png + ".tmp.png", png)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: curves_report.py RESULTS_DIR REPORT.md")
    res, md = sys.argv[1], sys.argv[2]
    settings = open(os.path.join(res, "settings")).read().strip() if os.path.exists(os.path.join(res, "settings")) \
        else "unknown"
    m = re.search(r"epochs=(\d+)", settings)
    epochs = int(m.group(1)) if m else 3
    runs = load(res)
    os.makedirs(os.path.dirname(os.path.abspath(md)), exist_ok=True)
    with open(md + ".tmp", "w") as f:
        f.write(table(runs, epochs, settings))
    os.replace(md + ".tmp", md)
    plot(runs, epochs, os.path.splitext(md)[0] + ".png")


if __name__ == "__main__":
    main()
