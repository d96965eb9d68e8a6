#!/usr/bin/python3
"""Small .npy inputs for tests/cli/everyday.sh (numpy only): images as uint8,
an empty batch, integer and out-of-range arrays, an odd size, and 7-dim
features. Run from the repository root: /usr/bin/python3 tools/gen_cli_fixtures.py
"""
import numpy as np

out = "tests/ref/cli/"
x = np.load("tests/ref/model/plain/x.npy")[:2]  # (2, 1, 32, 32) in [-1, 1]
np.save(out + "u8.npy", np.round((x + 1) / 2 * 255).astype(np.uint8))
np.save(out + "empty.npy", np.zeros((0, 1, 32, 32), np.float32))
np.save(out + "i32.npy", np.zeros((1, 1, 32, 32), np.int32))
np.save(out + "wide_range.npy", (x[:1] * 3).astype(np.float32))
np.save(out + "odd.npy", x[:1, :, :30, :30].copy())
rng = np.random.default_rng(0)
np.save(out + "feat7.npy", rng.standard_normal((16, 7)).astype(np.float32))
np.save(out + "feat_i32.npy", np.ones((16, 8), np.int32))
np.save(out + "codes8.npy", rng.standard_normal((32, 8)).astype(np.float32))
