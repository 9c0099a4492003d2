#!/usr/bin/python3
"""transe_torch.py: the PyTorch reference of kiln's TransE trainer (kg/transe.c)
with the same configuration, for bench/transe/run's time-per-epoch comparison.

Same model and training as kiln's defaults:
  * score -||e_h + r - e_t||_p (p = --norm), embeddings uniform in
    [-(gamma + 2) / D, (gamma + 2) / D] (RotatE's range);
  * each positive gives one query: the head is corrupted with the relation's
    "bern" probability tph / (tph + hpt), otherwise the tail;
  * queries are cut into chunks of --share consecutive queries that share
    --neg uniformly drawn negative entities; a negative equal to the query's
    target is masked;
  * self-adversarial loss (RotatE): 1/2 [softplus(d+ - gamma) +
    sum_j p_j softplus(gamma - d_j)], p = softmax(-alpha d) detached, mean
    over the queries;
  * lazy Adam: nn.Embedding(sparse=True) + torch.optim.SparseAdam.
The random streams differ from kiln's (torch's generator), so the numbers are
not bit-identical; the work per epoch is the same.

Negative distances: --impl cdist uses torch.cdist (its fused p-norm kernel),
--impl broadcast materializes the (C, S, K, D) differences. run uses cdist,
the faster of the two here.

Usage: transe_torch.py DATA_DIR [--epochs N] [--dim D] [--neg K] [--share S]
       [--batch B] [--margin G] [--temp A] [--lr LR] [--norm 1|2] [--threads T]
       [--eval] [--impl cdist|broadcast]
Prints one line per epoch and "torch_epoch_seconds <mean>".
"""
import argparse
import time

import torch
import torch.nn.functional as F


def read(data, name, ents, rels):
    out = []
    with open(f"{data}/{name}.txt") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            h, r, t = parts
            out.append((ents.setdefault(h, len(ents)), rels.setdefault(r, len(rels)), ents.setdefault(t, len(ents))))
    return torch.tensor(out, dtype=torch.long)


def bern(train, n_rel):
    """P(corrupt head) = tph / (tph + hpt) per relation."""
    ph = torch.empty(n_rel)
    for r in range(n_rel):
        x = train[train[:, 1] == r]
        n = len(x)
        heads = len(torch.unique(x[:, 0]))
        tails = len(torch.unique(x[:, 2]))
        tph, hpt = n / max(heads, 1), n / max(tails, 1)
        ph[r] = tph / (tph + hpt)
    return ph


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--neg", type=int, default=256)
    ap.add_argument("--share", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--margin", type=float, default=5.0)
    ap.add_argument("--temp", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--norm", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--impl", choices=["cdist", "broadcast"], default="cdist")
    ap.add_argument("--eval", action="store_true", help="filtered test MRR at the end (slow)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    ents, rels = {}, {}
    train = read(a.data, "train", ents, rels)
    valid = read(a.data, "valid", ents, rels)
    test = read(a.data, "test", ents, rels)
    E, R, D = len(ents), len(rels), a.dim
    print(f"data {a.data}: {E} entities, {R} relations, {len(train)} train triples; "
          f"dim {D} neg {a.neg} share {a.share} batch {a.batch} margin {a.margin} temp {a.temp} "
          f"lr {a.lr} norm {a.norm} threads {a.threads} impl {a.impl}", flush=True)

    rng = (a.margin + 2.0) / D
    ent = torch.nn.Embedding(E, D, sparse=True)
    rel = torch.nn.Embedding(R, D, sparse=True)
    torch.nn.init.uniform_(ent.weight, -rng, rng)
    torch.nn.init.uniform_(rel.weight, -rng, rng)
    opt = torch.optim.SparseAdam(list(ent.parameters()) + list(rel.parameters()), lr=a.lr)
    phead = bern(train, R)
    K, S = a.neg, a.share

    times = []
    for epoch in range(1, a.epochs + 1):
        t0 = time.time()
        perm = torch.randperm(len(train))
        total, steps = 0.0, 0
        for b0 in range(0, len(train), a.batch):
            x = train[perm[b0:b0 + a.batch]]
            Q = len(x)
            side = torch.rand(Q) < phead[x[:, 1]]  # True: corrupt the head
            anchor = torch.where(side, x[:, 2], x[:, 0])
            target = torch.where(side, x[:, 0], x[:, 2])
            sign = 1.0 - 2.0 * side.float()
            q = ent(anchor) + sign[:, None] * rel(x[:, 1])  # (Q, D)
            pos_d = torch.norm(q - ent(target), p=a.norm, dim=-1)  # (Q)
            C = (Q + S - 1) // S
            pad = C * S - Q
            negs = torch.randint(0, E, (C, K))
            nvec = ent(negs)  # (C, K, D)
            qc = F.pad(q, (0, 0, 0, pad)).view(C, S, D)
            if a.impl == "cdist":
                nd = torch.cdist(qc, nvec, p=float(a.norm))  # (C, S, K)
            else:
                diff = qc[:, :, None, :] - nvec[:, None, :, :]
                nd = diff.abs().sum(-1) if a.norm == 1 else diff.pow(2).sum(-1).sqrt()
            nd = nd.reshape(C * S, K)[:Q]
            mask = negs.repeat_interleave(S, 0)[:Q] == target[:, None]  # (Q, K)
            with torch.no_grad():
                p = torch.softmax((-a.temp * nd).masked_fill(mask, float("-inf")), dim=-1)
            neg_loss = (p * F.softplus(a.margin - nd)).masked_fill(mask, 0.0).sum(-1)
            pos_loss = F.softplus(pos_d - a.margin)
            loss = 0.5 * (pos_loss + neg_loss).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
        dt = time.time() - t0
        times.append(dt)
        print(f"epoch {epoch:4d}  loss {total / steps:.5f}  epoch_s {dt:.3f}", flush=True)
    print(f"torch_epoch_seconds {sum(times) / len(times):.3f}", flush=True)

    if a.eval:
        known = {}
        for (h, r, t) in torch.cat([train, valid, test]).tolist():
            known.setdefault((h, r, 0), set()).add(t)
            known.setdefault((t, r, 1), set()).add(h)
        W, Rw = ent.weight.detach(), rel.weight.detach()
        rr = []
        with torch.no_grad():
            for i in range(0, len(test), 256):
                x = test[i:i + 256]
                for s in (0, 1):
                    a_ = x[:, 2] if s else x[:, 0]
                    tg = x[:, 0] if s else x[:, 2]
                    q = W[a_] + (-1 if s else 1) * Rw[x[:, 1]]
                    d = torch.cdist(q, W, p=float(a.norm))
                    for k in range(len(x)):
                        dk = d[k].clone()
                        dt_ = dk[tg[k]].item()
                        for c in known[(a_[k].item(), x[k, 1].item(), s)]:
                            if c != tg[k].item():
                                dk[c] = float("inf")
                        less = (dk < dt_).sum().item()
                        eq = (dk == dt_).sum().item() - 1
                        rr.append(1.0 / (1 + less + eq / 2))
        print(f"torch_test_mrr {sum(rr) / len(rr):.4f}")


if __name__ == "__main__":
    main()
