"""tests/ref/torch_bench.py: PyTorch's speed on the trainer's benchmark
configuration, for comparison with `kiln_trainer_ref bench`.

ALBERT V 30000, E 128, H 256, 4 layers sharing one group, 4 heads, FFN 1024,
gelu_new, seq 128, batch 16, 20 masked positions per row (MLM head on those
rows only), SOP, no dropout, AdamW (decay / no-decay groups) with gradient
clipping at 1.0. Runs with 2 threads (torch.set_num_threads) unless
--threads says otherwise; prints one JSON object.

--variant picks the PyTorch model:
  ref           (default) torch_models.build: Hugging Face's
                AlbertForPreTraining / BertForPreTraining rebuilt op by op,
                with the additive attention mask (what the parity test checks)
  encoder       torch_models.build_encoder: the strongest plain fp32 PyTorch
                model of the same shape, on nn.TransformerEncoderLayer (no
                attention mask: the rows are full length; erf GELU, the
                layer's fused activation, in place of gelu_new); ALBERT applies
                one layer module 4 times, BERT has 4 layers. Forward-only
                timing runs in eval mode (dropout is 0 anyway), which lets
                the layer take PyTorch's fused inference fast path.
  encoder-bf16  the same model in bfloat16: first torch.autocast("cpu",
                bfloat16) around forward + loss with fp32 master weights; if
                the first step raises (or its loss is not finite), the model is
                rebuilt from the same seed and cast whole to bfloat16 (AdamW
                on bf16 parameters, the loss taken on the logits cast to
                fp32). "bf16_mode" says which ran: "autocast" or "cast".
The JSON carries "variant"; peak RSS is the process's, so run one variant per
process.

Usage: /usr/bin/python3 tests/ref/torch_bench.py [--steps N] [--threads T] [--model albert|bert]
       [--variant ref|encoder|encoder-bf16]
"""
import argparse
import contextlib
import json
import math
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
    ap.add_argument("--variant", default="ref", choices=["ref", "encoder", "encoder-bf16"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bert = a.model == "bert"
    c = dict(model_type=a.model, vocab_size=30000, embedding_size=256 if bert else 128, hidden_size=256,
             num_hidden_layers=4, num_hidden_groups=4 if bert else 1, num_attention_heads=4,
             intermediate_size=1024, max_position_embeddings=512, type_vocab_size=2,
             hidden_act="gelu" if bert else "gelu_new", layer_norm_eps=1e-12, pad_token_id=0)
    B, L, P = 16, 128, 20
    # bf16_mode: None (fp32), "autocast" (fp32 weights, bf16 compute) or "cast" (bf16 weights)
    bf16_mode = "autocast" if a.variant == "encoder-bf16" else None

    def build():
        """(model, optimizer) for the variant and bf16_mode; seeded, so a rebuild starts the same"""
        torch.manual_seed(0)
        model = torch_models.build(c) if a.variant == "ref" else torch_models.build_encoder(c)
        if bf16_mode == "cast":
            model.to(torch.bfloat16)
        named = list(model.named_parameters())
        groups = [{"params": [p for n, p in named if not torch_models.no_decay(n)], "weight_decay": 0.01},
                  {"params": [p for n, p in named if torch_models.no_decay(n)], "weight_decay": 0.0}]
        return model, torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), eps=1e-6)

    model, opt = build()
    ids = torch.randint(5, c["vocab_size"], (B, L))
    types = (torch.arange(L) > L // 2).long().expand(B, L).contiguous()
    mask = torch.ones(B, L, dtype=torch.long)
    mrow = torch.arange(B).repeat_interleave(P)
    mpos = torch.stack([torch.randperm(L - 1)[:P].sort().values + 1 for _ in range(B)]).reshape(-1)
    mlab = torch.randint(5, c["vocab_size"], (B * P,))
    mw = torch.ones(B * P)
    slab = torch.randint(0, 2, (B,))

    def compute():
        """autocast around forward + loss in autocast mode, nothing otherwise"""
        if bf16_mode == "autocast":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with compute():
            lg, sl = model(ids, types, mask, mrow, mpos)
            # .float(): a no-op in fp32; the loss on fp32 logits for bf16
            mlm, sop = torch_models.losses(lg.float(), sl.float(), mlab, mw, slab)
        (mlm + sop).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(mlm + sop)

    autocast_error = None
    if bf16_mode == "autocast":
        try:
            first = step()
            if not math.isfinite(first):
                raise FloatingPointError(f"loss {first} at the first step")
        except Exception as e:  # noqa: BLE001 - any failure of autocast means: use the cast model
            autocast_error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            bf16_mode = "cast"
            model, opt = build()
    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    dt = (time.perf_counter() - t) / a.steps
    if a.variant != "ref":
        model.eval()  # dropout is 0: same math, and nn.TransformerEncoderLayer may take its fast path
    with torch.no_grad(), compute():
        t = time.perf_counter()
        for _ in range(a.steps):
            model(ids, types, mask, mrow, mpos)
        tf = (time.perf_counter() - t) / a.steps
    out = {"model": a.model, "variant": a.variant, "threads": torch.get_num_threads(), "steps": a.steps,
           "ms_per_step": round(dt * 1e3, 2), "forward_ms": round(tf * 1e3, 2),
           "tokens_per_s": round(B * L / dt), "params": sum(p.numel() for p in model.parameters()),
           "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "loss_last": round(loss, 4), "torch": torch.__version__}
    if a.variant == "encoder-bf16":
        out["bf16_mode"] = bf16_mode
        if autocast_error is not None:
            out["autocast_error"] = autocast_error
    print(json.dumps(out))


if __name__ == "__main__":
    main()
