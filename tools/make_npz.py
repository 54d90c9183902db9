#!/usr/bin/env python3
"""Write reference-style ROME second-moment caches (.npz) from alloy's golden stats.

The reference (kmeng01/rome util/runningstats.py, SecondMoment.state_dict + np.savez)
stores mom2.mom2 = the SUM of k k^T [m, m], mom2.count = the number of keys,
mom2.constructor (a string) and sample_size. The golden file holds the MEAN C and the
count, so the sum is C * count.

usage: tools/make_npz.py GOLDEN.safetensors OUT_DIR
writes OUT_DIR/mom2_ref_stored.npz   (np.savez, float64 sum, zip stored)
       OUT_DIR/mom2_ref_deflate.npz  (np.savez_compressed, float32 sum, zip deflate)
Needs numpy only (safetensors parsed by hand: 8-byte header length, JSON, raw data).
"""
import json
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    hdr = json.loads(buf[8:8 + n])
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        dt = {"F64": "<f8", "F32": "<f4", "I64": "<i8"}[t["dtype"]]
        out[name] = np.frombuffer(buf[8 + n + a:8 + n + b], dtype=dt).reshape(t["shape"])
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    g = read_safetensors(sys.argv[1])
    count = int(g["count"])
    total = g["C"].astype(np.float64) * count   # mean -> sum, as SecondMoment keeps it
    common = {"mom2.constructor": np.array("util.runningstats.SecondMoment()"),
              "mom2.count": np.array(count, dtype=np.int64),
              "sample_size": np.array(414, dtype=np.int64)}
    np.savez(os.path.join(sys.argv[2], "mom2_ref_stored.npz"),
             **{"mom2.mom2": total}, **common)
    np.savez_compressed(os.path.join(sys.argv[2], "mom2_ref_deflate.npz"),
                        **{"mom2.mom2": total.astype(np.float32)}, **common)


if __name__ == "__main__":
    main()
