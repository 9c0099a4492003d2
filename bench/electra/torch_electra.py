"""bench/electra/torch_electra.py: PyTorch's ELECTRA training step on the
same rows kiln trains on, for bench/electra/run's speed comparison.

The model is tests/ref/torch_models.py's ElectraPair (Hugging Face's
ElectraForPreTraining + ElectraForMaskedLM rebuilt from torch.nn, the
embeddings module shared, the generator's decoder tied to the word
embeddings), initialized as Hugging Face's _init_weights (normal(0, 0.02),
the [PAD] row zero, LayerNorm 1 / 0, biases 0). A step, as kiln's
(trainer/electra.c):
  1. generator forward on the masked rows; logits at the masked positions only;
  2. one token per masked position drawn from softmax(logits) with
     torch.multinomial (no gradient through the draw);
  3. the corrupted rows: the draws at the masked positions; token label 1
     where the draw differs from the original token, 0 at the other real
     tokens;
  4. discriminator forward on them;
  loss = MLM (mean CE over the masked positions) + disc_weight * BCE over
  the real tokens (padding excluded); backward; clip_grad_norm_ 1.0; AdamW
  (decay / no-decay groups as kiln's), one optimizer over both towers.
No dropout (the benchmark sets kiln's to 0 too). Rows are padded to the
batch's L, as Hugging Face computes them; tokens/s counts the real tokens.

Input: the JSONL rows of `kiln sample --objective rtd` (input_ids,
token_type_ids, masked_positions, masked_ids), taken B at a time in order.
Prints one JSON object: ms per step, real tokens/s, CPU ms per step (of
the timed steps), peak RSS (before the profiled step), parameters, first and
last loss; with --profile-step, one more step under torch.profiler and the
operators' shares of its self CPU time.

Usage: /usr/bin/python3 bench/electra/torch_electra.py --rows FILE.jsonl
  [--steps N] [--warmup 2] [--threads 2] [--batch 16] [--seq-len 128]
  [--vocab-size V] [--embedding-size 128] [--hidden-size 256] [--layers 4]
  [--heads 4] [--intermediate 1024] [--generator-hidden-size 64]
  [--generator-heads 1] [--generator-intermediate 256] [--disc-weight 50]
  [--lr 2e-4] [--profile-step]
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "ref"))
import torch_models  # noqa: E402


def hf_init(model, std, pad):
    """Hugging Face's ElectraPreTrainedModel._init_weights"""
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.weight.data.normal_(0.0, std)
            if mod.bias is not None:
                mod.bias.data.zero_()
        elif isinstance(mod, torch.nn.Embedding):
            mod.weight.data.normal_(0.0, std)
            if mod.padding_idx is not None:
                mod.weight.data[mod.padding_idx].zero_()
        elif isinstance(mod, torch.nn.LayerNorm):
            mod.weight.data.fill_(1.0)
            mod.bias.data.zero_()
    # the tied decoder is the word embeddings (re-zero its [PAD] row, set above)
    model.electra.embeddings.word_embeddings.weight.data[pad].zero_()


def batches(path, B, L):
    """the rows of path, B at a time, padded to L: (ids, types, mask, mrow, mpos, mlab, tokens)"""
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    out = []
    for k in range(0, len(rows) - B + 1, B):
        chunk = rows[k:k + B]
        ids = torch.zeros(B, L, dtype=torch.long)
        types = torch.zeros(B, L, dtype=torch.long)
        mask = torch.zeros(B, L, dtype=torch.long)
        mrow, mpos, mlab = [], [], []
        for b, r in enumerate(chunk):
            n = len(r["input_ids"])
            ids[b, :n] = torch.tensor(r["input_ids"])
            types[b, :n] = torch.tensor(r["token_type_ids"])
            mask[b, :n] = 1
            mrow += [b] * len(r["masked_positions"])
            mpos += r["masked_positions"]
            mlab += r["masked_ids"]
        out.append((ids, types, mask, torch.tensor(mrow), torch.tensor(mpos), torch.tensor(mlab),
                    int(mask.sum())))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab-size", type=int, default=30522)
    ap.add_argument("--embedding-size", type=int, default=128)
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--generator-hidden-size", type=int, default=64)
    ap.add_argument("--generator-layers", type=int, default=0, help="0: --layers")
    ap.add_argument("--generator-heads", type=int, default=1)
    ap.add_argument("--generator-intermediate", type=int, default=256)
    ap.add_argument("--disc-weight", type=float, default=50.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile-step", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    c = dict(model_type="electra", vocab_size=a.vocab_size, embedding_size=a.embedding_size,
             hidden_size=a.hidden_size, num_hidden_layers=a.layers, num_hidden_groups=a.layers,
             num_attention_heads=a.heads, intermediate_size=a.intermediate, max_position_embeddings=512,
             type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0,
             generator_hidden_size=a.generator_hidden_size,
             generator_num_hidden_layers=a.generator_layers or a.layers,
             generator_num_attention_heads=a.generator_heads,
             generator_intermediate_size=a.generator_intermediate)
    model = torch_models.ElectraPair(c)
    hf_init(model, 0.02, 0)
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if not torch_models.no_decay(n)], "weight_decay": 0.01},
              {"params": [p for n, p in named if torch_models.no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-6)
    data = batches(a.rows, a.batch, a.seq_len)
    need = a.steps + a.warmup + (1 if a.profile_step else 0)
    if len(data) < need:
        sys.exit(f"{a.rows}: {len(data)} batches of {a.batch} rows, {need} needed")

    def step(batch):
        ids, types, mask, mrow, mpos, mlab, _ = batch
        opt.zero_grad(set_to_none=True)
        glog = model.generator(ids, types, mask, mrow, mpos)                   # (M, V)
        with torch.no_grad():
            draws = torch.multinomial(F.softmax(glog, dim=-1), 1).squeeze(1)  # (M)
            disc_ids = ids.clone()
            disc_ids[mrow, mpos] = draws
            labels = torch.zeros_like(ids)
            labels[mrow, mpos] = (draws != mlab).long()
            labels[mask == 0] = -1
        dlog = torch_models.ElectraForPreTraining.forward(model, disc_ids, types, mask)  # (B, L)
        mlm = F.cross_entropy(glog, mlab)
        disc = torch_models.disc_loss(dlog, labels)
        loss = mlm + a.disc_weight * disc
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss), float(mlm), float(disc), float((labels == 1).sum()) / float(mask.sum())

    first = None
    for k in range(a.warmup):
        first = step(data[k])
    t, cpu, tokens = time.perf_counter(), time.process_time(), 0
    for k in range(a.warmup, a.warmup + a.steps):
        last = step(data[k])
        tokens += data[k][6]
    dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    profile = None
    if a.profile_step:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step(data[need - 1])
        ev = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
        total = sum(x for _, x in ev)
        profile = {"self_cpu_ms": round(total / 1e3, 1),
                   "top": [(k, round(x / total, 4)) for k, x in sorted(ev, key=lambda e: -e[1])[:10]]}
    print(json.dumps({"threads": torch.get_num_threads(), "steps": a.steps, "warmup_steps": a.warmup,
                      "ms_per_step": round(dt / a.steps * 1e3, 2),
                      "cpu_ms_per_step": round(dcpu / a.steps * 1e3, 2),
                      "tokens_per_s": round(tokens / dt, 1), "real_tokens": tokens,
                      "padded_tokens": a.steps * a.batch * a.seq_len,
                      "params": sum(p.numel() for p in model.parameters()),
                      "max_rss_mb": round(rss, 1), "profile": profile,
                      "loss_first": round(first[0], 4) if first else None, "loss_last": round(last[0], 4),
                      "mlm_loss_last": round(last[1], 4), "disc_loss_last": round(last[2], 4),
                      "replaced_fraction_last": round(last[3], 4), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
