#!/usr/bin/python3
"""PyTorch eager reference for bench_train_step: one train-prefix optimizer step written the
way one would in Python (HF-style BERT and LLaMA modules, nn.Linear, torch.optim.AdamW).

    /usr/bin/python3 bench/reference_train_step.py --inputs DIR [--threads 2] [--repeats 5] [--json]

DIR is written by bench_train_step: llm.safetensors and encoder.safetensors (HF parameter
names), inputs.json (configs, token ids, labels, optimiser settings). Only torch and the
standard library are used.

The step: BERT over the segments -> P learned queries cross-attending (padding masked) ->
LayerNorm -> per LLM layer key/value Linear heads -> [B, kvH, P, hd] prefix; the frozen LLaMA
(requires_grad False) with the prefix prepended to every layer's keys/values (no rotary on the
prefix, tokens at positions P, P+1, ...), hidden states at the answer positions -> lm_head ->
cross-entropy; backward; clip_grad_norm_; AdamW (no decay on 1-d parameters).
Timing as in bench_train_step.cpp: two warm-up steps, then the best of `repeats` steps.
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

# The BERT modules and the safetensors reader are those of the other references (same HF
# parameter names), so the three benchmarks measure one Python implementation.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_bert import BertModel  # noqa: E402
from reference_llama import MLP, RMSNorm, read_safetensors, rotate_half  # noqa: E402


# --- knowledge encoder ---------------------------------------------------------------------

class CrossAttention(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.query, self.key, self.value, self.output = (nn.Linear(h, h) for _ in range(4))


class PrefixHead(nn.Module):
    def __init__(self, h, kv_dim):
        super().__init__()
        self.key, self.value = nn.Linear(h, kv_dim), nn.Linear(h, kv_dim)


class KnowledgeEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        e = c["encoder"]
        h, llm = e["hidden_size"], c["llm"]
        self.heads = e["num_attention_heads"]
        self.P, self.kvH, self.hd = c["prefix_length"], llm["kv_heads"], llm["head_dim"]
        self.encoder = BertModel(e)
        self.queries = nn.Parameter(torch.empty(self.P, h))
        self.cross_attention = CrossAttention(h)
        self.norm = nn.LayerNorm(h, eps=e["layer_norm_eps"])
        self.prefix_heads = nn.ModuleList(
            [PrefixHead(h, self.kvH * self.hd) for _ in range(llm["layers"])])

    def forward(self, ids, attention_mask):
        h = self.encoder(ids, attention_mask)
        B, T, H = h.shape
        nh, hd = self.heads, H // self.heads
        ca = self.cross_attention
        q = ca.query(self.queries).view(1, self.P, nh, hd).transpose(1, 2)
        k = ca.key(h).view(B, T, nh, hd).transpose(1, 2)
        v = ca.value(h).view(B, T, nh, hd).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(attention_mask[:, None, None, :] == 0, -1e30)
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, self.P, H)
        x = self.norm(self.queries.unsqueeze(0) + ca.output(ctx))
        return [(hd_.key(x).view(B, self.P, self.kvH, self.hd).transpose(1, 2),
                 hd_.value(x).view(B, self.P, self.kvH, self.hd).transpose(1, 2))
                for hd_ in self.prefix_heads]


# --- LLaMA (HF modeling_llama style) with past_key_values as the prefix -------------------

class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, self.nh, self.kvh = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = c.get("head_dim") or h // self.nh
        self.q_proj = nn.Linear(h, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(h, self.kvh * self.hd, bias=False)
        self.v_proj = nn.Linear(h, self.kvh * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, h, bias=False)

    def forward(self, x, cos, sin, past, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kvh, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kvh, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past[0], k], dim=2)
        v = torch.cat([past[1], v], dim=2)
        rep = self.nh // self.kvh
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        probs = scores.float().softmax(-1).to(q.dtype)
        return self.o_proj((probs @ v).transpose(1, 2).reshape(B, T, -1))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin, past, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, past, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def hidden_states(self, ids, prefix):
        B, T = ids.shape
        P = prefix[0][0].shape[2]
        hd = self.c.get("head_dim") or self.c["hidden_size"] // self.c["num_attention_heads"]
        inv_freq = 1.0 / (self.c["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
        pos = torch.arange(P, P + T).float()
        freqs = torch.outer(pos, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        causal = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)
        mask = torch.cat([torch.zeros(T, P), causal], dim=1)[None, None]
        x = self.model.embed_tokens(ids)
        for layer, past in zip(self.model.layers, prefix):
            x = layer(x, cos, sin, past, mask)
        return self.model.norm(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    with open(os.path.join(a.inputs, "inputs.json")) as f:
        inp = json.load(f)
    llm = Llama(inp["llm"])
    llm.load_state_dict(read_safetensors(os.path.join(a.inputs, "llm.safetensors")))
    llm.requires_grad_(False)
    enc = KnowledgeEncoder(inp["encoder"])
    enc.load_state_dict(read_safetensors(os.path.join(a.inputs, "encoder.safetensors")))
    enc.train()

    B = inp["batch"]
    ids = torch.tensor(inp["ids"]).view(B, -1)
    labels = torch.tensor(inp["labels"]).view(-1)
    seg = torch.tensor(inp["segment_ids"]).view(B, -1)
    seg_mask = torch.ones_like(seg)
    decay = [p for p in enc.parameters() if p.dim() >= 2]
    no_decay = [p for p in enc.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": inp["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=inp["lr"])
    losses = []

    def step():
        prefix = enc(seg, seg_mask)
        h = llm.hidden_states(ids, prefix)
        keep = labels != -100
        logits = llm.lm_head(h.reshape(-1, h.shape[-1])[keep])
        loss = F.cross_entropy(logits, labels[keep])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enc.parameters(), inp["clip"])
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())

    step()
    step()
    best = float("inf")
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    if a.json:
        print(json.dumps({"step_s": best, "losses": losses}))
    else:
        print(f"pytorch: {best * 1e3:.1f} ms/step, losses {losses[0]:.6f} {losses[1]:.6f}")


if __name__ == "__main__":
    main()
