#!/usr/bin/python3
"""Dump the expected reading of a Keras/HF-TF legacy .h5 file for tests/test_hdf5.c.

Usage: /usr/bin/python3 tools/h5_expected.py tests/fixtures/hf/caikit_bert_tf/tf_model.h5 \
           > tests/fixtures/hf/caikit_bert_tf/expected.tsv
       [--pt pytorch_model.bin]   cross-check names, shapes and values against a PyTorch
                                  checkpoint (report on stderr; nothing else needed than
                                  zipfile + pickle + numpy)

(Debian's python3-h5py lives under /usr/bin/python3, not a pyenv python.)

The name mapping is written here independently from io/hdf5.c, following
transformers' convert_tf_weight_name_to_pt_weight_name (docs/formats.md 4B).
One line per weight, in layer_names x weight_names order, tab-separated:
  pt_name  h5_path  stored_shape  canonical_shape  transpose  dtype  first4  sum
first4 are the first 4 elements of the canonical (PyTorch-layout) tensor as float32
hex bit patterns; sum is the float64 sum of all elements, printed with repr().
"""
import re
import sys

import h5py
import numpy as np


def strs(attr):
    if attr is None:
        return []
    if attr.dtype.kind == "f" and attr.size == 0:  # weightless Keras layer
        return []
    return [a.decode() if isinstance(a, bytes) else str(a) for a in attr]


def chunked(attrs, name):
    if name in attrs:
        return strs(attrs[name])
    out, k = [], 0
    while f"{name}{k}" in attrs:
        out += strs(attrs[f"{name}{k}"])
        k += 1
    return out


def tf_to_pt(tf_name):
    tf_name = tf_name.replace(":0", "")
    tf_name = re.sub(r"/[^/]*___([^/]*)/", r"/\1/", tf_name)
    tf_name = tf_name.replace("_._", "/")
    tf_name = re.sub(r"//+", "/", tf_name)
    parts = tf_name.split("/")
    if len(parts) > 1:
        parts = parts[1:]
    kernel = parts[-1] in ("kernel", "pointwise_kernel", "depthwise_kernel") or \
        "emb_projs" in parts or "out_projs" in parts
    if parts[-1] in ("kernel", "embeddings", "gamma"):
        parts[-1] = "weight"
    if parts[-1] == "beta":
        parts[-1] = "bias"
    return ".".join(parts), kernel


def dump(path):
    rows = []
    with h5py.File(path, "r") as f:
        root = f if ("layer_names" in f.attrs or "layer_names0" in f.attrs) else f["model_weights"]
        for layer in chunked(root.attrs, "layer_names"):
            g = root[layer]
            for wn in chunked(g.attrs, "weight_names"):
                arr = np.asarray(g[wn])
                name, kernel = tf_to_pt(wn)
                canon = arr.T if (kernel and arr.ndim == 2) else arr
                flat = np.ascontiguousarray(canon, dtype=np.float32).reshape(-1)
                first4 = ",".join("%08x" % v for v in flat[:4].view(np.uint32))
                rows.append((name, g[wn].name, arr.shape, canon.shape,
                             int(kernel and arr.ndim == 2), arr.dtype, first4,
                             repr(float(np.sum(canon, dtype=np.float64))), canon))
    return rows


def shape_str(s):
    return "[" + ",".join(str(d) for d in s) + "]"


def load_pt(path):
    import pickle
    import zipfile
    z = zipfile.ZipFile(path)
    base = z.namelist()[0].split("/")[0]

    class U(pickle.Unpickler):
        def find_class(self, mod, name):
            if name == "_rebuild_tensor_v2":
                def rebuild(storage, off, size, stride, *a):
                    raw = np.frombuffer(z.read(f"{base}/data/{storage[2]}"), dtype=np.float32)
                    return np.lib.stride_tricks.as_strided(
                        raw[off:], shape=size, strides=[s * 4 for s in stride]).copy()
                return rebuild
            if mod == "collections" and name == "OrderedDict":
                import collections
                return collections.OrderedDict
            return lambda *a, **k: None

        def persistent_load(self, pid):
            return pid

    return U(z.open(f"{base}/data.pkl")).load()


def main():
    args = sys.argv[1:]
    pt = None
    if "--pt" in args:
        i = args.index("--pt")
        pt = args[i + 1]
        del args[i:i + 2]
    rows = dump(args[0])
    for r in rows:
        print("\t".join([r[0], r[1], shape_str(r[2]), shape_str(r[3]), str(r[4]),
                         str(r[5]), r[6], r[7]]))
    if pt:
        sd = load_pt(pt)
        seen = set()
        for r in rows:
            name, canon = r[0], r[8]
            seen.add(name)
            if name not in sd:
                print(f"UNMAPPED (no PyTorch tensor): {r[1]} -> {name}", file=sys.stderr)
            elif tuple(sd[name].shape) != canon.shape:
                print(f"SHAPE {name}: h5 {canon.shape} pt {sd[name].shape}", file=sys.stderr)
            elif not np.array_equal(sd[name], canon):
                print(f"VALUES DIFFER {name} (max abs diff "
                      f"{np.max(np.abs(sd[name] - canon))})", file=sys.stderr)
        for k in sd:
            if k not in seen:
                print(f"PyTorch only (not in h5): {k} {tuple(sd[k].shape)}", file=sys.stderr)
        print(f"checked {len(rows)} h5 weights against {len(sd)} PyTorch tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
