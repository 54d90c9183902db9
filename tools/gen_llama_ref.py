#!/usr/bin/python3
"""Tiny random Llama checkpoints + reference logits for tests/test_model.c.

Run with Debian's torch:  /usr/bin/python3 tools/gen_llama_ref.py tests/fixtures/runtime
Writes <out>/llama_tiny{,_l3,_lin}/{config.json,model.safetensors,ref.json,ref_logits.safetensors}.

The model is written here in plain PyTorch following transformers' LlamaForCausalLM
(modeling_llama.py): RMSNorm computed in float32, rotate_half RoPE with the
rope_init_fn inverse frequencies (default / linear / llama3), SwiGLU MLP, repeat_kv
for grouped-query attention, causal softmax attention in float32, untied lm_head.
safetensors is written by hand (8-byte little-endian header length, JSON header,
raw little-endian data), since there is no safetensors package here.
"""
import json
import math
import os
import struct
import sys

import torch

HID, INTER, LAYERS, HEADS, KV_HEADS, VOCAB, MAXPOS = 64, 128, 2, 4, 2, 96, 64
HD = HID // HEADS
EPS = 1e-5
THETA = 10000.0


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def inv_freq_for(scaling):
    inv = 1.0 / (THETA ** (torch.arange(0, HD, 2, dtype=torch.int64).float() / HD))
    if scaling is None:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return inv / scaling["factor"]
    if kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        return torch.where(medium, smoothed, inv_l)
    raise ValueError(kind)


def rms(x, w):
    x32 = x.to(torch.float32)
    var = x32.pow(2).mean(-1, keepdim=True)
    return w * (x32 * torch.rsqrt(var + EPS))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def forward(W, ids, scaling):
    T = len(ids)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]            # [T, C]
    inv = inv_freq_for(scaling)
    pos = torch.arange(T).float()
    freqs = torch.outer(pos, inv)                                     # [T, HD/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, HEADS, HD).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, KV_HEADS, HD).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, KV_HEADS, HD).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = HEADS // KV_HEADS                                       # repeat_kv
        k = k[:, None].expand(KV_HEADS, rep, T, HD).reshape(HEADS, T, HD)
        v = v[:, None].expand(KV_HEADS, rep, T, HD).reshape(HEADS, T, HD)
        s = q @ k.transpose(1, 2) / math.sqrt(HD) + mask
        a = torch.softmax(s.float(), dim=-1) @ v                      # [H, T, HD]
        a = a.transpose(0, 1).reshape(T, HID)
        x = x + a @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    return x @ W["lm_head.weight"].T


def make(out, name, seed, scaling):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, std=0.15: torch.randn(*s, generator=g) * std
    W = {"model.embed_tokens.weight": r(VOCAB, HID, std=0.5),
         "model.norm.weight": 1 + r(HID, std=0.1),
         "lm_head.weight": r(VOCAB, HID, std=0.2)}
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = 1 + r(HID, std=0.1)
        W[p + "post_attention_layernorm.weight"] = 1 + r(HID, std=0.1)
        W[p + "self_attn.q_proj.weight"] = r(HEADS * HD, HID)
        W[p + "self_attn.k_proj.weight"] = r(KV_HEADS * HD, HID)
        W[p + "self_attn.v_proj.weight"] = r(KV_HEADS * HD, HID)
        W[p + "self_attn.o_proj.weight"] = r(HID, HEADS * HD)
        W[p + "mlp.gate_proj.weight"] = r(INTER, HID)
        W[p + "mlp.up_proj.weight"] = r(INTER, HID)
        W[p + "mlp.down_proj.weight"] = r(HID, INTER)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), W)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_size": HID, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
           "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
           "vocab_size": VOCAB, "max_position_embeddings": MAXPOS, "rms_norm_eps": EPS,
           "rope_theta": THETA, "rope_scaling": scaling, "hidden_act": "silu",
           "tie_word_embeddings": False, "torch_dtype": "float32",
           "attention_bias": False, "mlp_bias": False}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    gi = torch.Generator().manual_seed(seed + 1000)
    ids = [torch.randint(0, VOCAB, (n,), generator=gi).tolist() for n in (1, 5, 12, 40)]
    with torch.no_grad():
        logits = {f"logits.{i}": forward(W, s, scaling) for i, s in enumerate(ids)}
    write_safetensors(os.path.join(d, "ref_logits.safetensors"), logits)
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump({"ids": ids, "note": "logits.<i> in ref_logits.safetensors: float32 [len(ids[i]), vocab], "
                   "every position, from tools/gen_llama_ref.py"}, f)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/runtime"
    torch.set_num_threads(1)
    make(out, "llama_tiny", 1, None)
    make(out, "llama_tiny_l3", 2, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
    make(out, "llama_tiny_lin", 3, {"type": "linear", "factor": 2.0})


if __name__ == "__main__":
    main()
