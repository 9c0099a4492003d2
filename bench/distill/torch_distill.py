"""bench/distill/torch_distill.py: one DistilBERT distillation training step
in PyTorch (plain torch.nn), to time against kiln's same step
(trainer/distill.h, method distilbert) in the same benchmark run.

Models (Hugging Face's math, random init normal(0, 0.02), biases 0,
LayerNorm 1 / 0, the padding row of the word embeddings 0):
  teacher  BertForMaskedLM: vocab V, hidden 256, 6 layers, 4 heads, FFN 1024,
           gelu (erf), 512 positions, 2 token types, LayerNorm eps 1e-12;
           post-LN blocks; MLM head transform.dense -> gelu -> LayerNorm ->
           decoder tied to the word embeddings + bias. Eval mode, no grad,
           no dropout.
  student  DistilBertForMaskedLM: dim 256, 3 layers, 4 heads, hidden_dim
           1024, gelu, no token types; dropout --dropout (default 0.1) after
           the embedding LayerNorm, on the attention probabilities and after
           FFN lin2 (HF's placements; none after out_lin); vocab_transform ->
           gelu -> vocab_layer_norm -> vocab_projector tied to the word
           embeddings + its own bias.
Batch (fixed seed): B rows of L, row b real for lengths[b] drawn in
[L/2, L], id 2 ([CLS]) at position 0, random ids in [5, V) after it, 0
(padding) beyond the length; P masked positions per row among the real
positions 1 .. len-1, their input replaced by [MASK] = 4, labels = the
original ids. Attention mask = the real tokens (additive finfo.min on padded
keys).
Step (the timed unit): teacher forward under torch.no_grad(); student
forward (train mode); the masked rows of both last hidden states gathered
BEFORE the MLM heads (only the M = B P masked rows go through the vocab
projections, as kiln does);
  loss = 5.0 L_ce + 2.0 L_mlm + 1.0 L_cos,  T = 2
  L_ce  = KLDivLoss(batchmean)(log_softmax(s / T), softmax(t / T)) T^2 over
          the M masked rows;
  L_mlm = cross-entropy of the student's logits at the masked rows;
  L_cos = CosineEmbeddingLoss(target 1) between the student's and the
          teacher's last hidden states at the real (non-pad) positions;
(every step the same fixed batch) backward, clip_grad_norm_ 5.0, AdamW (lr 5e-4, betas 0.9 / 0.98, eps 1e-6,
weight decay 0.01 off biases and LayerNorms, as kiln's default groups),
zero_grad(set_to_none). The first --warmup steps are not timed.

Modes:
  (default)  time the training step; prints one JSON object: ms per step
             (mean and min over the timed steps), CPU ms per step, tokens/s
             (real tokens = sum of lengths, per second of the mean step),
             teacher and student params, first / last loss and its terms,
             torch version, threads, peak RSS.
  --check    30 steps on the same fixed batch; asserts the loss went down
             (last < 0.9 first); prints the losses as JSON.
  --infer    eval-mode forward, no grad, of the teacher and of the student on
             the same batch (MLM logits at the masked rows): ms per batch of
             each (mean and min over --steps after --warmup) and the
             speed-up teacher / student.

Usage: /usr/bin/python3 bench/distill/torch_distill.py [--vocab 8000]
    [--batch 16] [--seq 128] [--masked 20] [--threads 2] [--steps 10]
    [--warmup 2] [--dropout 0.1] [--seed 0] [--check | --infer]
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, CLS, MASK = 0, 2, 4
ALPHA_CE, ALPHA_MLM, ALPHA_COS, TEMP = 5.0, 2.0, 1.0, 2.0


def gelu(x):
    return F.gelu(x)  # the erf form


def attention(q, k, v, mask_add, nh, drop=None):
    B, L, H = q.shape
    d = H // nh
    q = q.view(B, L, nh, d).transpose(1, 2)
    k = k.view(B, L, nh, d).transpose(1, 2)
    v = v.view(B, L, nh, d).transpose(1, 2)
    s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d)) + mask_add
    p = F.softmax(s, dim=-1)
    if drop is not None:
        p = drop(p)
    return torch.matmul(p, v).transpose(1, 2).reshape(B, L, H)


def mask_add(attn_mask):
    return (~attn_mask[:, None, None, :].bool()).float() * torch.finfo(torch.float32).min


def init_hf(model):
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        elif "LayerNorm" in name or "layer_norm" in name:
            nn.init.ones_(p)
        else:
            nn.init.normal_(p, 0.0, 0.02)
    with torch.no_grad():
        model.word_embeddings.weight[PAD].zero_()


def no_decay(name):
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


# ---- teacher: BertForMaskedLM ------------------------------------------------------

class BertLayer(nn.Module):
    def __init__(self, H, nh, I, eps):
        super().__init__()
        self.nh = nh
        self.query, self.key, self.value, self.attn_out = (nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H),
                                                           nn.Linear(H, H))
        self.attn_LayerNorm = nn.LayerNorm(H, eps=eps)
        self.intermediate = nn.Linear(H, I)
        self.output = nn.Linear(I, H)
        self.out_LayerNorm = nn.LayerNorm(H, eps=eps)

    def forward(self, x, m):
        a = self.attn_LayerNorm(self.attn_out(attention(self.query(x), self.key(x), self.value(x), m, self.nh)) + x)
        return self.out_LayerNorm(self.output(gelu(self.intermediate(a))) + a)


class BertForMaskedLM(nn.Module):
    def __init__(self, V, H=256, n_layer=6, nh=4, I=1024, P=512, types=2, eps=1e-12):
        super().__init__()
        self.word_embeddings = nn.Embedding(V, H, padding_idx=PAD)
        self.position_embeddings = nn.Embedding(P, H)
        self.token_type_embeddings = nn.Embedding(types, H)
        self.emb_LayerNorm = nn.LayerNorm(H, eps=eps)
        self.layer = nn.ModuleList([BertLayer(H, nh, I, eps) for _ in range(n_layer)])
        self.transform = nn.Linear(H, H)
        self.transform_LayerNorm = nn.LayerNorm(H, eps=eps)
        self.decoder_bias = nn.Parameter(torch.zeros(V))
        init_hf(self)

    def hidden(self, ids, types, m):
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        h = self.emb_LayerNorm(self.word_embeddings(ids) + self.position_embeddings(pos) +
                               self.token_type_embeddings(types))
        for layer in self.layer:
            h = layer(h, m)
        return h

    def mlm(self, hm):
        """logits (M, V) of the gathered rows hm (M, H)"""
        return F.linear(self.transform_LayerNorm(gelu(self.transform(hm))), self.word_embeddings.weight,
                        self.decoder_bias)


# ---- student: DistilBertForMaskedLM ---------------------------------------------------

class DistilBlock(nn.Module):
    def __init__(self, H, nh, I, p, pa):
        super().__init__()
        self.nh = nh
        self.q_lin, self.k_lin, self.v_lin, self.out_lin = (nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H),
                                                            nn.Linear(H, H))
        self.attn_drop = nn.Dropout(pa)
        self.sa_layer_norm = nn.LayerNorm(H, eps=1e-12)
        self.lin1 = nn.Linear(H, I)
        self.lin2 = nn.Linear(I, H)
        self.ffn_drop = nn.Dropout(p)
        self.output_layer_norm = nn.LayerNorm(H, eps=1e-12)

    def forward(self, x, m):
        sa = self.sa_layer_norm(self.out_lin(attention(self.q_lin(x), self.k_lin(x), self.v_lin(x), m, self.nh,
                                                       self.attn_drop)) + x)
        return self.output_layer_norm(self.ffn_drop(self.lin2(gelu(self.lin1(sa)))) + sa)


class DistilBertForMaskedLM(nn.Module):
    def __init__(self, V, H=256, n_layer=3, nh=4, I=1024, P=512, dropout=0.1, attn_dropout=0.1):
        super().__init__()
        self.word_embeddings = nn.Embedding(V, H, padding_idx=PAD)
        self.position_embeddings = nn.Embedding(P, H)
        self.LayerNorm = nn.LayerNorm(H, eps=1e-12)
        self.emb_drop = nn.Dropout(dropout)
        self.layer = nn.ModuleList([DistilBlock(H, nh, I, dropout, attn_dropout) for _ in range(n_layer)])
        self.vocab_transform = nn.Linear(H, H)
        self.vocab_layer_norm = nn.LayerNorm(H, eps=1e-12)
        self.vocab_projector_bias = nn.Parameter(torch.zeros(V))  # the projector's weight: word_embeddings
        init_hf(self)

    def hidden(self, ids, m):
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        h = self.emb_drop(self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(pos)))
        for layer in self.layer:
            h = layer(h, m)
        return h

    def mlm(self, hm):
        return F.linear(self.vocab_layer_norm(gelu(self.vocab_transform(hm))), self.word_embeddings.weight,
                        self.vocab_projector_bias)


# ---- batch ---------------------------------------------------------------------------

def make_batch(V, B, L, P, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    if int(lengths.min()) - 1 < P:
        raise SystemExit(f"--masked {P}: rows as short as {int(lengths.min())} tokens (L/2) have fewer real positions")
    orig = torch.randint(5, V, (B, L), generator=g)
    orig[:, 0] = CLS
    attn = (torch.arange(L)[None, :] < lengths[:, None]).long()
    orig = orig * attn  # padding id 0 beyond the length
    mrow = torch.arange(B).repeat_interleave(P)
    mpos = torch.cat([torch.randperm(int(n) - 1, generator=g)[:P].sort().values + 1 for n in lengths])
    labels = orig[mrow, mpos].clone()
    ids = orig.clone()
    ids[mrow, mpos] = MASK
    types = torch.zeros(B, L, dtype=torch.long)
    return dict(ids=ids, types=types, attn=attn, m=mask_add(attn), mrow=mrow, mpos=mpos, labels=labels,
                real=attn.bool(), tokens=int(lengths.sum()))


def load_rows(path, B, limit):
    """Batches of B rows from `kiln sample --format jsonl` (input_ids already
    masked, masked_positions / masked_ids the labels), each padded to its
    longest row (dynamic padding, as transformers' collators do)."""
    rows = []
    with open(path) as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) >= B * limit:
                break
    batches = []
    for k in range(0, len(rows) - B + 1, B):
        part = rows[k:k + B]
        L = max(r["length"] for r in part)
        ids = torch.zeros(B, L, dtype=torch.long)
        types = torch.zeros(B, L, dtype=torch.long)
        attn = torch.zeros(B, L, dtype=torch.long)
        mrow, mpos, labels = [], [], []
        for i, r in enumerate(part):
            n = r["length"]
            ids[i, :n] = torch.tensor(r["input_ids"][:n])
            types[i, :n] = torch.tensor(r["token_type_ids"][:n])
            attn[i, :n] = 1
            for p_, t_ in zip(r["masked_positions"], r["masked_ids"]):
                mrow.append(i), mpos.append(p_), labels.append(t_)
        batches.append(dict(ids=ids, types=types, attn=attn, m=mask_add(attn), mrow=torch.tensor(mrow),
                            mpos=torch.tensor(mpos), labels=torch.tensor(labels), real=attn.bool(),
                            tokens=int(attn.sum())))
    if not batches:
        raise SystemExit(f"{path}: fewer than {B} rows")
    return batches


# ---- the step --------------------------------------------------------------------------

def make_step(teacher, student, opt):
    cos = nn.CosineEmbeddingLoss()

    def step(b):
        with torch.no_grad():
            th = teacher.hidden(b["ids"], b["types"], b["m"])
            t_logits = teacher.mlm(th[b["mrow"], b["mpos"]])
        sh = student.hidden(b["ids"], b["m"])
        s_logits = student.mlm(sh[b["mrow"], b["mpos"]])
        l_ce = F.kl_div(F.log_softmax(s_logits / TEMP, dim=-1), F.softmax(t_logits / TEMP, dim=-1),
                        reduction="batchmean") * (TEMP ** 2)
        l_mlm = F.cross_entropy(s_logits, b["labels"])
        s_real, t_real = sh[b["real"]], th[b["real"]]
        l_cos = cos(s_real, t_real, torch.ones(s_real.shape[0]))
        loss = ALPHA_CE * l_ce + ALPHA_MLM * l_mlm + ALPHA_COS * l_cos
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(loss), "ce": float(l_ce), "mlm": float(l_mlm), "cos": float(l_cos)}

    return step


def nparams(model):
    return sum(p.numel() for p in model.parameters())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--masked", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.1, help="student dropout and attention dropout")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", help="kiln sample --format jsonl rows: real batches (--batch rows each, padded to "
                                   "their longest) instead of the synthetic one; the steps walk them in order")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="30 steps on one fixed batch; assert the loss fell")
    mode.add_argument("--infer", action="store_true", help="time eval forward of teacher vs student")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    teacher = BertForMaskedLM(a.vocab)
    student = DistilBertForMaskedLM(a.vocab, dropout=a.dropout, attn_dropout=a.dropout)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    batches = load_rows(a.rows, a.batch, a.warmup + a.steps) if a.rows else None
    batch = batches[0] if batches else make_batch(a.vocab, a.batch, a.seq, a.masked, a.seed)
    common = {"torch": torch.__version__, "threads": torch.get_num_threads(), "vocab": a.vocab, "batch": a.batch,
              "seq": a.seq, "masked_per_row": a.masked, "real_tokens": batch["tokens"],
              "teacher_params": nparams(teacher), "student_params": nparams(student)}

    if a.infer:
        student.eval()
        b = batch

        def t_fwd():
            return teacher.mlm(teacher.hidden(b["ids"], b["types"], b["m"])[b["mrow"], b["mpos"]])

        def s_fwd():
            return student.mlm(student.hidden(b["ids"], b["m"])[b["mrow"], b["mpos"]])

        out = dict(common, mode="infer", steps=a.steps, warmup_steps=a.warmup)
        with torch.no_grad():
            for name, f in (("teacher", t_fwd), ("student", s_fwd)):
                for _ in range(a.warmup):
                    f()
                ts = []
                for _ in range(a.steps):
                    t0 = time.perf_counter()
                    f()
                    ts.append(time.perf_counter() - t0)
                out[name + "_ms_per_batch"] = round(sum(ts) / len(ts) * 1e3, 2)
                out[name + "_ms_min"] = round(min(ts) * 1e3, 2)
                out[name + "_tokens_per_s"] = round(b["tokens"] * len(ts) / sum(ts), 1)
        out["speedup"] = round(out["teacher_ms_per_batch"] / out["student_ms_per_batch"], 3)
        print(json.dumps(out))
        return

    student.train()
    named = list(student.named_parameters())
    groups = [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": 0.01},
              {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    step = make_step(teacher, student, opt)

    if a.check:
        losses = [step(batch)["loss"] for _ in range(30)]
        ok = losses[-1] < 0.9 * losses[0]
        print(json.dumps(dict(common, mode="check", loss_first=round(losses[0], 4), loss_last=round(losses[-1], 4),
                              losses=[round(x, 4) for x in losses], ok=ok)))
        assert ok, f"loss did not go down: {losses[0]:.4f} -> {losses[-1]:.4f}"
        return

    # the same fixed batch every step (the shapes and the lengths kiln's side is given)
    def nth(k):  # the k-th step's batch: the rows file's in order (cycled), or the fixed one
        return batches[k % len(batches)] if batches else batch

    first = None
    for k in range(a.warmup):
        r = step(nth(k))
        first = first or r
    ts, toks = [], 0
    cpu = time.process_time()
    for k in range(a.steps):
        b = nth(a.warmup + k)
        t0 = time.perf_counter()
        r = step(b)
        ts.append(time.perf_counter() - t0)
        toks += b["tokens"]
        first = first or r
    dcpu = time.process_time() - cpu
    print(json.dumps(dict(common, mode="train", steps=a.steps, warmup_steps=a.warmup, dropout=a.dropout,
                          ms_per_step=round(sum(ts) / len(ts) * 1e3, 2), ms_per_step_min=round(min(ts) * 1e3, 2),
                          cpu_ms_per_step=round(dcpu / len(ts) * 1e3, 2),
                          tokens_per_s=round(toks / sum(ts), 1),
                          max_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                          loss_first=round(first["loss"], 4), loss_last=round(r["loss"], 4),
                          terms_last={k: round(v, 4) for k, v in r.items() if k != "loss"})))


if __name__ == "__main__":
    main()
