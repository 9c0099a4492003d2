"""bench/gpt/torch_gpt.py: a PyTorch GPT-2 written in plain torch.nn, for
bench/gpt/run's comparison with kiln's GPT-2 (model.type gpt2).

The model is Hugging Face's GPT2LMHeadModel's math: learned word and position
embeddings (wte + wpe), n_layer pre-LN blocks (ln_1, causal self-attention
with q, k, v from one c_attn projection, c_proj; ln_2, MLP c_fc -> gelu_new
(the tanh approximation) -> c_proj; residuals around both), a final ln_f and
the LM head tied to wte. The Conv1D layers (weight [in, out]) are
torch.nn.Linear (weight [out, in], the same product); a kiln export's
Conv1D weights are transposed on load. torch 1.13 has no
F.scaled_dot_product_attention, so attention is the usual masked softmax
(scores + a precomputed additive causal mask, softmax, @ v), batched over
heads. Initialisation as Hugging Face's _init_weights: normal(0, 0.02), each
block's two c_proj weights normal(0, 0.02 / sqrt(2 n_layer)), biases 0,
LayerNorm 1 / 0. Dropout: --dropout (resid, embd and attn; the bench sets 0
on both sides).

  train: the training step on the rows of `kiln sample --objective clm`
    (JSON lines with input_ids, full windows of --seq-len), B rows a step in
    order: loss = mean next-token cross entropy over every position but the
    last (as kiln's lm_loss and HF's shifted labels), backward,
    clip_grad_norm_ 1.0, AdamW (betas 0.9 / 0.999, eps 1e-6, weight decay
    0.01 off biases and LayerNorms: kiln's defaults), constant lr. The first
    --warmup steps are not timed. Prints one JSON object: tokens/s and ms per
    step of the timed steps, CPU ms per step, peak RSS (getrusage), params,
    first and last loss.
  generate: greedy decoding with a key/value cache as Hugging Face's
    (past_key_values: each layer's keys and values concatenated with the new
    position's at every step), from a kiln export folder (model.safetensors,
    config.json), the prompt given as ids. Prints one JSON object: the new
    ids, seconds of the prefill and of the decode, tokens/s of the new tokens
    (decode only, and prefill + decode), the load time.

Usage:
  /usr/bin/python3 bench/gpt/torch_gpt.py train --rows FILE.jsonl --vocab-size V
      [--steps 6] [--warmup 2] [--threads 2] [--batch 16] [--seq-len 256]
      [--n-embd 256] [--n-layer 4] [--n-head 4] [--n-positions 256] [--lr 3e-4]
      [--dropout 0]
  /usr/bin/python3 bench/gpt/torch_gpt.py generate --model DIR --prompt-ids "1 2 3"
      [--max-new-tokens 256] [--threads 2]
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, H, nh, P, pdrop):
        super().__init__()
        self.nh, self.hd = nh, H // nh
        self.c_attn = nn.Linear(H, 3 * H)
        self.c_proj = nn.Linear(H, H)
        self.attn_drop = nn.Dropout(pdrop)
        self.resid_drop = nn.Dropout(pdrop)
        mask = torch.full((P, P), torch.finfo(torch.float32).min).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x, past=None):
        B, L, H = x.shape
        qkv = self.c_attn(x).view(B, L, 3, self.nh, self.hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                  # (B, nh, L, hd)
        if past is not None:                              # HF's past_key_values
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        T = k.shape[2]
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
        if L > 1:                                         # one new query sees every cached key
            s = s + self.mask[T - L:T, :T]
        p = self.attn_drop(F.softmax(s, dim=-1))
        o = torch.matmul(p, v).transpose(1, 2).reshape(B, L, H)
        return self.resid_drop(self.c_proj(o)), (k, v)


class Block(nn.Module):
    def __init__(self, H, nh, P, eps, pdrop):
        super().__init__()
        self.ln_1 = nn.LayerNorm(H, eps=eps)
        self.attn = Attention(H, nh, P, pdrop)
        self.ln_2 = nn.LayerNorm(H, eps=eps)
        self.c_fc = nn.Linear(H, 4 * H)
        self.c_proj = nn.Linear(4 * H, H)
        self.drop = nn.Dropout(pdrop)

    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        m = self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))  # gelu_new
        return x + self.drop(m), present


class GPT2(nn.Module):
    def __init__(self, V, H, n_layer, nh, P, eps=1e-5, pdrop=0.0):
        super().__init__()
        self.wte = nn.Embedding(V, H)
        self.wpe = nn.Embedding(P, H)
        self.drop = nn.Dropout(pdrop)
        self.h = nn.ModuleList([Block(H, nh, P, eps, pdrop) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(H, eps=eps)
        for name, p in self.named_parameters():   # HF's _init_weights
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_"):
                nn.init.ones_(p)
            elif name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def hidden(self, ids, past=None):
        start = 0 if past is None else past[0][0].shape[2]
        pos = torch.arange(start, start + ids.shape[1])
        x = self.drop(self.wte(ids) + self.wpe(pos))
        presents = []
        for i, block in enumerate(self.h):
            x, pr = block(x, None if past is None else past[i])
            presents.append(pr)
        return self.ln_f(x), presents

    def logits(self, h):
        """the LM head tied to wte; one position (decoding) as W @ h: torch 1.13's generic-BLAS
        build runs that matrix-vector product ~2x faster than linear's (1, H) x (H, V) mm"""
        if h.dim() == 1:
            return torch.matmul(self.wte.weight, h)
        return F.linear(h, self.wte.weight)


def no_decay(name):
    return name.endswith("bias") or ".ln_" in name or name.startswith("ln_")


def train(a):
    torch.manual_seed(0)
    rows = []
    for line in open(a.rows, encoding="utf-8"):
        if line.strip():
            ids = json.loads(line)["input_ids"]
            if len(ids) != a.seq_len:
                sys.exit(f"{a.rows}: a row of {len(ids)} tokens, not {a.seq_len}")
            rows.append(ids)
    need = (a.steps + a.warmup) * a.batch
    if len(rows) < need:
        sys.exit(f"{a.rows}: {len(rows)} rows, {need} needed")
    data = [torch.tensor(rows[k:k + a.batch], dtype=torch.long) for k in range(0, need, a.batch)]
    model = GPT2(a.vocab_size, a.n_embd, a.n_layer, a.n_head, a.n_positions, pdrop=a.dropout)
    model.train()
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": 0.01},
              {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-6)
    V = a.vocab_size

    def step(ids):
        opt.zero_grad(set_to_none=True)
        h, _ = model.hidden(ids)
        # no target after the last position; reshape copies the (non-contiguous) slice into one
        # (B (L - 1), H) matrix: linear on the 3-D view would go through torch 1.13's bmm (generic
        # BLAS here), 10x slower than its 2-D mm
        logits = model.logits(h[:, :-1].reshape(-1, h.shape[-1]))
        loss = F.cross_entropy(logits, ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss)

    first = None
    for k in range(a.warmup):
        first = step(data[k])
    t, cpu = time.perf_counter(), time.process_time()
    for k in range(a.warmup, a.warmup + a.steps):
        last = step(data[k])
        if first is None:
            first = last
    dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
    tokens = a.steps * a.batch * a.seq_len
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": a.steps,
                      "warmup_steps": a.warmup, "batch": a.batch, "seq_len": a.seq_len,
                      "ms_per_step": round(dt / a.steps * 1e3, 2),
                      "cpu_ms_per_step": round(dcpu / a.steps * 1e3, 2),
                      "tokens_per_s": round(tokens / dt, 2),
                      "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "params": sum(p.numel() for p in model.parameters()),
                      "loss_first": first, "loss_last": last}))


DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=DTYPES[t["dtype"]]).reshape(t["shape"]).copy()
    return out


def load_export(folder):
    """kiln export's GPT2LMHeadModel folder -> GPT2 (Conv1D [in, out] weights transposed)"""
    cfg = json.load(open(os.path.join(folder, "config.json")))
    H, L = cfg["n_embd"], cfg["n_layer"]
    assert (cfg.get("n_inner") or 4 * H) == 4 * H and cfg["activation_function"] == "gelu_new", cfg
    model = GPT2(cfg["vocab_size"], H, L, cfg["n_head"], cfg["n_positions"], cfg["layer_norm_epsilon"])
    T = read_safetensors(os.path.join(folder, "model.safetensors"))
    sd = {}
    for name, v in T.items():
        n = name[len("transformer."):] if name.startswith("transformer.") else name
        n = n.replace(".mlp.c_fc", ".c_fc").replace(".mlp.c_proj", ".c_proj")
        if n == "lm_head.weight":
            continue
        if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.T.copy()                          # Conv1D [in, out] -> Linear [out, in]
        sd[n] = torch.from_numpy(v)
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model, cfg


@torch.no_grad()
def generate(a):
    t0 = time.perf_counter()
    model, cfg = load_export(a.model)
    load_s = time.perf_counter() - t0
    prompt = [int(x) for x in a.prompt_ids.split()]
    # as kiln: the last of n_positions positions still predicts one token
    n_new = min(a.max_new_tokens, cfg["n_positions"] - len(prompt) + 1)
    eot = cfg.get("eos_token_id")
    t1 = time.perf_counter()
    h, past = model.hidden(torch.tensor([prompt]))
    nxt = int(torch.argmax(model.logits(h[0, -1])))   # the first id on ties, as kiln
    t2 = time.perf_counter()
    new = [nxt]
    while len(new) < n_new and not (a.stop_at_eot and nxt == eot):
        h, past = model.hidden(torch.tensor([[nxt]]), past)
        nxt = int(torch.argmax(model.logits(h[0, -1])))
        new.append(nxt)
    t3 = time.perf_counter()
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "prompt_tokens": len(prompt), "new_tokens": len(new), "ids": new,
                      "load_s": round(load_s, 4), "prefill_s": round(t2 - t1, 4), "decode_s": round(t3 - t2, 4),
                      # the first new token comes from the prefill, the others from decode steps
                      "decode_tokens_per_s": round((len(new) - 1) / (t3 - t2), 2),
                      "tokens_per_s": round(len(new) / (t3 - t1), 2),
                      "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--rows", required=True)
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--steps", type=int, default=6)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--seq-len", type=int, default=256)
    t.add_argument("--n-embd", type=int, default=256)
    t.add_argument("--n-layer", type=int, default=4)
    t.add_argument("--n-head", type=int, default=4)
    t.add_argument("--n-positions", type=int, default=256)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--dropout", type=float, default=0.0)
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--prompt-ids", required=True)
    g.add_argument("--max-new-tokens", type=int, default=256)
    g.add_argument("--stop-at-eot", action="store_true")
    for p in (t, g):
        p.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    train(a) if a.cmd == "train" else generate(a)


if __name__ == "__main__":
    main()
