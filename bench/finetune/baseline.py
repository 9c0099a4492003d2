#!/usr/bin/python3
"""bench/finetune/baseline.py: a linear baseline for single-sentence GLUE
tasks (SST-2 style TSV: header, `sentence<TAB>label`), to put kiln's
fine-tuning numbers next to.

Model: bag of lowercased whitespace unigrams and bigrams (features seen at
least --min-count times in TRAIN, binary presence, each row scaled to unit
L2 norm), multinomial logistic regression with an L2 penalty, trained by
mini-batch Adam for a few epochs. numpy only; deterministic for a given seed.

    baseline.py TRAIN.tsv DEV.tsv
prints one JSON line: {"accuracy", "f1", "seconds", ...}; f1 is binary F1 of
label id 1 for two classes, macro F1 otherwise (as trainer/metrics.h).
Labels are ordered like sampler/dataset.h: numerically when all are
integers, else by string. The TSV is read with no quoting (QUOTE_NONE);
only "\\n" ends a line.
"""
import argparse
import json
import sys
import time

import numpy as np


def read_tsv(path, text_col, label_col):
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8")
    if raw.startswith("\ufeff"):
        raw = raw[1:]
    lines = [l[:-1] if l.endswith("\r") else l for l in raw.split("\n")]
    lines = [l for l in lines if l]
    header = lines[0].split("\t")
    ti, li = header.index(text_col), header.index(label_col)
    texts, labels = [], []
    for n, line in enumerate(lines[1:], start=2):
        f = line.split("\t")
        if len(f) != len(header):
            sys.exit(f"{path}:{n}: {len(f)} fields, the header has {len(header)}")
        texts.append(f[ti])
        labels.append(f[li])
    return texts, labels


def label_order(labels):
    names = set(labels)
    try:
        return sorted(names, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(names)


def grams(text):
    toks = text.lower().split()
    return toks + [a + " " + b for a, b in zip(toks, toks[1:])]


def featurize(texts, index):
    """CSR pieces: feature ids, row starts, values (1/sqrt(nnz) per row)."""
    ids, starts = [], [0]
    for t in texts:
        row = sorted({index[g] for g in grams(t) if g in index})
        ids.extend(row)
        starts.append(len(ids))
    ids = np.asarray(ids, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    nnz = np.diff(starts)
    rows = np.repeat(np.arange(len(texts)), nnz)
    vals = (1.0 / np.sqrt(np.maximum(nnz, 1)))[rows]
    return ids, starts, vals


def logits(W, b, ids, starts, vals, sel):
    """Scores (len(sel), K) of the rows sel."""
    lo, hi = starts[sel], starts[sel + 1]
    cnt = hi - lo
    pos = np.concatenate([np.arange(a, z) for a, z in zip(lo, hi)]) if len(sel) else np.zeros(0, np.int64)
    r = np.repeat(np.arange(len(sel)), cnt)
    out = np.tile(b, (len(sel), 1))
    np.add.at(out, r, W[ids[pos]] * vals[pos, None])
    return out, pos, r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train")
    ap.add_argument("dev")
    ap.add_argument("--text-column", default="sentence")
    ap.add_argument("--label-column", default="label")
    ap.add_argument("--min-count", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--l2", type=float, default=1e-6, help="penalty per example and step: l2 * |W|^2 / 2")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.time()

    tr_x, tr_y = read_tsv(a.train, a.text_column, a.label_column)
    dv_x, dv_y = read_tsv(a.dev, a.text_column, a.label_column)
    names = label_order(tr_y)
    lid = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(dv_y) - set(names))
    if unknown:
        sys.exit(f"{a.dev}: labels not in the train file: {unknown[:5]}")
    ytr = np.array([lid[y] for y in tr_y])
    ydv = np.array([lid[y] for y in dv_y])
    K = len(names)

    counts = {}
    for t in tr_x:
        for g in set(grams(t)):
            counts[g] = counts.get(g, 0) + 1
    feats = sorted(g for g, c in counts.items() if c >= a.min_count)
    index = {g: i for i, g in enumerate(feats)}
    F = len(feats)
    tr = featurize(tr_x, index)
    dv = featurize(dv_x, index)

    rng = np.random.default_rng(a.seed)
    W = np.zeros((F, K))
    b = np.zeros(K)
    mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
    beta1, beta2, eps, step = 0.9, 0.999, 1e-8, 0
    n = len(ytr)
    for _ in range(a.epochs):
        order = rng.permutation(n)
        for s in range(0, n, a.batch):
            sel = order[s:s + a.batch]
            z, pos, r = logits(W, b, *tr, sel)
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(sel)), ytr[sel]] -= 1.0
            p /= len(sel)                                     # d loss / d logits, mean over the batch
            gW = np.zeros_like(W)
            np.add.at(gW, tr[0][pos], p[r] * tr[2][pos, None])
            gW += a.l2 * W
            gb = p.sum(axis=0)
            step += 1
            for g, m, v, x in ((gW, mW, vW, W), (gb, mb, vb, b)):
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * g * g
                x -= a.lr * (m / (1 - beta1 ** step)) / (np.sqrt(v / (1 - beta2 ** step)) + eps)

    z, _, _ = logits(W, b, *dv, np.arange(len(ydv)))
    pred = z.argmax(axis=1)
    acc = float((pred == ydv).mean())
    if K == 2:
        tp = int(((pred == 1) & (ydv == 1)).sum())
        den = 2 * tp + int(((pred == 1) & (ydv != 1)).sum()) + int(((pred != 1) & (ydv == 1)).sum())
        f1 = 2 * tp / den if den else 0.0
    else:
        f1s = []
        for c in range(K):
            tp = int(((pred == c) & (ydv == c)).sum())
            den = 2 * tp + int(((pred == c) & (ydv != c)).sum()) + int(((pred != c) & (ydv == c)).sum())
            if den:
                f1s.append(2 * tp / den)
        f1 = float(np.mean(f1s)) if f1s else float("nan")
    print(json.dumps({"accuracy": round(acc, 4), "f1": round(f1, 4), "seconds": round(time.time() - t0, 2),
                      "train": n, "dev": len(ydv), "features": F, "labels": names}))


if __name__ == "__main__":
    main()
