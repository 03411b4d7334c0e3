#!/usr/bin/python3
"""PyTorch eager reference for bench_llama: a straightforward Hugging Face-style LLaMA
(modeling_llama.py as of transformers 4.3x) with a KV cache, and the same timing.

    /usr/bin/python3 bench/reference_llama.py --model DIR [--dtype fp32|bf16]
        [--prompt-len 128] [--new-tokens 64] [--repeats 3] [--threads 2] [--json]

DIR holds config.json and model.safetensors (read here with json + torch.frombuffer; the
`safetensors` package is not needed). Only torch and the standard library are used.

Like HF: nn.Linear projections, rotate_half rotary embedding with a cos/sin cache, repeat_kv,
a 4-D additive causal mask, softmax in fp32, a KV cache grown with torch.cat, the LM head over
every position of the forward pass, greedy decoding with argmax on the last position.
Timing (same as bench_llama.cpp): after a warm-up generation of 4 tokens, the best of `repeats`
runs of generate(1) is the prefill time; the best of `repeats` runs of generate(N) minus that is
the time of the N-1 decode steps.
"""

import argparse
import json
import math
import os
import time

import torch
from torch import nn
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
          "I64": torch.int64}


def read_safetensors(path):
    """name -> tensor (a copy of the file is kept alive by the tensors)."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        count = (end - begin) // torch.tensor([], dtype=dtype).element_size()
        t = torch.frombuffer(data, dtype=dtype, count=count, offset=base + begin) if count else \
            torch.empty(0, dtype=dtype)
        out[name] = t.view(info["shape"])
    return out


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        h = x.to(torch.float32)
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.eps)
        return self.weight * h.to(dtype)


class RotaryEmbedding(nn.Module):
    def __init__(self, dim, max_positions, base):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        t = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self, position_ids, dtype):  # -> [B, 1, T, hd]
        return (self.cos_cached[position_ids].unsqueeze(1).to(dtype),
                self.sin_cached[position_ids].unsqueeze(1).to(dtype))


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):
    b, kvh, s, hd = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kvh, n_rep, s, hd).reshape(b, kvh * n_rep, s, hd)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_heads = c["num_attention_heads"]
        self.num_kv_heads = c.get("num_key_value_heads") or self.num_heads
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.num_heads
        h = c["hidden_size"]
        self.q_proj = nn.Linear(h, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, h, bias=False)

    def forward(self, x, cos, sin, mask, past):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        groups = self.num_heads // self.num_kv_heads
        k = repeat_kv(k, groups)
        v = repeat_kv(v, groups)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        scores = scores + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).contiguous().reshape(b, t, -1)
        return self.o_proj(out), present


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("rms_norm_eps", 1e-6)
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], eps)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], eps)

    def forward(self, x, cos, sin, mask, past):
        h, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past)
        x = x + h
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, present


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c.get("rms_norm_eps", 1e-6))


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        if c.get("tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight
        heads = c["num_attention_heads"]
        head_dim = c.get("head_dim") or c["hidden_size"] // heads
        self.rotary = RotaryEmbedding(head_dim, c.get("max_position_embeddings", 2048),
                                      c.get("rope_theta", 10000.0))

    def forward(self, ids, past_key_values=None):
        """ids [B, T] -> (logits [B, T, V] fp32, new past_key_values)."""
        b, t = ids.shape
        past_len = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        position_ids = torch.arange(past_len, past_len + t).unsqueeze(0).expand(b, t)
        x = self.model.embed_tokens(ids)
        cos, sin = self.rotary(position_ids, x.dtype)
        # 4-D additive causal mask [B, 1, T, past + T].
        mask = torch.full((t, t), torch.finfo(x.dtype).min, dtype=x.dtype).triu(1)
        mask = torch.cat([torch.zeros(t, past_len, dtype=x.dtype), mask], dim=-1)
        mask = mask[None, None].expand(b, 1, t, past_len + t)
        presents = []
        for i, layer in enumerate(self.model.layers):
            x, present = layer(x, cos, sin, mask,
                               None if past_key_values is None else past_key_values[i])
            presents.append(present)
        x = self.model.norm(x)
        logits = self.lm_head(x).float()
        return logits, presents


def load_model(directory, dtype):
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    model = LlamaForCausalLM(config)
    tensors = read_safetensors(os.path.join(directory, "model.safetensors"))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and config.get("tie_word_embeddings"))]
    if missing or unexpected:
        raise SystemExit(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")
    return model.to(dtype).eval(), config


@torch.inference_mode()
def generate(model, prompt, new_tokens):
    """Greedy decoding of `new_tokens` tokens (no early stop); prompt [B, T]."""
    logits, past = model(prompt)
    out = []
    for step in range(new_tokens):
        next_token = logits[:, -1, :].argmax(dim=-1, keepdim=True)  # [B, 1]
        out.append(next_token)
        if step + 1 == new_tokens:
            break
        logits, past = model(next_token, past)
    return torch.cat(out, dim=1)


def bench_ids(n, vocab, first, salt=0):
    """The prompt of bench_common.h: BOS, then ids spread over the vocabulary."""
    return [first if i == 0 and first >= 0 else 3 + ((i + salt) * 7919 + salt * 104729) % (vocab - 3)
            for i in range(n)]


def best_time(repeats, f):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--name", default=None, help="model name to report (default: DIR's basename)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model, config = load_model(a.model, dtype)
    params = sum(t.numel() for t in model.parameters())
    bos = config.get("bos_token_id", 1)
    prompt = torch.tensor([bench_ids(a.prompt_len, config["vocab_size"], -1 if bos is None else bos)]
                          * a.batch, dtype=torch.int64)
    n = a.new_tokens
    generate(model, prompt, min(n, 4))  # warm-up
    result = {}

    def run_all():
        result["tokens"] = generate(model, prompt, n)[0].tolist()  # row 0, for the check

    t_prefill = best_time(a.repeats, lambda: generate(model, prompt, 1))
    t_total = best_time(a.repeats, run_all)
    tokens = result["tokens"]
    t_decode = t_total - t_prefill  # <= 0 only when the machine is too noisy for N: null then
    out = {
        "impl": "python", "model": a.name or os.path.basename(os.path.normpath(a.model)),
        "dtype": a.dtype, "threads": torch.get_num_threads(), "params": params, "batch": a.batch,
        "prompt_len": a.prompt_len, "new_tokens": n, "prefill_s": t_prefill, "decode_s": t_decode,
        "prefill_tok_s": a.batch * a.prompt_len / t_prefill,
        "decode_tok_s": a.batch * (n - 1) / t_decode if t_decode > 0 else None, "tokens": tokens,
    }
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{out['model']} {a.dtype} ({params} params, {out['threads']} threads): prefill "
              f"{out['prefill_tok_s']:.1f} tok/s, decode {out['decode_tok_s']} tok/s")


if __name__ == "__main__":
    main()
