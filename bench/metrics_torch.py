#!/usr/bin/python3
"""PyTorch side of bench/run_metrics.sh: pytorch-fid's Inception features and
pyiqa's LPIPS-Alex (transcribed in tools/gen_fid_lpips_ref.py), random weights,
no_grad, $TORCH_THREADS threads (default 2).
    metrics_torch.py fid|lpips B S REPS   -> "seconds_median peak_rss_mib checksum" """
import os
import resource
import sys
import time

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from gen_fid_lpips_ref import LpipsAlex, fid_features, fid_inception  # noqa: E402

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
kind, B, S, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
x = torch.rand(2 * B, 3, S, S)
if kind == "fid":
    net = fid_inception()
    run = lambda: fid_features(net, x[:B])  # noqa: E731
else:
    net = LpipsAlex(torchvision.models.alexnet().features).eval()
    run = lambda: net(x[B:], x[:B])[0]  # noqa: E731
times = []
with torch.no_grad():
    for r in range(reps + 1):
        t0 = time.perf_counter()
        out = run()
        if r:
            times.append(time.perf_counter() - t0)
times.sort()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("%.3f %.0f %.6g" % (times[len(times) // 2], rss, float(out.sum())))
