#!/usr/bin/python3
"""PyTorch eager reference for bench_bert: a straightforward Hugging Face-style BertModel
(modeling_bert.py, eager attention) and the same timing.

    /usr/bin/python3 bench/reference_bert.py --model DIR [--dtype fp32|bf16] [--batch 16]
        [--seq-len 288] [--repeats 2] [--threads 2] [--json]

DIR holds config.json and model.safetensors (read with reference_llama.read_safetensors).
Timing (same as bench_bert.cpp): one warm-up forward of the batch, then the best of `repeats`.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_llama import best_time, bench_ids, read_safetensors  # noqa: E402


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], h)
        self.position_embeddings = nn.Embedding(c.get("max_position_embeddings", 512), h)
        self.token_type_embeddings = nn.Embedding(c.get("type_vocab_size", 2), h)
        self.LayerNorm = nn.LayerNorm(h, eps=c.get("layer_norm_eps", 1e-12))

    def forward(self, ids, token_type_ids):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        x = self.word_embeddings(ids) + self.token_type_embeddings(token_type_ids) + \
            self.position_embeddings(positions)
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.num_heads = c["num_attention_heads"]
        self.head_dim = h // self.num_heads
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)

    def split(self, x):  # [B, T, H] -> [B, nH, T, hd]
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores + mask
        probs = F.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return out.view(out.shape[0], out.shape[1], -1)


class ResidualOutput(nn.Module):  # "attention.output" and "output"
    def __init__(self, n_in, h, eps):
        super().__init__()
        self.dense = nn.Linear(n_in, h)
        self.LayerNorm = nn.LayerNorm(h, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = SelfAttention(c)
        self.output = ResidualOutput(c["hidden_size"], c["hidden_size"], c.get("layer_norm_eps", 1e-12))

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])

    def forward(self, x):
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = ResidualOutput(c["intermediate_size"], c["hidden_size"], c.get("layer_norm_eps", 1e-12))

    def forward(self, x, mask):
        h = self.attention(x, mask)
        return self.output(self.intermediate(h), h)


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])


class BertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)

    def forward(self, ids, attention_mask):
        dtype = self.embeddings.word_embeddings.weight.dtype
        # HF get_extended_attention_mask: (1 - mask) * finfo(dtype).min, [B, 1, 1, T].
        mask = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        x = self.embeddings(ids, torch.zeros_like(ids))
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=288)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    with open(os.path.join(a.model, "config.json")) as f:
        c = json.load(f)
    model = BertModel(c)
    tensors = {k[len("bert."):] if k.startswith("bert.") else k: v
               for k, v in read_safetensors(os.path.join(a.model, "model.safetensors")).items()}
    tensors = {k: v for k, v in tensors.items() if not k.startswith("pooler.")}
    model.load_state_dict(tensors, strict=True)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model = model.to(dtype).eval()

    ids = torch.tensor([bench_ids(a.seq_len, c["vocab_size"], 101, b) for b in range(a.batch)],
                       dtype=torch.int64)
    mask = torch.ones_like(ids)
    result = {}

    @torch.inference_mode()
    def encode():
        h = model(ids, mask)
        result["pooled"] = h[0].float().mean(0)

    encode()  # warm-up
    t = best_time(a.repeats, encode)

    H, I, L, B, T = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], a.batch, a.seq_len
    flops = 2.0 * L * (4 * H * H + 2 * H * I) * B * T + L * 4.0 * B * T * T * H
    out = {"impl": "python", "model": a.name or os.path.basename(os.path.normpath(a.model)),
           "dtype": a.dtype, "threads": torch.get_num_threads(), "batch": B, "seq_len": T,
           "seconds": t, "tok_s": B * T / t, "gflops": flops / t / 1e9, "flops_per_pass": flops,
           "probe": result["pooled"].tolist()}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{out['model']} {a.dtype} batch {B}x{T}: {out['tok_s']:.1f} tok/s, "
              f"{out['gflops']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
