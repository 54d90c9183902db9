#!/usr/bin/env python3
"""Dump a safetensors file as the line format tests/test_safetensors.c reads.

Independent of alloy: only struct and json. Used once to generate
tests/fixtures/hf/*.expected.txt:

    python3 tools/dump_safetensors.py tests/fixtures/hf/tiny_gpt2/model.safetensors \
        > tests/fixtures/hf/tiny_gpt2.expected.txt

Lines:
    H <header length N> <tensor count>
    M <key> <value>                                  (__metadata__)
    T <name> <dtype> <ndim> <dims...> <absolute offset> <nbytes>   (in data order)
    V <name> <element index> <u32 bits as hex> <value>   (F32 only: first, second, last)
"""
import json
import struct
import sys


def main(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    tensors = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    print("H %d %d" % (n, len(tensors)))
    for k, v in meta.items():
        print("M %s %s" % (k, v))
    for name, t in tensors:
        assert " " not in name
        b, e = t["data_offsets"]
        shape = t["shape"]
        print("T %s %s %d %s %d %d" % (name, t["dtype"], len(shape),
                                      " ".join(str(d) for d in shape), 8 + n + b, e - b))
    for name, t in tensors:
        if t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        count = (e - b) // 4
        for idx in sorted({0, min(1, count - 1), count - 1}):
            if idx < 0:
                continue
            (bits,) = struct.unpack_from("<I", buf, 8 + n + b + 4 * idx)
            (val,) = struct.unpack_from("<f", buf, 8 + n + b + 4 * idx)
            print("V %s %d %08x %.9g" % (name, idx, bits, val))


if __name__ == "__main__":
    main(sys.argv[1])
