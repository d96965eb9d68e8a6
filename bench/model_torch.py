#!/usr/bin/python3
"""PyTorch side of bench/run_model.sh: the f16 h4 ImageNet VQModel (our
transcription in tools/gen_model_ref.py) with random weights.

  model_torch.py save DIR       write DIR/config.json + DIR/model.safetensors + DIR/x.npy
  model_torch.py run DIR REPS   time encode+decode of DIR/x.npy (1 x 3 x 256 x 256),
                                2 threads, no_grad; print median seconds and peak RSS
"""
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import gen_model_ref as g  # noqa: E402

F16 = {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
       "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0}
Q = {"n_e": 16384, "e_dim": 256, "beta": 0.25, "use_proj": True, "epsilon": 10, "n_iters": 5,
     "normalize_mode": "all", "use_prob": False, "num_head": 4, "loss_q_type": "l2"}
CASE = {"arch": "taming", "channels": 3, "batch": 1, "res": 256, "sinkhorn": True, "taming": F16, "quantize": Q}


def build():
    torch.manual_seed(0)
    return g.build(CASE).eval()


def main():
    torch.set_num_threads(2)
    cmd, d = sys.argv[1], sys.argv[2]
    if cmd == "save":
        import json
        os.makedirs(d, exist_ok=True)
        m = build()
        g.write_safetensors(os.path.join(d, "model.safetensors"), {"model." + k: v for k, v in m.state_dict().items()})
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"encoder": F16, "decoder": F16, "quantize": Q, "quantize_type": "optvq",
                       "use_connector": True}, f)
        np.save(os.path.join(d, "x.npy"), (torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
                                           * 2 - 1).numpy())
        return
    reps = int(sys.argv[3])
    m = build()
    x = torch.from_numpy(np.load(os.path.join(d, "x.npy")))
    times = []
    with torch.no_grad():
        for r in range(reps + 1):
            t0 = time.perf_counter()
            z = m.quant_conv(m.encoder(x))
            xq, _, idx, _ = m.quantize(z)
            rec = m.decoder(m.post_quant_conv(xq))
            dt = time.perf_counter() - t0
            if r > 0:  # the first run warms up
                times.append(dt)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"torch {statistics.median(times):.3f} {peak:.0f} {float(rec.abs().mean()):.6f}")


if __name__ == "__main__":
    main()
