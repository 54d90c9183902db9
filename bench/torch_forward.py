#!/usr/bin/env python3
"""The reference for bench_forward: the same GPT-2 forward (1 x 64 tokens, full logits) in
plain PyTorch on the CPU, on the checkpoint bench_forward built, at 1 and 2 threads.
Benchmark tool only (Debian's python3-torch); nothing in the build or the tests runs it.
Usage: python3 bench/torch_forward.py DIR [REPS]"""
import json, math, struct, sys, time
import numpy as np
import torch

d = sys.argv[1]
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
cfg = json.load(open(d + "/config.json"))
raw = open(d + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
hdr.pop("__metadata__", None)
W = {k: torch.from_numpy(np.frombuffer(raw, np.float32, count=int(np.prod(v["shape"])),
                                       offset=8 + n + v["data_offsets"][0]).reshape(v["shape"]))
     for k, v in hdr.items()}
pre = "transformer." if "transformer.wte.weight" in W else ""
C, L, H = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
eps = cfg.get("layer_norm_epsilon", 1e-5)

def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

@torch.no_grad()
def forward(ids):
    T = ids.shape[1]
    x = W[pre + "wte.weight"][ids] + W[pre + "wpe.weight"][:T]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(L):
        p = f"{pre}h.{l}."
        h = torch.nn.functional.layer_norm(x, (C,), W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]     # Conv1D: [in, out]
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(1, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // H) + mask, dim=-1) @ v
        x = x + a.transpose(1, 2).reshape(1, T, C) @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = torch.nn.functional.layer_norm(x, (C,), W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        x = x + gelu_new(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"]) @ W[p + "mlp.c_proj.weight"] \
              + W[p + "mlp.c_proj.bias"]
    x = torch.nn.functional.layer_norm(x, (C,), W[pre + "ln_f.weight"], W[pre + "ln_f.bias"], eps)
    return x @ W[pre + "wte.weight"].T                                            # tied head: [1, T, V]

ids = torch.randint(0, cfg["vocab_size"], (1, 64))
for threads in (1, 2):
    torch.set_num_threads(threads)
    forward(ids)                                                                  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        forward(ids)
    dt = (time.perf_counter() - t0) / reps
    print(f"  pytorch {torch.__version__} {threads} thread{'s' if threads > 1 else ''}: {dt:7.3f} s per forward, "
          f"{64 / dt:7.1f} tokens/s")
