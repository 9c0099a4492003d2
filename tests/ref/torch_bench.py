"""tests/ref/torch_bench.py: PyTorch's speed on the trainer's benchmark
configuration, for comparison with `kiln_trainer_ref bench`.

ALBERT V 30000, E 128, H 256, 4 layers sharing one group, 4 heads, FFN 1024,
gelu_new, seq 128, batch 16, 20 masked positions per row (MLM head on those
rows only), SOP, no dropout, AdamW (decay / no-decay groups) with gradient
clipping at 1.0. Runs with 2 threads (torch.set_num_threads) unless
--threads says otherwise; prints one JSON object.

Usage: /usr/bin/python3 tests/ref/torch_bench.py [--steps N] [--threads T] [--model albert|bert]
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="albert")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bert = a.model == "bert"
    c = dict(model_type=a.model, vocab_size=30000, embedding_size=256 if bert else 128, hidden_size=256,
             num_hidden_layers=4, num_hidden_groups=4 if bert else 1, num_attention_heads=4,
             intermediate_size=1024, max_position_embeddings=512, type_vocab_size=2,
             hidden_act="gelu" if bert else "gelu_new", layer_norm_eps=1e-12, pad_token_id=0)
    B, L, P = 16, 128, 20
    model = torch_models.build(c)
    ids = torch.randint(5, c["vocab_size"], (B, L))
    types = (torch.arange(L) > L // 2).long().expand(B, L).contiguous()
    mask = torch.ones(B, L, dtype=torch.long)
    mrow = torch.arange(B).repeat_interleave(P)
    mpos = torch.stack([torch.randperm(L - 1)[:P].sort().values + 1 for _ in range(B)]).reshape(-1)
    mlab = torch.randint(5, c["vocab_size"], (B * P,))
    mw = torch.ones(B * P)
    slab = torch.randint(0, 2, (B,))
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if not torch_models.no_decay(n)], "weight_decay": 0.01},
              {"params": [p for n, p in named if torch_models.no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-6)

    def step():
        opt.zero_grad(set_to_none=True)
        lg, sl = model(ids, types, mask, mrow, mpos)
        mlm, sop = torch_models.losses(lg, sl, mlab, mw, slab)
        (mlm + sop).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(mlm + sop)

    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    dt = (time.perf_counter() - t) / a.steps
    with torch.no_grad():
        t = time.perf_counter()
        for _ in range(a.steps):
            model(ids, types, mask, mrow, mpos)
        tf = (time.perf_counter() - t) / a.steps
    print(json.dumps({"model": a.model, "threads": torch.get_num_threads(), "steps": a.steps,
                      "ms_per_step": round(dt * 1e3, 2), "forward_ms": round(tf * 1e3, 2),
                      "tokens_per_s": round(B * L / dt), "params": sum(p.numel() for p in model.parameters()),
                      "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "loss_last": round(loss, 4), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
